"""The operator commands, run as an operator would: on a SQLite file a worker also uses.

Each test writes jobs into the file from this process, through the store as
the application and a worker would (``add``, then ``claim`` and ``finish``
for the finished ones), runs a command in a subprocess with the store chosen
by MASA_JOBS_STORE__... variables, and reads the file again to check the
effect. The app's worker and scheduler raise as soon as they are run, so
every test also checks that the command started neither.

The commands that ask before acting get a pseudo-terminal as stdin, with the
answer typed into it; ``run_cli`` gives them an empty stdin that is no terminal.
"""

from __future__ import annotations

import json
import re
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
from masa_jobs.cli._escape import json_text, printable, shorten
from masa_jobs.records import utcnow
from masa_jobs.stores.sqlite import SqliteJobStore
from tests.listing import all_jobs

from ._cli import CLI, REPO_ROOT, RUN_TIMEOUT_SECONDS, clean_env, run_cli, run_cli_on_terminal

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

    def on_terminal(self, command: str, *args: str, typed: str) -> subprocess.CompletedProcess[str]:
        return run_cli_on_terminal(command, APP, *args, typed=typed, env=sqlite_env(self.path))

    def snapshot(self) -> list[JobRecord]:
        """Every job as stored, to check that a command changed nothing."""
        return anyio.run(_all, self.path)

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


def _job(
    created_at: datetime, due_at: datetime, name: str = PING, args: object = None
) -> JobRecord:
    return JobRecord(
        id=uuid4().hex,
        name=name,
        payload=json.dumps({"text": "hello"} if args is None else args),
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


async def _all(path: Path) -> list[JobRecord]:
    async with opened(path) as store:
        return await all_jobs(store, None, limit=1000)


async def _add_dead(path: Path, name: str, args: object, error: str) -> str:
    """A dead job with this name, args and last error, as a worker would leave it.

    Created and due a day ago, so that it is claimed before the seeded due job.
    """
    day_ago = utcnow() - timedelta(days=1)
    async with opened(path) as store:
        job = _job(day_ago, day_ago, name, args)
        return await _finish(store, job, JobState.DEAD, utcnow(), error)


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
    assert "Newest jobs (4 shown)" in out
    assert "--cursor" not in out  # one page holds them all
    ids = [seeded.scheduled, seeded.enqueued, seeded.dead, seeded.old_succeeded]
    positions = [out.index(job_id) for job_id in ids]
    assert positions == sorted(positions)  # newest first
    # No worker ran in the command: the due job is still waiting, and none registered.
    info = seeded.info(seeded.enqueued)
    assert info is not None
    assert (info.state, info.attempts) == (JobState.ENQUEUED, 0)
    assert anyio.run(_workers, seeded.path) == []


def test_jobs_pages_by_cursor_and_filters_by_name(seeded: Seeded) -> None:
    first = json.loads(seeded.run("jobs", "--json", "--limit", "3").stdout)
    assert [job["id"] for job in first["jobs"]] == [seeded.scheduled, seeded.enqueued, seeded.dead]
    assert first["next_cursor"]

    second = json.loads(seeded.run("jobs", "--json", "--cursor", first["next_cursor"]).stdout)
    by_name = json.loads(seeded.run("jobs", "--json", "--name", PING).stdout)
    table = seeded.run("jobs", "--limit", "3")

    assert [job["id"] for job in second["jobs"]] == [seeded.old_succeeded]
    assert second["next_cursor"] is None
    assert len(by_name["jobs"]) == 4
    assert f"more: --cursor {first['next_cursor']}" in table.stdout


def test_jobs_refuses_a_cursor_no_page_gave(seeded: Seeded) -> None:
    result = seeded.run("jobs", "--cursor", "not-a-cursor")

    assert result.returncode != 0
    assert "cursor" in _one_error_line(result)


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
    result = seeded.run("cancel", seeded.scheduled, seeded.enqueued, "--yes")

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"cancelled {seeded.scheduled} ({PING})",
        f"cancelled {seeded.enqueued} ({PING})",
    ]
    assert seeded.state(seeded.scheduled) is JobState.CANCELLED
    assert seeded.state(seeded.enqueued) is JobState.CANCELLED


def test_delete_removes_jobs_and_reports_an_unknown_id(seeded: Seeded) -> None:
    result = seeded.run("delete", seeded.dead, "missing", seeded.dead, "-y")

    assert result.returncode == 1
    assert result.stdout.splitlines() == [f"deleted {seeded.dead}"]  # each id once
    assert "no job with id 'missing'" in _one_error_line(result)
    assert seeded.info(seeded.dead) is None
    assert seeded.state(seeded.enqueued) is JobState.ENQUEUED


