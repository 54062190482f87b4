"""Every example in docs/examples runs, and does what the documentation says."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

import anyio
import pytest

from masa_jobs import BackgroundJobOptions, JobState, MasaApp

from .support import EXAMPLE_FILES, load_example

pytestmark = pytest.mark.anyio

TIMEOUT = 10.0


def test_every_example_file_has_a_test() -> None:
    tested = {"quickstart", "handlers", "configuration", "embedded_container", "manage_jobs"}
    tested |= {"recurring", "job_control"}
    tested |= {"fastapi_app"}  # tests/docs/test_fastapi_app.py
    tested |= {"transactions_fastapi"}  # tests/docs/test_transactions_example.py
    tested |= {"test_with_masa_jobs"}  # tests/docs/test_testing_example.py
    tested |= {"dashboard_app"}  # tests/dashboard/test_docs_example.py
    assert {path.stem for path in EXAMPLE_FILES} == tested


async def test_quickstart_runs_the_delayed_job(capsys: pytest.CaptureFixture[str]) -> None:
    quickstart = load_example("quickstart")
    with anyio.fail_after(TIMEOUT):
        info = await quickstart.main()

    assert info is not None
    assert info.state is JobState.SUCCEEDED
    assert info.attempts == 1
    assert info.name == "signup.welcome-email"
    assert info.args == {"email": "ada@example.com"}
    out = capsys.readouterr().out
    assert "welcome email sent to ada@example.com\n" in out
    assert f"job {info.id}: succeeded\n" in out


async def test_handlers_retry_only_the_failed_handler() -> None:
    handlers = load_example("handlers")
    with anyio.fail_after(TIMEOUT):
        info = await handlers.main()

    assert info is not None
    assert (info.state, info.attempts) == (JobState.SUCCEEDED, 2)
    container = MasaApp.root()
    assert container.declarative_parent is handlers.AppContainer
    assert container.mailer().sent == ["ada@example.com: Welcome!"]
    assert container.crm().calls == 2
    assert container.crm().contacts == [7]


def test_configuration_from_a_dict() -> None:
    configuration = load_example("configuration")
    options = configuration.container_from_dict().options()
    assert (options.poll_interval, options.batch_size, options.first_wait_duration) == (2, 50, 0.5)


def test_configuration_yaml_file_holds_the_defaults() -> None:
    configuration = load_example("configuration")
    container = configuration.container_from_files(environ={})
    assert container.options() == BackgroundJobOptions()
    assert container.config.store.backend() == "memory"


def test_configuration_environment_variables_win_over_the_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    configuration = load_example("configuration")
    monkeypatch.setenv("MASA_JOBS_STORE__BACKEND", "memory")
    monkeypatch.setenv("MASA_JOBS_OPTIONS__BATCH_SIZE", "50")
    monkeypatch.setenv("MASA_JOBS_OPTIONS__FIRST_WAIT_DURATION", "0.5")
    monkeypatch.setenv("MASA_JOBS_OPTIONS__JOB_PACKAGES", "json,email")

    options = configuration.main()

    assert options.batch_size == 50
    assert math.isclose(options.first_wait_duration, 0.5)
    assert options.job_packages == ("json", "email")
    assert options.poll_interval == 5  # from the file
    assert "batch_size=50" in capsys.readouterr().out


def test_configuration_explicit_environment_mapping() -> None:
    configuration = load_example("configuration")
    environ: Mapping[str, str] = {"MASA_JOBS_OPTIONS__CONCURRENCY": "3"}
    assert configuration.container_from_files(environ).options().concurrency == 3


async def test_embedded_container_runs_both_enqueue_paths() -> None:
    embedded = load_example("embedded_container")
    with anyio.fail_after(TIMEOUT):
        infos = await embedded.main()

    assert [info.state if info else None for info in infos] == [JobState.SUCCEEDED] * 2
    platform = MasaApp.root()
    assert sorted(platform.ledger().refunds) == [1, 2]
    assert MasaApp.job_manager() is platform.jobs.job_manager()


async def test_manage_jobs_cancel_dead_and_retry() -> None:
    manage_jobs = load_example("manage_jobs")
    with anyio.fail_after(TIMEOUT):
        infos: dict[str, Any] = await manage_jobs.main()

    assert infos["cancelled"].state is JobState.CANCELLED
    dead = infos["dead"]
    assert (dead.state, dead.attempts) == (JobState.DEAD, 2)
    assert "ConnectionError: payment gateway down" in dead.last_error
    assert "CapturePaymentJob" in dead.last_error
    retried = infos["retried"]
    assert (retried.state, retried.attempts, retried.last_error) == (JobState.SUCCEEDED, 3, None)


async def test_recurring_declares_adds_updates_triggers_and_removes(
    capsys: pytest.CaptureFixture[str],
) -> None:
    recurring = load_example("recurring")
    with anyio.fail_after(TIMEOUT):
        infos = await recurring.main()

    # Other modules of the test session may declare recurring jobs too.
    schedules = {info.id: info for info in infos}
    cleanup = schedules["sessions.clean-up"]
    assert (cleanup.cron_expression, cleanup.timezone, cleanup.known) == (
        "0 3 * * *",
        "Europe/Berlin",
        True,
    )
    assert cleanup.job_class == f"{recurring.__name__}.CleanUpSessions"
    assert cleanup.next_fire_at.astimezone(ZoneInfo("Europe/Berlin")).hour == 3
    assert cleanup.last_fire_at is None  # run by hand, not by its schedule
    heartbeat = schedules["monitor.heartbeat"]
    assert heartbeat.cron_expression == "0 * * * * *"  # the update
    assert heartbeat.next_fire_at.second == 0
    assert heartbeat.last_fire_at is not None  # it fired on its every-second schedule

    container = MasaApp.root()
    assert container.sessions().expired == 0
    assert container.monitor().beats
    assert all(beat.microsecond == 0 for beat in container.monitor().beats)
    assert "monitor.heartbeat" not in {s.id for s in await container.job_manager().list_schedules()}
    out = capsys.readouterr().out
    assert "removed 3 expired sessions\n" in out
    assert "heartbeat for " in out
    assert "sessions.clean-up: '0 3 * * *' in Europe/Berlin, next at " in out


async def test_job_control_queues_unique_keys_and_cancel() -> None:
    job_control = load_example("job_control")
    job_control.RAN.clear()
    with anyio.fail_after(TIMEOUT):
        infos: dict[str, Any] = await job_control.main()

    assert infos["charged first"].queue == "critical"
    assert (infos["charged"].state, infos["charged"].priority) == (JobState.SUCCEEDED, 5)
    assert infos["reported"].queue == "reports"
    assert infos["cancelled"].state is JobState.CANCELLED
    assert infos["cancelled"].attempts == 1  # cancelled while it ran, not retried
    assert job_control.RAN.count("report for 2026-11") == 1
    assert "cleaned up after intro.mp4" in job_control.RAN
