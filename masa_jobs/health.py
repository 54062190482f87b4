"""Is the queue making progress? A health check of the store and its workers.

``check_health(manager)`` asks the store four questions, each with a time limit:

* ``store``: does it answer (``now()``)?
* ``workers``: has at least one worker beaten its heartbeat within one lease timeout?
* ``oldest_due``: has the pending job due first waited less than ``max_due_age``?
* ``leases``: is no job held by a worker that stopped renewing its lease
  (``processing``, lease expired more than a grace ago)?

A worker that is alive but makes no progress fails the last two: it keeps
beating while jobs pile up unclaimed, or a frozen worker's jobs stay held
past their leases when no other worker takes them over. The answer is the
fleet's (every process that asks the same store gets the same one), not one
process's.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import anyio

from .manager import JobManager
from .options import BackgroundJobOptions
from .queries import MAX_PAGE_SIZE, JobQuery
from .records import JobRecord, JobState
from .stores.base import Store

__all__ = [
    "HealthCheck",
    "HealthReport",
    "check_health",
    "operator_store",
    "store_unreachable",
]

# Each check waits this long for the store: a probe must answer within
# Kubernetes' default timeouts even when the store hangs.
CHECK_TIMEOUT_SECONDS = 5.0
# A lapsed lease is taken over at the next claim of a worker with a free slot,
# within one poll interval; this much more covers a claim's round trip and a
# worker's back-off after a store error.
LEASE_GRACE_SECONDS = 5.0
# Processing jobs are bounded by the fleet's concurrency; the scan stops here
# (100,000 jobs) so that a check stays bounded whatever the store holds.
MAX_PROCESSING_PAGES = 200
# Jobs named in the detail of a failed lease check.
NAMED_JOBS = 3


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """One question of the health check and its answer."""

    name: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class HealthReport:
    """Every check's answer; healthy when all of them are ok."""

    checks: tuple[HealthCheck, ...]

    @property
    def healthy(self) -> bool:
        return all(check.ok for check in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"healthy": self.healthy, "checks": [check.to_dict() for check in self.checks]}


def operator_store(manager: object) -> Store | None:
    """The store behind ``manager`` (``DefaultJobManager.store``), if it offers the
    operator reads."""
    store = getattr(manager, "store", None)
    return store if isinstance(store, Store) else None


async def check_health(
    manager: JobManager,
    *,
    max_due_age: float | None = None,
    lease_grace: float | None = None,
) -> HealthReport:
    """Ask the store whether jobs make progress; see the module docstring.

    ``max_due_age`` defaults to ``options.health_max_due_age``; ``lease_grace``
    (seconds a lease may have lapsed before the job counts as stuck) to one
    poll interval plus ``LEASE_GRACE_SECONDS``. The manager's store must be
    open.
    """
    options = _options_of(manager)
    store = operator_store(manager)
    if store is None:
        raise TypeError(
            f"check_health needs a manager with an operator store (DefaultJobManager), got "
            f"{type(manager).__qualname__}"
        )
    if max_due_age is None:
        max_due_age = options.health_max_due_age
    if lease_grace is None:
        lease_grace = options.poll_interval + LEASE_GRACE_SECONDS
    redact = options.redact_error
    reachable = await _run("store", lambda: _check_store(store), redact)
    now = reachable.now
    if now is None:
        return store_unreachable(reachable.check.detail)
    checks = (
        reachable.check,
        (await _run("workers", lambda: _check_workers(manager, options), redact)).check,
        (await _run("oldest_due", lambda: _check_due(store, now, max_due_age), redact)).check,
        (await _run("leases", lambda: _check_leases(store, now, lease_grace), redact)).check,
    )
    return HealthReport(checks)


def store_unreachable(detail: str) -> HealthReport:
    """The report when the store does not answer: nothing else can be checked."""
    skipped = "not checked: the store did not answer"
    rest = (HealthCheck(name, False, skipped) for name in ("workers", "oldest_due", "leases"))
    return HealthReport((HealthCheck("store", False, detail), *rest))


