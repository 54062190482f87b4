"""The project's own pytest test: the handler gets the project's service."""

from __future__ import annotations

from pathlib import Path

import anyio
from dependency_injector import providers
from jobs import Greet

from containers import AppContainer, Greeter
from masa_jobs import BackgroundJobManager, JobState, MasaApp


def test_the_job_greets_through_the_injected_service(tmp_path: Path) -> None:
    container = AppContainer()
    out = tmp_path / "greetings.txt"
    container.greeter.override(providers.Object(Greeter(str(out))))
    container.config.from_dict({"store": {"backend": "memory"}})
    MasaApp.build(container)
    try:
        info = anyio.run(_run_one, container)
    finally:
        MasaApp.reset()

    assert info is not None
    assert info.state is JobState.SUCCEEDED
    assert out.read_text(encoding="utf-8") == "hello ada\n"


async def _run_one(container: AppContainer) -> object:
    manager = container.job_manager()
    async with MasaApp.lifespan():
        job_id = await BackgroundJobManager.enqueue(Greet(name="ada"))
        with anyio.fail_after(10):
            while True:
                info = await manager.get(job_id)
                if info is not None and info.state.is_finished:
                    return info
                await anyio.sleep(0.01)
