"""The operator commands, run as an operator would: on a SQLite file a worker also uses.

Each test writes jobs into the file from this process, through the store as
the application and a worker would (``add``, then ``claim`` and ``finish``
for the finished ones), runs a command in a subprocess with the store chosen
by MASA_JOBS_STORE__... variables, and reads the file again to check the
effect. The app's worker and scheduler raise as soon as they are run, so
every test also checks that the command started neither.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import anyio
import pytest

from masa_jobs import JobInfo, JobOutcome, JobRecord, JobState, ScheduleRecord, WorkerInfo
from masa_jobs.records import utcnow
from masa_jobs.stores.sqlite import SqliteJobStore

from ._cli import clean_env, run_cli

APP = "tests.cli.ops_app:container"
# Its options provider ignores config, so the command must override it.
FIXED_OPTIONS_APP = "tests.cli.ops_app:fixed_options"
PING = "ops.ping"  # the job name of tests/cli/ops_app.py's Ping
WORKER = "test-worker"
LEASE = timedelta(seconds=30)
# Brackets that rich would read as markup if the commands let it.
ERROR = "RuntimeError: card declined [bold]51[/bold]"
TRACEBACK = f'Traceback (most recent call last):\n  File "app.py", line 3, in execute\n{ERROR}'
KNOWN_SCHEDULE = ("nightly", "tests.cli.ops_app.Nightly")
UNKNOWN_SCHEDULE = ("legacy", "gone.jobs.Legacy")
FINISHED_LONG_AGO = timedelta(hours=2)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Seeded:
    """A store file and the ids of the jobs in it, one per kind."""

    path: Path
    dead: str
    old_succeeded: str
    enqueued: str
    scheduled: str

    def run(self, command: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(command, APP, *args, env=sqlite_env(self.path))

    def info(self, job_id: str) -> JobInfo | None:
        record = anyio.run(_get, self.path, job_id)
        return None if record is None else JobInfo.from_record(record)

    def state(self, job_id: str) -> JobState | None:
        info = self.info(job_id)
        return None if info is None else info.state


def sqlite_env(path: Path) -> dict[str, str]:
    return clean_env(MASA_JOBS_STORE__BACKEND="sqlite", MASA_JOBS_STORE__PATH=str(path))


@asynccontextmanager
async def opened(path: Path) -> AsyncIterator[SqliteJobStore]:
    store = SqliteJobStore(path)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


def _job(created_at: datetime, due_at: datetime) -> JobRecord:
    return JobRecord(
        id=uuid4().hex,
        name=PING,
        payload=json.dumps({"text": "hello"}),
        state=JobState.ENQUEUED,
        created_at=created_at,
        next_try_at=due_at,
    )


async def _finish(
    store: SqliteJobStore, job: JobRecord, state: JobState, finished_at: datetime, error: str | None
) -> str:
    """Store ``job``, then claim and finish it as a worker would."""
    await store.add([job])
    [claimed] = await store.claim(WORKER, 1, LEASE)
    assert claimed.id == job.id
    outcome = JobOutcome(
        job.id,
        state,
        claimed.attempts,
        job.next_try_at,
        last_error=error,
        finished_at=finished_at,
        lease_token=claimed.lease_token,
    )
    assert await store.finish(WORKER, [outcome]) == {job.id}
    return job.id


def _schedule(schedule_id: str, job_class: str, now: datetime) -> ScheduleRecord:
    return ScheduleRecord(
        id=schedule_id,
        job_class=job_class,
        cron_expression="0 3 * * *",
        timezone="UTC",
        next_fire_at=now + timedelta(hours=12),
        created_at=now,
        updated_at=now,
    )


async def _seed(path: Path) -> Seeded:
    now = utcnow()
    # Created a second apart, oldest first, so that "newest first" has one order.
    created = [now - timedelta(seconds=4 - n) for n in range(4)]
    async with opened(path) as store:
        old = _job(created[0], created[0])
        old_succeeded = await _finish(store, old, JobState.SUCCEEDED, now - FINISHED_LONG_AGO, None)
        dead = await _finish(store, _job(created[1], created[1]), JobState.DEAD, now, TRACEBACK)
        enqueued = _job(created[2], now)
        scheduled = _job(created[3], now + timedelta(hours=1))
        await store.add([enqueued, scheduled])
        for schedule_id, job_class in (KNOWN_SCHEDULE, UNKNOWN_SCHEDULE):
            await store.upsert_schedule(_schedule(schedule_id, job_class, now))
    return Seeded(path, dead, old_succeeded, enqueued.id, scheduled.id)


async def _get(path: Path, job_id: str) -> JobRecord | None:
    async with opened(path) as store:
        return await store.get(job_id)


async def _workers(path: Path) -> list[WorkerInfo]:
    async with opened(path) as store:
        return await store.list_workers(EPOCH)


async def _heartbeat(path: Path, worker: WorkerInfo) -> None:
    async with opened(path) as store:
        await store.heartbeat(worker)


@pytest.fixture
def seeded(tmp_path: Path) -> Seeded:
    return anyio.run(_seed, tmp_path / "jobs.sqlite3")


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def test_jobs_shows_counts_and_the_newest_jobs_without_running_any(seeded: Seeded) -> None:
    result = seeded.run("jobs")

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "Jobs per state" in out
    assert "Newest jobs (1-4 of 4)" in out
    ids = [seeded.scheduled, seeded.enqueued, seeded.dead, seeded.old_succeeded]
    positions = [out.index(job_id) for job_id in ids]
    assert positions == sorted(positions)  # newest first
    # No worker ran in the command: the due job is still waiting, and none registered.
    info = seeded.info(seeded.enqueued)
    assert info is not None
    assert (info.state, info.attempts) == (JobState.ENQUEUED, 0)
    assert anyio.run(_workers, seeded.path) == []


def test_a_container_whose_options_ignore_config_runs_no_worker_either(seeded: Seeded) -> None:
    result = run_cli("jobs", FIXED_OPTIONS_APP, "--json", env=sqlite_env(seeded.path))

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads(result.stdout)["counts"]["enqueued"] == 1
    assert seeded.state(seeded.enqueued) is JobState.ENQUEUED


def test_jobs_json_has_every_state_and_pages(seeded: Seeded) -> None:
    result = seeded.run("jobs", "--json", "--limit", "2", "--offset", "1")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["counts"] == {
        "scheduled": 1,
        "enqueued": 1,
        "processing": 0,
        "succeeded": 1,
        "dead": 1,
        "cancelled": 0,
    }
    assert [job["id"] for job in report["jobs"]] == [seeded.enqueued, seeded.dead]


def test_jobs_json_of_one_state_has_the_last_error(seeded: Seeded) -> None:
    result = seeded.run("jobs", "--state", "dead", "--json")

    assert result.returncode == 0, result.stderr
    [job] = json.loads(result.stdout)["jobs"]
    assert job["id"] == seeded.dead
    assert job["state"] == "dead"
    assert job["name"] == PING
    assert job["attempts"] == 1
    assert job["last_error"] == TRACEBACK
    assert job["args"] == {"text": "hello"}
    assert job["next_try_at"] is None
    assert datetime.fromisoformat(job["created_at"]).tzinfo is not None


def test_show_prints_the_job_and_its_whole_last_error(seeded: Seeded) -> None:
    result = seeded.run("show", seeded.dead)

    assert result.returncode == 0, result.stderr
    assert seeded.dead in result.stdout
    assert "dead" in result.stdout
    assert '{"text": "hello"}' in result.stdout
    assert TRACEBACK in result.stdout  # whole, brackets and all


def test_show_json_is_the_job(seeded: Seeded) -> None:
    result = seeded.run("show", seeded.scheduled, "--json")

    assert result.returncode == 0, result.stderr
    job = json.loads(result.stdout)
    assert (job["id"], job["state"], job["last_error"]) == (seeded.scheduled, "scheduled", None)


def test_show_of_an_unknown_id_is_one_line_and_exit_code_2(seeded: Seeded) -> None:
    result = seeded.run("show", "no-such-job")

    assert result.returncode == 2
    assert "no job with id 'no-such-job'" in _one_error_line(result)
    assert result.stdout == ""


def test_retry_enqueues_a_dead_job_and_reports_each_refused_id(seeded: Seeded) -> None:
    result = seeded.run("retry", "missing", seeded.old_succeeded, seeded.dead)

    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"retried {seeded.dead} ({PING}): enqueued"]
    errors = result.stderr.splitlines()
    assert len(errors) == 2, result.stderr
    assert "no job with id 'missing'" in errors[0]
    assert f"job '{seeded.old_succeeded}' is succeeded" in errors[1]
    assert "only a job that is dead can be retried" in errors[1]
    assert seeded.state(seeded.dead) is JobState.ENQUEUED
    assert seeded.state(seeded.old_succeeded) is JobState.SUCCEEDED


def test_cancel_cancels_pending_jobs(seeded: Seeded) -> None:
    result = seeded.run("cancel", seeded.scheduled, seeded.enqueued)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"cancelled {seeded.scheduled} ({PING})",
        f"cancelled {seeded.enqueued} ({PING})",
    ]
    assert seeded.state(seeded.scheduled) is JobState.CANCELLED
    assert seeded.state(seeded.enqueued) is JobState.CANCELLED


def test_delete_removes_jobs_and_reports_an_unknown_id(seeded: Seeded) -> None:
    result = seeded.run("delete", seeded.dead, "missing", seeded.dead)

    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"deleted {seeded.dead}"]  # each id once
    assert "no job with id 'missing'" in _one_error_line(result)
    assert seeded.info(seeded.dead) is None
    assert seeded.state(seeded.enqueued) is JobState.ENQUEUED


def test_purge_removes_the_jobs_finished_before_the_cut_off(seeded: Seeded) -> None:
    kept = seeded.run("purge")  # the default retention is a week
    purged = seeded.run("purge", "--older-than", "3600")

    assert kept.returncode == 0, kept.stderr
    assert kept.stdout == "removed 0 finished jobs that finished more than 604800 s ago\n"
    assert purged.returncode == 0, purged.stderr
    assert purged.stdout == "removed 1 finished job that finished more than 3600 s ago\n"
    assert seeded.info(seeded.old_succeeded) is None
    assert seeded.state(seeded.dead) is JobState.DEAD


def test_schedules_lists_the_recurring_jobs_and_which_app_knows(seeded: Seeded) -> None:
    as_json = seeded.run("schedules", "--json")
    table = seeded.run("schedules")

    assert as_json.returncode == 0, as_json.stderr
    schedules = json.loads(as_json.stdout)
    assert [(s["id"], s["job_class"], s["known"]) for s in schedules] == [
        (*UNKNOWN_SCHEDULE, False),
        (*KNOWN_SCHEDULE, True),
    ]
    assert schedules[0]["cron_expression"] == "0 3 * * *"
    assert schedules[0]["last_fire_at"] is None
    assert table.returncode == 0, table.stderr
    for schedule_id, job_class in (KNOWN_SCHEDULE, UNKNOWN_SCHEDULE):
        assert schedule_id in table.stdout
        assert job_class in table.stdout
    assert 'known "no"' in table.stdout


def test_trigger_enqueues_one_tick_now(seeded: Seeded) -> None:
    result = seeded.run("trigger", "nightly")

    assert result.returncode == 0, result.stderr
    prefix, _, rest = result.stdout.partition(": job ")
    assert prefix == "triggered nightly"
    job_id = rest.removesuffix(" enqueued\n")
    info = seeded.info(job_id)
    assert info is not None
    assert (info.name, info.state) == ("schedule:nightly", JobState.ENQUEUED)


def test_trigger_of_an_unknown_schedule_is_one_line_and_exit_code_2(seeded: Seeded) -> None:
    result = seeded.run("trigger", "missing")

    assert result.returncode == 2
    assert "no recurring job with id 'missing'" in _one_error_line(result)


def test_workers_lists_the_live_workers(seeded: Seeded) -> None:
    now = utcnow()
    worker = WorkerInfo("web-1:4242:ab12cd34", "web-1", 4242, now, now, running_jobs=3)
    anyio.run(_heartbeat, seeded.path, worker)

    table = seeded.run("workers")
    as_json = seeded.run("workers", "--json")

    assert table.returncode == 0, table.stderr
    for fragment in ("web-1:4242:ab12cd34", "web-1", "4242"):
        assert fragment in table.stdout
    assert as_json.returncode == 0, as_json.stderr
    [listed] = json.loads(as_json.stdout)
    assert (listed["id"], listed["host"], listed["pid"], listed["running_jobs"]) == (
        worker.id,
        "web-1",
        4242,
        3,
    )
    assert datetime.fromisoformat(listed["last_seen_at"]).tzinfo is not None


def test_workers_says_when_there_are_none(seeded: Seeded) -> None:
    table = seeded.run("workers")
    as_json = seeded.run("workers", "--json")

    assert table.returncode == 0, table.stderr
    assert table.stdout.startswith("no live workers")
    assert json.loads(as_json.stdout) == []


@pytest.mark.parametrize("command", [("jobs",), ("retry", "some-id")])
def test_a_store_that_cannot_be_opened_is_one_line_and_exit_code_2(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    missing = tmp_path / "missing" / "jobs.sqlite3"
    name, *args = command

    result = run_cli(name, APP, *args, env=sqlite_env(missing))

    assert result.returncode == 2
    assert "cannot open the SQLite store" in _one_error_line(result)


def test_the_memory_store_is_warned_about() -> None:
    result = run_cli("workers", APP)  # no MASA_JOBS_STORE__...: the memory store

    assert result.returncode == 0, result.stderr
    assert result.stderr.startswith("warning: the memory store keeps jobs inside the process")
    assert result.stdout.startswith("no live workers")
