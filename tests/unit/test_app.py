"""MasaApp: one root container that every static caller resolves."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import anyio
import pytest
from dependency_injector import containers, providers
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import (
    BackgroundJobManager,
    BackgroundScheduleJob,
    ConfigurationError,
    JobState,
    MasaAlreadyBuiltError,
    MasaApp,
    MasaNotBuiltError,
    MemoryJobStore,
)
from masa_jobs.stores.sqlite import SqliteJobStore

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
async def test_lifespan_with_background_jobs_disabled_runs_no_worker(tmp_path: Path) -> None:
    # An enqueue-only process needs a store that a worker elsewhere can read.
    container = make_container(disable_background_job=True)
    container.config.from_dict({"store": {"backend": "sqlite", "path": str(tmp_path / "j.db")}})
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


# -- one configuration in every process ---------------------------------------------


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A process environment without the test runner's own MASA_JOBS_... variables."""
    for key in list(os.environ):
        if key.startswith("MASA_JOBS_"):
            monkeypatch.delenv(key)
    return monkeypatch


def test_build_reads_the_environment(environ: pytest.MonkeyPatch, tmp_path: Path) -> None:
    environ.setenv("MASA_JOBS_STORE__BACKEND", "sqlite")
    environ.setenv("MASA_JOBS_STORE__PATH", str(tmp_path / "jobs.sqlite3"))
    environ.setenv("MASA_JOBS_OPTIONS__BATCH_SIZE", "7")
    container = BackgroundJobContainer()

    MasaApp.build(container)

    assert isinstance(container.job_store(), SqliteJobStore)
    assert container.options().batch_size == 7


def test_sources_in_order_defaults_file_environment_code(
    environ: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config_file = tmp_path / "masa-jobs.yaml"
    config_file.write_text(
        "options:\n  batch_size: 11\n  poll_interval: 3\n  max_retry_times: 4\n",
        encoding="utf-8",
    )
    environ.setenv("MASA_JOBS_CONFIG", str(config_file))
    environ.setenv("MASA_JOBS_OPTIONS__POLL_INTERVAL", "2")
    environ.setenv("MASA_JOBS_OPTIONS__MAX_RETRY_TIMES", "5")
    container = BackgroundJobContainer()
    container.config.from_dict({"options": {"max_retry_times": 6}})

    MasaApp.build(container)

    options = container.options()
    assert options.batch_size == 11  # the file, over the default 30
    assert options.poll_interval == 2  # the environment, over the file
    assert options.max_retry_times == 6  # the code, over the environment
    assert options.first_wait_duration == 60  # the default
    assert container.config.store.backend() == "memory"


def test_code_wins_over_the_environment_even_with_a_default_value(
    environ: pytest.MonkeyPatch,
) -> None:
    environ.setenv("MASA_JOBS_STORE__BACKEND", "sqlite")
    container = BackgroundJobContainer()
    container.config.from_dict({"store": {"backend": "memory"}})

    MasaApp.build(container)

    assert isinstance(container.job_store(), MemoryJobStore)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        pytest.param(None, "cannot be read", id="missing"),
        pytest.param("- a list\n", "not a mapping", id="list"),
        pytest.param("options: [\n", "not valid YAML", id="yaml"),
    ],
)
def test_a_bad_config_file_fails_build(
    environ: pytest.MonkeyPatch, tmp_path: Path, content: str | None, problem: str
) -> None:
    path = tmp_path / "masa-jobs.yaml"
    if content is not None:
        path.write_text(content, encoding="utf-8")
    environ.setenv("MASA_JOBS_CONFIG", str(path))

    with pytest.raises(ConfigurationError, match=problem):
        MasaApp.build(BackgroundJobContainer())
    assert not MasaApp.is_built()


def test_a_malformed_variable_fails_build(environ: pytest.MonkeyPatch) -> None:
    environ.setenv("MASA_JOBS_OPTIONS____BATCH_SIZE", "5")

    with pytest.raises(ConfigurationError, match="MASA_JOBS_OPTIONS____BATCH_SIZE"):
        MasaApp.build(BackgroundJobContainer())


def test_build_logs_the_store_without_its_password(
    environ: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    environ.setenv("MASA_JOBS_STORE__BACKEND", "postgres")
    environ.setenv("MASA_JOBS_STORE__DSN", "postgresql://app:S3cret@db.internal:5432/shop")
    environ.setenv("MASA_JOBS_STORE__SCHEMA", "jobs_a")

    with caplog.at_level(logging.INFO, logger="masa_jobs"):
        MasaApp.build(BackgroundJobContainer())

    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("masa-jobs:")]
    assert len(lines) == 1
    assert "app@db.internal:5432/shop" in lines[0]
    assert "jobs_a" in lines[0]
    assert lines[0].endswith("worker on")
    assert "S3cret" not in caplog.text


def test_build_logs_the_memory_store(
    environ: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="masa_jobs"):
        MasaApp.build(BackgroundJobContainer())

    assert "masa-jobs: store memory (jobs live in this process only), worker on" in caplog.text


def test_an_enqueue_only_process_on_the_memory_store_is_refused(
    environ: pytest.MonkeyPatch,
) -> None:
    environ.setenv("MASA_JOBS_OPTIONS__DISABLE_BACKGROUND_JOB", "true")
    container = BackgroundJobContainer()

    with pytest.raises(ConfigurationError) as caught:
        MasaApp.build(container)

    message = str(caught.value)
    assert "disable_background_job" in message
    assert "MASA_JOBS_STORE__BACKEND" in message
    assert "run the worker in this process" in message
    assert not MasaApp.is_built()


def test_an_enqueue_only_memory_process_can_be_allowed(
    environ: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    container = make_container(disable_background_job=True)

    with caplog.at_level(logging.INFO, logger="masa_jobs"):
        MasaApp.build(container, allow_memory_without_worker=True)

    assert MasaApp.root() is container
    assert "worker off (disable_background_job: enqueue only)" in caplog.text
