"""docs/examples/dashboard_app.py: the dashboard mounted in a FastAPI app, behind its hook."""

from __future__ import annotations

import time
from types import SimpleNamespace

import anyio
import pytest
from starlette.requests import Request

from masa_jobs import BackgroundJobManager, JobState
from tests.docs.support import load_example

from .client import HTTPX_WARNING, TestClient

pytestmark = pytest.mark.filterwarnings(HTTPX_WARNING)

REMOTE = ("203.0.113.7", 51000)
OPERATOR = {"x-forwarded-email": "ada@example.com"}
TIMEOUT = 10.0


def test_the_mounted_dashboard_shows_the_apps_jobs_to_operators_only() -> None:
    example = load_example("dashboard_app")
    app = example.create_app()

    with TestClient(app, client=REMOTE) as client:
        assert client.get("/ops/jobs/", headers=OPERATOR).status_code == 200
        # The hook alone decides, for remote and local clients alike.
        assert client.get("/ops/jobs/").status_code == 403
        assert client.get("/ops/jobs/", headers={"x-forwarded-email": "eve@x"}).status_code == 403

        job_id = client.portal.call(BackgroundJobManager.enqueue, example.BuildReport(month="05"))
        deadline = time.monotonic() + TIMEOUT
        page = client.get("/ops/jobs/job", params={"id": job_id}, headers=OPERATOR)
        while "state-succeeded" not in page.text and time.monotonic() < deadline:
            time.sleep(0.01)
            page = client.get("/ops/jobs/job", params={"id": job_id}, headers=OPERATOR)
        assert f'<span class="badge state-{JobState.SUCCEEDED.value}">' in page.text
        assert "reports.build" in page.text
        assert 'href="/ops/jobs/static/dashboard.css"' in page.text


def test_the_scope_hook_reads_the_apps_authentication() -> None:
    example = load_example("dashboard_app")

    def request(scopes: tuple[str, ...] | None) -> Request:
        auth = None if scopes is None else SimpleNamespace(scopes=scopes)
        return Request({"type": "http", "headers": [], "auth": auth})

    async def check(scopes: tuple[str, ...] | None) -> bool:
        allowed: bool = await example.has_ops_scope(request(scopes))
        return allowed

    assert anyio.run(check, ("ops", "staff"))
    assert not anyio.run(check, ("staff",))
    assert not anyio.run(check, None)