def test_purge_removes_the_jobs_finished_before_the_cut_off(seeded: Seeded) -> None:
    kept = seeded.run("purge", "--yes")  # the default retention is a week
    purged = seeded.run("purge", "--older-than", "3600", "--yes")

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


# -- asking before acting ----------------------------------------------------


def test_delete_on_a_terminal_asks_and_deletes_on_yes(seeded: Seeded) -> None:
    result = seeded.on_terminal("delete", seeded.dead, typed="y\n")

    assert result.returncode == 0, result.stderr
    assert result.stderr == f"Delete job {seeded.dead} ({PING}, dead)? [y/N] "
    assert result.stdout == f"deleted {seeded.dead}\n"
    assert seeded.info(seeded.dead) is None


# "\x04" is Ctrl-D: the end of input.
@pytest.mark.parametrize("typed", ["n\n", "\n", "whatever\n", "\x04"])
def test_delete_on_a_terminal_deletes_nothing_unless_the_answer_is_yes(
    seeded: Seeded, typed: str
) -> None:
    before = seeded.snapshot()

    result = seeded.on_terminal("delete", seeded.dead, typed=typed)

    assert result.returncode == 1
    assert result.stderr.startswith(f"Delete job {seeded.dead} ({PING}, dead)? [y/N] ")
    assert result.stdout == "nothing deleted\n"
    assert seeded.snapshot() == before


def test_cancel_of_several_jobs_lists_them_and_asks_once(seeded: Seeded) -> None:
    result = seeded.on_terminal(
        "cancel", seeded.scheduled, "missing", seeded.enqueued, typed="yes\n"
    )

    assert result.returncode == 1  # the unknown id
    assert result.stderr.splitlines() == [
        "error: no job with id 'missing'; list jobs to find its id",
        f"  {seeded.scheduled} ({PING}, scheduled)",
        f"  {seeded.enqueued} ({PING}, enqueued)",
        "Cancel these 2 jobs? [y/N] ",
    ]
    assert result.stdout.splitlines() == [
        f"cancelled {seeded.scheduled} ({PING})",
        f"cancelled {seeded.enqueued} ({PING})",
    ]
    assert seeded.state(seeded.scheduled) is JobState.CANCELLED
    assert seeded.state(seeded.enqueued) is JobState.CANCELLED


def test_purge_on_a_terminal_says_how_many_jobs_would_go(seeded: Seeded) -> None:
    question = "Remove 1 finished job (1 succeeded) that finished more than 3600 s ago? [y/N] "

    declined = seeded.on_terminal("purge", "--older-than", "3600", typed="n\n")
    kept = seeded.info(seeded.old_succeeded)
    accepted = seeded.on_terminal("purge", "--older-than", "3600", typed="y\n")

    assert (declined.returncode, declined.stderr, declined.stdout) == (
        1,
        question,
        "nothing removed\n",
    )
    assert kept is not None
    assert (accepted.returncode, accepted.stderr) == (0, question)
    assert accepted.stdout == "removed 1 finished job that finished more than 3600 s ago\n"
    assert seeded.info(seeded.old_succeeded) is None
    assert seeded.state(seeded.dead) is JobState.DEAD


def test_purge_with_nothing_to_remove_does_not_ask(seeded: Seeded) -> None:
    result = seeded.on_terminal("purge", typed="")  # the default retention is a week

    assert (result.returncode, result.stderr) == (0, "")
    assert result.stdout == "removed 0 finished jobs that finished more than 604800 s ago\n"


def test_yes_acts_on_a_terminal_without_asking(seeded: Seeded) -> None:
    result = seeded.on_terminal("delete", seeded.dead, "--yes", typed="n\n")

    assert (result.returncode, result.stderr) == (0, "")
    assert seeded.info(seeded.dead) is None


def test_retry_of_a_job_does_not_ask(seeded: Seeded) -> None:
    result = seeded.on_terminal("retry", seeded.dead, typed="n\n")

    assert (result.returncode, result.stderr) == (0, "")
    assert seeded.state(seeded.dead) is JobState.ENQUEUED


@pytest.mark.parametrize(
    "command", [("delete", "<dead>"), ("cancel", "<scheduled>"), ("purge", "--older-than", "0")]
)
def test_without_a_terminal_and_without_yes_nothing_is_done(
    seeded: Seeded, command: tuple[str, ...]
) -> None:
    name, *args = command
    ids = {"<dead>": seeded.dead, "<scheduled>": seeded.scheduled}
    before = seeded.snapshot()

    result = seeded.run(name, *(ids.get(arg, arg) for arg in args))

    assert result.returncode == 2
    line = _one_error_line(result)
    assert f"`masa-jobs {name}` asks for confirmation and stdin is not a terminal" in line
    assert f"pass --yes to {name} without asking" in line
    assert result.stdout == ""
    assert seeded.snapshot() == before