@dataclass(frozen=True, slots=True)
class _Answer:
    """A check's answer; the store check also gives the store's time."""

    check: HealthCheck
    now: datetime | None = None


async def _run(
    name: str, check: Callable[[], Awaitable[_Answer]], redact: Callable[[str], str]
) -> _Answer:
    """One check within its time limit; a failure or timeout is its answer (the
    exception's text redacted: it may quote a connection string)."""
    try:
        with anyio.fail_after(CHECK_TIMEOUT_SECONDS):
            return await check()
    except TimeoutError:
        return _Answer(HealthCheck(name, False, f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"))
    except Exception as exc:
        return _Answer(HealthCheck(name, False, f"failed: {redact(_one_line(exc))}"))


async def _check_store(store: Store) -> _Answer:
    began = time.perf_counter()
    now = await store.now()
    took = (time.perf_counter() - began) * 1000
    return _Answer(HealthCheck("store", True, f"answered in {took:.0f} ms"), now)


async def _check_workers(manager: JobManager, options: BackgroundJobOptions) -> _Answer:
    workers = await manager.workers()
    if not workers:
        detail = f"no live worker: none beat its heartbeat in the last {options.lease_timeout:g} s"
        return _Answer(HealthCheck("workers", False, detail))
    running = sum(worker.running_jobs for worker in workers)
    plural = "worker" if len(workers) == 1 else "workers"
    detail = f"{len(workers)} live {plural}, {running} jobs running"
    return _Answer(HealthCheck("workers", True, detail))


async def _check_due(store: Store, now: datetime, max_due_age: float) -> _Answer:
    oldest = await store.oldest_due_at()
    age = 0.0 if oldest is None else (now - oldest).total_seconds()
    if age <= 0:
        return _Answer(HealthCheck("oldest_due", True, "no job is waiting past its due time"))
    detail = f"the job due first has waited {age:.1f} s (limit {max_due_age:g} s)"
    return _Answer(HealthCheck("oldest_due", age <= max_due_age, detail))


async def _check_leases(store: Store, now: datetime, grace: float) -> _Answer:
    cutoff = now - timedelta(seconds=grace)
    stuck, held = await _stuck_jobs(store, now, cutoff)
    if not stuck:
        detail = f"{held} processing jobs, none past its lease by more than {grace:g} s"
        return _Answer(HealthCheck("leases", True, detail))
    return _Answer(HealthCheck("leases", False, _stuck_detail(stuck, now, grace)))


async def _stuck_jobs(store: Store, now: datetime, cutoff: datetime) -> tuple[list[JobRecord], int]:
    """Processing jobs whose lease lapsed before ``cutoff``, and how many are processing."""
    query = JobQuery.of(JobState.PROCESSING, limit=MAX_PAGE_SIZE, newest_first=False)
    stuck: list[JobRecord] = []
    held = 0
    for _ in range(MAX_PROCESSING_PAGES):
        page = await store.list_jobs(query, now)
        held += len(page.items)
        stuck.extend(
            record
            for record in page.items
            if record.lease_expires_at is not None and record.lease_expires_at < cutoff
        )
        if page.next_cursor is None:
            break
        query = replace(query, cursor=page.next_cursor)
    return stuck, held


def _stuck_detail(stuck: list[JobRecord], now: datetime, grace: float) -> str:
    stuck.sort(key=lambda record: record.lease_expires_at or now)
    named = ", ".join(
        f"{record.id} ({record.name}) held by {record.lease_owner or '?'}"
        for record in stuck[:NAMED_JOBS]
    )
    oldest = stuck[0].lease_expires_at or now
    lapsed = (now - oldest).total_seconds()
    return (
        f"{len(stuck)} jobs held past their lease by more than {grace:g} s (the oldest for "
        f"{lapsed:.1f} s) by workers that stopped renewing it, and no worker took them "
        f"over: {named}"
    )


def _options_of(manager: JobManager) -> BackgroundJobOptions:
    options = getattr(manager, "options", None)
    return options if isinstance(options, BackgroundJobOptions) else BackgroundJobOptions()


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text.splitlines()[0] if text else type(exc).__name__
