"""What the scenarios share: timings, enqueueing, waiting on conditions, the end."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel

from masa_jobs import JobManager, JobState

from .checker import Report, assert_clean, check
from .fleet import Fleet
from .ledger import real_time

__all__ = [
    "LEASE",
    "OPTIONS",
    "all_finished",
    "enqueue",
    "finish_scenario",
    "has_open_run",
    "hold_fault_until_taken_over",
    "open_jobs",
    "settle",
    "settle_or_fail",
    "succeeded_at_least",
    "taken_over",
]

# Short leases keep the suite quick: a lapsed lease is seen within seconds.
LEASE = 2.0
OPTIONS: dict[str, object] = {
    "lease_timeout": LEASE,
    "poll_interval": 0.5,
    "concurrency": 4,
    "shutdown_timeout": 5,
}
_ENQUEUE_CHUNK = 1000


async def enqueue(
    manager: JobManager, jobs: Iterable[BaseModel], delay: float | None = None
) -> list[str]:
    """Enqueue in chunks of a thousand; the ids in order."""
    ids: list[str] = []
    batch: list[tuple[BaseModel, float | None]] = []
    for job in jobs:
        batch.append((job, delay))
        if len(batch) == _ENQUEUE_CHUNK:
            ids += await manager.enqueue_many(batch)
            batch = []
    if batch:
        ids += await manager.enqueue_many(batch)
    return ids


async def settle(predicate: Callable[[], Awaitable[bool]], timeout: float) -> bool:
    """Poll ``predicate`` until true (True) or ``timeout`` seconds passed (False)."""
    # Across processes there is no event to wait on: poll, with a deadline.
    with anyio.move_on_after(timeout):
        while not await predicate():  # noqa: ASYNC110
            await anyio.sleep(0.1)
        return True
    return False


async def settle_or_fail(
    predicate: Callable[[], Awaitable[bool]], timeout: float, fleet: Fleet, what: str
) -> None:
    if not await settle(predicate, timeout):
        raise AssertionError(f"{what} within {timeout} s\n{fleet.tails()}")


def all_finished(manager: JobManager, total: int) -> Callable[[], Awaitable[bool]]:
    """True once ``total`` jobs are finished and none is pending or processing."""

    async def finished() -> bool:
        counts = await manager.count()
        done = sum(counts.get(s, 0) for s in (JobState.SUCCEEDED, JobState.DEAD))
        busy = sum(
            counts.get(s, 0) for s in (JobState.SCHEDULED, JobState.ENQUEUED, JobState.PROCESSING)
        )
        return done >= total and busy == 0

    return finished


def succeeded_at_least(manager: JobManager, count: int) -> Callable[[], Awaitable[bool]]:
    async def reached() -> bool:
        return (await manager.count()).get(JobState.SUCCEEDED, 0) >= count

    return reached


def has_open_run(ledger: Path, pid: int) -> Callable[[], Awaitable[bool]]:
    """True while ``pid`` has started a handler it has not ended."""

    async def running() -> bool:
        return bool(_open_runs(ledger, pid))

    return running


def _open_runs(ledger: Path, pid: int) -> set[tuple[str, float]]:
    # A small local file, read between polls: no thread needed.
    open_runs: set[tuple[str, float]] = set()
    for entry in _entries(ledger):
        if entry["pid"] != pid:
            continue
        key = (entry["job"], entry["start"])
        if entry["event"] == "start":
            open_runs.add(key)
        else:
            open_runs.discard(key)
    return open_runs


def _entries(ledger: Path) -> list[dict[str, Any]]:
    if not ledger.exists():
        return []
    return [json.loads(line) for line in ledger.read_text().splitlines()]


def open_jobs(ledger: Path, pids: Iterable[int]) -> set[str]:
    """Jobs whose handler one of ``pids`` started and has not ended."""
    return {job for pid in pids for job, _ in _open_runs(ledger, pid)}


def taken_over(ledger: Path, jobs: set[str], pids: set[int]) -> Callable[[], Awaitable[bool]]:
    """True once every one of ``jobs`` was started by a worker not in ``pids``."""

    async def all_taken() -> bool:
        started_elsewhere = {
            entry["job"]
            for entry in _entries(ledger)
            if entry["event"] == "start" and entry["pid"] not in pids
        }
        return jobs <= started_elsewhere

    return all_taken


async def hold_fault_until_taken_over(
    fleet: Fleet, jobs: set[str], pids: set[int], least: float, most: float
) -> str | None:
    """Keep a fault on for ``least`` seconds, then until the faulted workers' open
    jobs ran elsewhere (their leases lapsed and another worker claimed them), at
    most ``most`` seconds more; a problem when they never were."""
    fleet.faults.note(f"open jobs of the faulted workers: {len(jobs)}")
    await anyio.sleep(least)  # the fault's own length
    if await settle(taken_over(fleet.ledger, jobs, pids), most):
        fleet.faults.note("their open jobs ran elsewhere")
        return None
    return (
        f"the faulted workers' {len(jobs)} open jobs were not all run by another worker "
        f"within {least + most:g} s: lapsed leases were not taken over"
    )


async def finish_scenario(
    manager: JobManager,
    fleet: Fleet,
    expected: dict[str, JobState],
    scenario: str,
    extra: Callable[[Report], None] | None = None,
) -> Report:
    """Check the settled store (workers still up), stop the workers, assert.

    The check waits for a lease after the faults ended, whatever the store
    says: a thawed or reconnected worker learns within a lease that it lost
    its leases (a renewal or an outcome refused), and its log must say so.
    """
    fleet.faults.note("settled")
    if fleet.faults.ended_at is not None:
        await anyio.sleep(max(0.0, fleet.faults.ended_at + LEASE - real_time()))
    report = await check(manager, fleet, expected)
    if extra is not None:
        extra(report)
    codes = fleet.stop_all()
    fleet.faults.note("stopped")
    report.bad_exits = {name: code for name, code in codes.items() if code != 0}
    # Shown for passing runs too with `pytest -rP`: the figures of every scenario.
    print(f"{scenario}\n{report.summary()}\nworkers: {fleet.describe()}")
    print("\n".join(fleet.faults.notes))
    assert_clean(report, fleet, scenario)
    return report
