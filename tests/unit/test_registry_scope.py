"""The registry belongs to the container: two apps in one process keep their own handlers.

``scoped_a`` and ``scoped_b`` are two apps' job packages, each with a handler
and a recurring job (``scoped_a``'s in a subpackage). A container given
``job_packages`` registers only what those packages define; one without
registers everything imported, as before; an override gives an explicit list.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from dependency_injector import providers
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import (
    BackgroundJob,
    BackgroundJobManager,
    JobRegistry,
    MasaApp,
    UnknownJobError,
    job_name,
)

from .scoped_a.jobs import PingA, PingAJob
from .scoped_a.reports.nightly import NightlyA
from .scoped_b.jobs import NightlyB, PingB, PingBJob

SCOPED_A = "tests.unit.scoped_a"
SCOPED_B = "tests.unit.scoped_b"


@job_name("registry-scope.local")
class Local(BaseModel):
    pass


class LocalJob(BackgroundJob[Local]):
    """Imported with this module, but in neither app's package."""

    async def execute(self, args: Local) -> None:
        return None


@pytest.fixture(autouse=True)
def _fresh_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # MasaApp.build reads MASA_JOBS_... variables: the runner's own must not
    # add job_packages or a store to these containers.
    for key in list(os.environ):
        if key.startswith("MASA_JOBS_"):
            monkeypatch.delenv(key)
    MasaApp.reset()
    yield
    MasaApp.reset()


def make_container(*job_packages: str) -> BackgroundJobContainer:
    container = BackgroundJobContainer()
    options: dict[str, Any] = {"job_packages": list(job_packages)} if job_packages else {}
    container.config.from_dict({"store": {"backend": "memory"}, "options": options})
    return container


def all_handlers(registry: JobRegistry) -> set[type[Any]]:
    return {handler for name in registry.names() for handler in registry.handlers(name)}


def test_two_containers_with_job_packages_see_only_their_own() -> None:
    app_a, app_b = make_container(SCOPED_A), make_container(SCOPED_B)

    registry_a, registry_b = app_a.job_registry(), app_b.job_registry()

    assert all_handlers(registry_a) == {PingAJob}
    assert registry_a.schedule_classes() == (NightlyA,)
    assert dict(registry_a.declared_schedules()) == {"scoped-a.nightly": NightlyA}
    assert registry_a.name_of(PingB) is None
    assert all_handlers(registry_b) == {PingBJob}
    assert registry_b.schedule_classes() == (NightlyB,)
    assert dict(registry_b.declared_schedules()) == {"scoped-b.nightly": NightlyB}
    assert registry_b.name_of(PingA) is None
    assert registry_a.handler_modules() == (
        f"{SCOPED_A}.jobs",
        f"{SCOPED_A}.reports.nightly",
    )


@pytest.mark.anyio
async def test_each_built_app_enqueues_only_its_own_jobs() -> None:
    for container, own, other in [
        (make_container(SCOPED_A), PingA(), PingB()),
        (make_container(SCOPED_B), PingB(), PingA()),
    ]:
        MasaApp.build(container)

        assert await BackgroundJobManager.enqueue(own)
        with pytest.raises(UnknownJobError):
            await BackgroundJobManager.enqueue(other)
        with pytest.raises(UnknownJobError):
            await BackgroundJobManager.enqueue(Local())
        MasaApp.reset()


def test_several_packages_add_up() -> None:
    registry = make_container(SCOPED_A, SCOPED_B).job_registry()

    assert all_handlers(registry) == {PingAJob, PingBJob}
    assert set(registry.declared_schedules()) == {"scoped-a.nightly", "scoped-b.nightly"}


def test_a_module_in_job_packages_takes_that_module_only() -> None:
    registry = make_container(f"{SCOPED_A}.jobs").job_registry()

    assert all_handlers(registry) == {PingAJob}
    assert registry.schedule_classes() == ()


def test_without_job_packages_a_container_sees_every_imported_handler() -> None:
    container = make_container()
    MasaApp.build(container)

    registry: JobRegistry = container.job_registry()
    assert {PingAJob, PingBJob, LocalJob} <= all_handlers(registry)
    assert {"scoped-a.nightly", "scoped-b.nightly"} <= set(registry.declared_schedules())


@pytest.mark.anyio
async def test_an_explicit_list_overrides_the_registry() -> None:
    class InlineJob(BackgroundJob[Local]):
        # Defined in a function: discovery skips it, an explicit list takes it.
        async def execute(self, args: Local) -> None:
            return None

    container = make_container(SCOPED_B)
    container.job_registry.override(providers.Singleton(JobRegistry, [InlineJob], [NightlyA]))
    MasaApp.build(container)

    registry: JobRegistry = container.job_registry()
    assert all_handlers(registry) == {InlineJob}
    assert dict(registry.declared_schedules()) == {"scoped-a.nightly": NightlyA}
    assert await BackgroundJobManager.enqueue(Local())
    with pytest.raises(UnknownJobError):
        await BackgroundJobManager.enqueue(PingB())
