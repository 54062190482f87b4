"""MasaApp: one root container that every static caller resolves."""

from __future__ import annotations

import re
from typing import Any

import anyio
import pytest
from dependency_injector import containers, providers
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import (
    BackgroundJobManager,
    BackgroundScheduleJob,
    JobState,
    MasaAlreadyBuiltError,
    MasaApp,
    MasaNotBuiltError,
)

from .support import Greet, InjectedSaluter, Salute, calls_of, signal, wait_for_record

FIX = re.escape("call MasaApp.build(container) once at start-up")


def make_container(**options: Any) -> BackgroundJobContainer:
    container = BackgroundJobContainer()
    container.config.from_dict({"options": {"first_wait_duration": 0.01, **options}})
    return container


class Nightly(BackgroundScheduleJob):
    id = "nightly"
    cron_expression = "0 3 * * *"

    async def execute(self) -> None:
        return None


class FakeManager:
    def __init__(self) -> None:
        self.enqueued: list[BaseModel] = []

    async def enqueue(self, args: BaseModel, delay: object = None) -> str:
        self.enqueued.append(args)
        return "fake-id"


# -- build, root, reset ------------------------------------------------------------


def test_build_publishes_the_container() -> None:
    container = make_container()

    MasaApp.build(container)

    assert MasaApp.is_built()
    assert MasaApp.root() is container
    assert MasaApp.job_manager() is container.job_manager()


def test_build_with_a_class_is_a_type_error() -> None:
    with pytest.raises(TypeError) as caught:
        MasaApp.build(BackgroundJobContainer)

    message = str(caught.value)
    assert "takes a container instance, got the class BackgroundJobContainer" in message
    assert "MasaApp.build(BackgroundJobContainer())" in message
    assert "singletons" in message
    assert not MasaApp.is_built()


def test_building_the_same_container_again_does_nothing() -> None:
    container = make_container()
    MasaApp.build(container)
    manager = container.job_manager()

    MasaApp.build(container)

    assert MasaApp.root() is container
    assert container.job_manager() is manager


def test_a_different_container_is_refused() -> None:
    first = make_container()
    MasaApp.build(first)

    with pytest.raises(MasaAlreadyBuiltError, match=r"MasaApp\.reset\(\)"):
        MasaApp.build(make_container())

    assert MasaApp.root() is first


def test_reset_forgets_the_container() -> None:
    MasaApp.build(make_container())

    MasaApp.reset()

    assert not MasaApp.is_built()
    with pytest.raises(MasaNotBuiltError):
        MasaApp.root()
    second = make_container()
    MasaApp.build(second)
    assert MasaApp.root() is second


def test_reset_without_a_build_is_harmless() -> None:
    MasaApp.reset()
    MasaApp.reset()

    assert not MasaApp.is_built()


def test_root_before_build_says_how_to_fix_it() -> None:
    with pytest.raises(MasaNotBuiltError) as caught:
        MasaApp.root()

    assert "call MasaApp.build(container) once at start-up" in str(caught.value)
    assert "same container instance that runs the worker" in str(caught.value)
    with pytest.raises(MasaNotBuiltError, match=FIX):
        MasaApp.job_manager()


def test_a_container_without_the_job_providers_is_refused() -> None:
    class Unrelated(containers.DeclarativeContainer):
        thing = providers.Object(1)

    with pytest.raises(TypeError, match="needs a BackgroundJobContainer"):
        MasaApp.build(Unrelated())

    assert not MasaApp.is_built()


def test_masa_app_and_the_facade_are_not_instantiated() -> None:
    with pytest.raises(TypeError, match="class methods"):
        MasaApp()
    with pytest.raises(TypeError, match="static facade"):
        BackgroundJobManager()


def test_reset_unwires_the_handler_modules() -> None:
    class AppContainer(BackgroundJobContainer):
        greeting = providers.Object("hello")

    MasaApp.build(AppContainer())
    assert InjectedSaluter().greeting == "hello"

    MasaApp.reset()

    assert InjectedSaluter().greeting != "hello"


# -- the static facade -------------------------------------------------------------