def test_dry_runs_say_what_would_be_done_and_change_nothing(seeded: Seeded) -> None:
    before = seeded.snapshot()

    delete = seeded.run("delete", seeded.dead, "missing", "--dry-run")
    cancel = seeded.run("cancel", seeded.scheduled, seeded.old_succeeded, "--dry-run")
    retry = seeded.run("retry", seeded.dead, "--dry-run")
    purge = seeded.run("purge", "--older-than", "3600", "--dry-run")
    # --dry-run wins over --yes: it is the safe one of the two.
    both = seeded.run("delete", seeded.enqueued, "--dry-run", "--yes")

    assert seeded.snapshot() == before
    assert (delete.returncode, delete.stdout) == (1, f"would delete {seeded.dead} ({PING}, dead)\n")
    assert "no job with id 'missing'" in _one_error_line(delete)
    assert cancel.returncode == 1
    assert cancel.stdout == f"would cancel {seeded.scheduled} ({PING}, scheduled)\n"
    assert _one_error_line(cancel) == (
        f"error: job '{seeded.old_succeeded}' is succeeded; "
        "only a job that is enqueued or processing or scheduled can be cancelled"
    )
    assert (retry.returncode, retry.stderr) == (0, "")
    assert retry.stdout == f"would retry {seeded.dead} ({PING}, dead)\n"
    assert (purge.returncode, purge.stderr) == (0, "")
    assert purge.stdout == (
        "would remove 1 finished job (1 succeeded) that finished more than 3600 s ago\n"
    )
    assert both.stdout == f"would delete {seeded.enqueued} ({PING}, enqueued)\n"


# -- what the store holds is shown, not obeyed ----------------------------------

# Each would act on a terminal: clear the screen, set the window title, ring the
# bell, overwrite the line (\r), end a C string (NUL), a C1 CSI (\x9b), turn the
# text right to left (U+202E), hide a character (zero width) and break the
# line (U+2028). The args also hold a lone surrogate, which JSON can carry but
# no terminal could be sent (it cannot be encoded).
HOSTILE = "\x1b[2J\x1b]0;pwned\x07 \r\x00\x9b31m \u202eevil\u200b\u2028"
HOSTILE_CHARS = ("\x1b", "\x07", "\r", "\x00", "\x9b", "\u202e", "\u200b", "\u2028", "\ud800")
HOSTILE_SHOWN = "\\x1b[2J\\x1b]0;pwned\\x07 \\r\\x00\\x9b31m \\u202eevil\\u200b\\u2028"
HOSTILE_NAME = f"ops.{HOSTILE}"
HOSTILE_ARGS = {"text": f"{HOSTILE}\ud800"}


def _assert_no_raw_control_characters(text: str) -> None:
    unsafe = [char for char in HOSTILE_CHARS if char in text]
    assert not unsafe, unsafe


@pytest.fixture
def hostile(seeded: Seeded) -> str:
    error = f"Traceback (most recent call last):\nRuntimeError: {HOSTILE}\nsecond line"
    return anyio.run(_add_dead, seeded.path, HOSTILE_NAME, HOSTILE_ARGS, error)


def _stdout_of(result: subprocess.CompletedProcess[bytes]) -> str:
    """stdout decoded strictly: a raw lone surrogate would not have been encodable."""
    assert result.returncode == 0, result.stderr
    return result.stdout.decode("utf-8")


