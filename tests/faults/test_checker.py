"""The checker itself, on made-up ledgers, stores and logs: each problem it must see."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from masa_jobs import JobInfo, JobState

from .checker import build_report
from .fleet import FaultLog
from .ledger import Run

pytestmark = pytest.mark.faults

NOW = datetime(2026, 1, 1, tzinfo=UTC)
LOST_LINE = (
    "2026-01-01 00:00:01,000 WARNING masa_jobs.worker: job {job} (faults-short): "
    "lease lost on attempt 1: its outcome (succeeded) was refused"
)
DEAD_LINE = (
    "2026-01-01 00:00:01,000 ERROR   masa_jobs.worker: job {job} (faults-fail) "
    "is dead after 1 attempts: boom"
)


def info(job: str, state: JobState, attempts: int = 1, name: str = "faults-short") -> JobInfo:
    return JobInfo(
        id=job,
        name=name,
        state=state,
        attempts=attempts,
        created_at=NOW,
        next_try_at=NOW,
        last_try_at=NOW,
        last_error=None,
    )


def run(job: str, pid: int, attempt: int, start: float, token: str | None = None) -> Run:
    return Run(
        job=job,
        name="faults-short",
        key=job,
        pid=pid,
        worker=None,
        attempt=attempt,
        token=token or f"t{attempt}",
        start=start,
        end=start + 0.1,
        ok=True,
    )


def test_a_clean_run_has_no_problem() -> None:
    report = build_report(
        {"a": JobState.SUCCEEDED},
        {"a": info("a", JobState.SUCCEEDED)},
        {"a": [run("a", 1, 1, 10.0)]},
        {1: ""},
        FaultLog(),
        [],
    )
    assert report.problems() == []


def test_lost_stuck_and_missing_jobs_are_reported() -> None:
    report = build_report(
        dict.fromkeys("abc", JobState.SUCCEEDED),
        {"a": info("a", JobState.PROCESSING), "b": info("b", JobState.ENQUEUED, 0)},
        {},
        {},
        FaultLog(),
        [],
    )
    assert set(report.lost) == {"a", "b", "c"}
    assert report.stuck == ["a (attempts 1)"]


def test_a_duplicate_is_explained_by_a_kill_or_by_a_logged_lease_loss_of_a_faulted_worker() -> None:
    runs = {
        "killed": [run("killed", 1, 1, 10.0), run("killed", 2, 2, 13.0)],
        "lost": [run("lost", 3, 1, 10.0), run("lost", 2, 2, 13.0)],
        "silent": [run("silent", 3, 1, 10.0), run("silent", 2, 2, 13.0)],
        "healthy": [run("healthy", 4, 1, 10.0), run("healthy", 2, 2, 13.0)],
    }
    faults = FaultLog(killed={1: 11.0}, faulted={3})
    logs = {3: LOST_LINE.format(job="lost"), 4: LOST_LINE.format(job="healthy")}
    report = build_report(
        dict.fromkeys(runs, JobState.SUCCEEDED),
        {job: info(job, JobState.SUCCEEDED, 2) for job in runs},
        runs,
        logs,
        faults,
        [],
    )
    assert sorted(d.job for d in report.unexplained) == ["healthy", "silent"]


def test_same_pid_stale_start_shared_token_and_uncounted_runs_are_reported() -> None:
    runs = {
        "same": [run("same", 1, 1, 10.0), run("same", 1, 2, 12.0)],
        "stale": [run("stale", 1, 1, 14.0), run("stale", 2, 2, 12.0)],
        "token": [run("token", 1, 1, 10.0, "x"), run("token", 2, 2, 12.0, "x")],
    }
    report = build_report(
        dict.fromkeys(runs, JobState.SUCCEEDED),
        {job: info(job, JobState.SUCCEEDED, 1) for job in runs},
        runs,
        {},
        FaultLog(faulted={1, 2}),
        [],
    )
    assert set(report.same_pid) == {"same"}
    assert set(report.stale_starts) == {"stale"}
    assert set(report.same_token) == {"token"}
    assert set(report.attempts_below_runs) == set(runs)


def test_a_dead_job_needs_its_error_line_naming_it() -> None:
    expected = {"logged": JobState.DEAD, "silent": JobState.DEAD}
    infos = {job: info(job, JobState.DEAD, name="faults-fail") for job in expected}
    report = build_report(expected, infos, {}, {1: DEAD_LINE.format(job="logged")}, FaultLog(), [])
    assert [line.split()[0] for line in report.dead_not_logged] == ["silent"]