@pytest.mark.anyio
async def test_the_facade_before_build_says_how_to_fix_it() -> None:
    with pytest.raises(MasaNotBuiltError, match=FIX):
        await BackgroundJobManager.enqueue(Greet(key="lost"))
    with pytest.raises(MasaNotBuiltError, match=FIX):
        await BackgroundJobManager.add_or_update_schedule(Nightly())


@pytest.mark.anyio
async def test_lifespan_before_build_says_how_to_fix_it() -> None:
    with pytest.raises(MasaNotBuiltError, match=FIX):
        async with MasaApp.lifespan():
            pass


@pytest.mark.anyio
async def test_the_facade_reaches_the_workers_manager_and_store() -> None:
    container = make_container()
    MasaApp.build(container)
    ran = signal("faq")
    assert container.job_manager().store is container.job_store()

    async with MasaApp.lifespan():
        job_id = await BackgroundJobManager.enqueue(Greet(key="faq"))
        with anyio.fail_after(2):
            await ran.wait()
        record = await wait_for_record(
            container.job_store(), job_id, lambda r: r.state is JobState.SUCCEEDED
        )

    assert record.attempts == 1
    assert calls_of("greet") == ["faq"]


@pytest.mark.anyio
async def test_the_facade_honours_a_provider_override() -> None:
    container = make_container()
    MasaApp.build(container)
    fake = FakeManager()

    with container.job_manager.override(providers.Object(fake)):
        assert await BackgroundJobManager.enqueue(Greet(key="faked")) == "fake-id"

    assert fake.enqueued == [Greet(key="faked")]
    assert sum((await container.job_manager().count()).values()) == 0
    real_id = await BackgroundJobManager.enqueue(Greet(key="real"))
    assert await container.job_manager().get(real_id) is not None


@pytest.mark.anyio
async def test_the_facade_adds_a_schedule_to_the_workers_store() -> None:
    container = make_container()
    MasaApp.build(container)

    await BackgroundJobManager.add_or_update_schedule(Nightly)

    [schedule] = await container.job_store().list_schedules()
    assert (schedule.id, schedule.cron_expression) == ("nightly", "0 3 * * *")
    assert schedule.job_class == f"{__name__}.Nightly"
    [info] = await MasaApp.job_manager().list_schedules()
    assert (info.id, info.known) == ("nightly", True)


# -- application containers ----------------------------------------------------------


@pytest.mark.anyio
async def test_a_container_embedding_the_jobs_container() -> None:
    class AppContainer(containers.DeclarativeContainer):
        greeting = providers.Object("embedded")
        jobs = providers.Container(BackgroundJobContainer)

    app = AppContainer()
    MasaApp.build(app)
    ran = signal("inside")

    assert MasaApp.root() is app
    assert MasaApp.job_manager() is app.jobs.job_manager()
    async with MasaApp.lifespan():
        await BackgroundJobManager.enqueue(Salute(key="inside"))
        with anyio.fail_after(2):
            await ran.wait()

    assert calls_of("salute:embedded") == ["inside"]


@pytest.mark.anyio
async def test_a_container_extending_the_jobs_container_injects_handlers() -> None:
    class AppContainer(BackgroundJobContainer):
        greeting = providers.Object("hello")

    app = AppContainer()
    app.config.from_dict({"options": {"poll_interval": 5}})
    MasaApp.build(app)
    ran = signal("salute")

    async with MasaApp.lifespan():
        await BackgroundJobManager.enqueue(Salute(key="salute"))
        with anyio.fail_after(2):
            await ran.wait()

    assert calls_of("salute:hello") == ["salute"]


# -- lifespan ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_lifespan_runs_the_worker_while_open() -> None:
    container = make_container()
    MasaApp.build(container)
    worker = container.worker()

    async with MasaApp.lifespan():
        assert worker.running

    assert not worker.running


@pytest.mark.anyio
async def test_lifespan_with_background_jobs_disabled_runs_no_worker() -> None:
    container = make_container(disable_background_job=True)
    MasaApp.build(container)

    async with MasaApp.lifespan():
        job_id = await BackgroundJobManager.enqueue(Greet(key="later"))
        await anyio.wait_all_tasks_blocked()
        assert not container.worker().running

    record = await container.job_store().get(job_id)
    assert record is not None
    assert record.state is JobState.ENQUEUED
    assert record.attempts == 0
    assert calls_of("greet") == []