def _run_bytes(seeded: Seeded, *args: str) -> subprocess.CompletedProcess[bytes]:
    """The command's output as bytes, to check that it is valid UTF-8."""
    return subprocess.run(
        [*CLI, *args],
        cwd=REPO_ROOT,
        env=sqlite_env(seeded.path),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


def test_show_escapes_control_characters_from_the_store(seeded: Seeded, hostile: str) -> None:
    out = _stdout_of(_run_bytes(seeded, "show", APP, hostile))

    _assert_no_raw_control_characters(out)
    assert f"ops.{HOSTILE_SHOWN}" in out  # the name
    assert f"RuntimeError: {HOSTILE_SHOWN}\nsecond line" in out  # its lines kept
    # The args stay JSON: escaped the JSON way, they parse back to what is stored.
    [args] = [line.split("args", 1)[1].strip() for line in out.splitlines() if "args " in line]
    assert json.loads(args) == HOSTILE_ARGS


def test_jobs_escapes_control_characters_in_its_cells(seeded: Seeded, hostile: str) -> None:
    out = _stdout_of(_run_bytes(seeded, "jobs", APP, "--state", "dead"))

    _assert_no_raw_control_characters(out)
    assert f"ops.{HOSTILE_SHOWN}" in out
    assert hostile in out


@pytest.mark.parametrize("command", [("show", "<id>", "--json"), ("jobs", "--json")])
def test_json_escapes_control_characters_and_parses_back_exactly(
    seeded: Seeded, hostile: str, command: tuple[str, ...]
) -> None:
    name, *args = command
    out = _stdout_of(_run_bytes(seeded, name, APP, *(hostile if a == "<id>" else a for a in args)))

    _assert_no_raw_control_characters(out)
    parsed = json.loads(out)
    jobs = [parsed] if name == "show" else parsed["jobs"]
    [job] = [job for job in jobs if job["id"] == hostile]
    assert (job["id"], job["name"], job["args"]) == (hostile, HOSTILE_NAME, HOSTILE_ARGS)
    assert HOSTILE in job["last_error"]


def test_confirmation_and_results_escape_a_hostile_name(seeded: Seeded, hostile: str) -> None:
    result = seeded.on_terminal("delete", hostile, typed="y\n")

    assert result.returncode == 0, result.stderr
    _assert_no_raw_control_characters(result.stderr)
    assert result.stderr == f"Delete job {hostile} (ops.{HOSTILE_SHOWN}, dead)? [y/N] "


def test_show_cuts_a_long_last_error_visibly_and_full_shows_it_all(seeded: Seeded) -> None:
    frames = "".join(
        f'  File "app.py", line {n}, in step_{n}\n    step_{n + 1}()\n' for n in range(300)
    )
    error = f"Traceback (most recent call last):\n{frames}ValueError: the end"
    long_args = {"text": "a" * 3000 + "z" * 3000}
    job_id = anyio.run(_add_dead, seeded.path, PING, long_args, error)
    # A wide console, so that no table cell wraps across lines.
    env = clean_env(
        MASA_JOBS_STORE__BACKEND="sqlite", MASA_JOBS_STORE__PATH=str(seeded.path), COLUMNS="20000"
    )

    short = run_cli("show", APP, job_id, env=env)
    full = run_cli("show", APP, job_id, "--full", env=env)

    assert short.returncode == 0, short.stderr
    shown = short.stdout.split("last error:\n", 1)[1].removesuffix("\n")
    match = re.fullmatch(
        r"(?s)(?P<head>.*)\n\.\.\. \[(?P<cut>\d+) characters cut; "
        r"`masa-jobs show (?P<command>.+) --full` prints them all\] \.\.\.\n(?P<tail>.*)",
        shown,
    )
    assert match is not None, shown
    head, tail, cut = match["head"], match["tail"], int(match["cut"])
    assert match["command"] == f"{APP} {job_id}"
    # The start and the end are the error's own, whole lines; the count is exact.
    assert error.startswith(f"{head}\n")
    assert error.endswith(f"\n{tail}")
    assert len(head) + 1 + cut + len(tail) == len(error)
    assert head.startswith("Traceback (most recent call last):")
    assert tail.endswith("ValueError: the end")
    assert "step_150()" not in short.stdout
    assert "characters cut; --full shows them all] ..." in short.stdout  # the args too
    assert full.returncode == 0, full.stderr
    assert f"last error:\n{error}\n" in full.stdout
    assert json.dumps(long_args) in full.stdout


# -- the escaping and cutting themselves, in this process ----------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain [bold]text[/bold] \\ é 漢字 🙂", "plain [bold]text[/bold] \\ é 漢字 🙂"),
        ("\x1b[31m\r\n\t\x00\x7f", "\\x1b[31m\\r\\n\\t\\x00\\x7f"),
        (
            "\x9b\u202e\u2066\u200b\ufeff\u2028\u2029",
            "\\x9b\\u202e\\u2066\\u200b\\ufeff\\u2028\\u2029",
        ),
        ("\ud800 \U000e0001", "\\ud800 \\U000e0001"),
    ],
)
def test_printable_escapes_controls_format_characters_and_separators(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable(text, keep_newlines=True) == shown.replace("\\n", "\n")


def test_json_text_is_ascii_safe_where_it_must_be_and_parses_back() -> None:
    value = {"k\u202e": ["\x1b\x9b\u2028\ud800\U000e0001", "é 漢字 🙂"], "n": 1}

    text = json_text(value, indent=2)

    assert json.loads(text) == value
    assert "é 漢字 🙂" in text  # printable text stays as it is
    assert printable(text, keep_newlines=True) == text  # nothing left to escape


def test_shorten_keeps_short_text_and_cuts_a_long_line_anywhere() -> None:
    assert shorten("x" * 30, 30, "hint") == "x" * 30
    cut = shorten("a" * 10 + "b" * 80 + "c" * 20, 30, "see --full")
    assert cut == f"{'a' * 10} ... [80 characters cut; see --full] ... {'c' * 20}"
