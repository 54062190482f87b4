"""The FAQ's FastAPI app: both routes' jobs run in the one worker of the app."""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest
from fastapi import FastAPI

from masa_jobs import JobState, MasaApp, MasaNotBuiltError

from .support import load_example

TIMEOUT = 10.0


async def _poll_until_finished(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    with anyio.fail_after(TIMEOUT):
        while True:
            response = await client.get(f"/jobs/{job_id}")
            response.raise_for_status()
            job: dict[str, Any] = response.json()
            if JobState(job["state"]).is_finished:
                return job
            await anyio.sleep(0.01)


@pytest.mark.anyio
async def test_both_routes_jobs_run_in_the_apps_worker() -> None:
    fastapi_app = load_example("fastapi_app")
    app: FastAPI = fastapi_app.create_app()
    container = app.state.container
    assert MasaApp.root() is container

    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client,
    ):
        injected = await client.post("/users", json={"name": "ada"})
        static = await client.post("/users/via-service", json={"name": "bob"})
        assert injected.status_code == static.status_code == 200
        job_ids = [injected.json()["job_id"], static.json()["job_id"]]
        jobs = [await _poll_until_finished(client, job_id) for job_id in job_ids]

    assert [(job["state"], job["attempts"]) for job in jobs] == [("succeeded", 1)] * 2
    assert sorted(container.mailer().sent) == ["ada: welcome", "bob: welcome"]
    # Both jobs are in the one store that the app's worker reads.
    manager = container.job_manager()
    for job_id in job_ids:
        info = await manager.get(job_id)
        assert info is not None
        assert info.name == "users.register"


@pytest.mark.anyio
async def test_delayed_jobs_wait_for_their_delay() -> None:
    fastapi_app = load_example("fastapi_app")
    app: FastAPI = fastapi_app.create_app()
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client,
    ):
        job_id = (await client.post("/users", json={"name": "ada"})).json()["job_id"]
        first = (await client.get(f"/jobs/{job_id}")).json()
        job = await _poll_until_finished(client, job_id)
        unknown = await client.get(f"/jobs/{'0' * 32}")
    assert first["state"] == "scheduled"
    assert job["state"] == "succeeded"
    assert unknown.status_code == 404


@pytest.mark.anyio
async def test_the_static_route_without_build_fails_loudly() -> None:
    fastapi_app = load_example("fastapi_app")
    app = FastAPI()  # the routes, but nobody called MasaApp.build
    app.include_router(fastapi_app.router)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
        with pytest.raises(MasaNotBuiltError, match=r"call MasaApp\.build\(container\)"):
            await client.post("/users/via-service", json={"name": "bob"})


# Recent Starlette versions deprecate running TestClient on httpx (in favour of httpx2).
@pytest.mark.filterwarnings("ignore:Using `httpx` with `starlette.testclient` is deprecated")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_starlette_test_client_runs_the_lifespan(backend: str) -> None:
    from fastapi.testclient import TestClient

    fastapi_app = load_example("fastapi_app")
    with TestClient(fastapi_app.create_app(), backend=backend) as client:
        job_ids = [
            client.post("/users", json={"name": "ada"}).json()["job_id"],
            client.post("/users/via-service", json={"name": "bob"}).json()["job_id"],
        ]
        deadline = time.monotonic() + TIMEOUT
        states: list[str] = []
        while time.monotonic() < deadline:
            states = [client.get(f"/jobs/{job_id}").json()["state"] for job_id in job_ids]
            if all(JobState(state).is_finished for state in states):
                break
            time.sleep(0.01)
        assert client.get(f"/jobs/{'0' * 32}").status_code == 404
    assert states == ["succeeded", "succeeded"]
