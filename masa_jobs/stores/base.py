"""The ``JobStore`` protocol: persistence plus one atomic claim.

Policy (names, validation, retry maths) lives above this line, in Python, so
that a store only keeps records and hands each due job to one claimer at a
time. Every store passes the same contract suite (``tests/contract``).

Semantics every implementation keeps:

* A job is *due* when it is pending (``scheduled`` or ``enqueued``) and its
  ``next_try_at`` has passed, or when it is ``processing`` and its lease
  expired (its worker died).
* ``claim`` atomically moves up to ``limit`` due jobs to ``processing`` under
  a lease owned by ``worker_id``, increments ``attempts`` and sets
  ``last_try_at``; due jobs come in order of ``next_try_at``, then
  ``attempts``, then creation. Two claimers never get the same job while its
  lease holds.
* ``finish``, ``extend_leases`` apply only to jobs whose lease ``worker_id``
  still owns: a worker that lost its lease cannot overwrite the new owner.
* Timestamps are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import builtins
from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from ..records import JobOutcome, JobRecord, JobState, ScheduleRecord, WorkerInfo

__all__ = ["STALE_WORKER_SECONDS", "JobStore", "ScheduleStore", "Store"]

# A worker silent this long crashed (a live one beats every few seconds): stores
# forget it on another worker's heartbeat, so dead workers do not pile up.
STALE_WORKER_SECONDS = 24 * 3600.0


@runtime_checkable
class JobStore(Protocol):
    """Where jobs are kept. Open with ``open()`` before use, close with ``aclose()``."""

    async def open(self) -> None:
        """Connect and prepare (create tables, load scripts). Idempotent."""

    async def aclose(self) -> None:
        """Release connections. Idempotent."""

    async def add(self, records: Sequence[JobRecord]) -> None:
        """Store new pending jobs, all or none, and wake waiting workers."""

    async def claim(
        self, worker_id: str, limit: int, now: datetime, lease: timedelta
    ) -> list[JobRecord]:
        """Take up to ``limit`` due jobs under a lease; see the module docstring."""

    async def extend_leases(
        self, worker_id: str, job_ids: Collection[str], expires_at: datetime
    ) -> None:
        """Push back the lease of the given jobs that ``worker_id`` still owns."""

    async def finish(self, worker_id: str, outcomes: Sequence[JobOutcome]) -> int:
        """Record outcomes for jobs ``worker_id`` holds; returns how many applied."""

    async def get(self, job_id: str) -> JobRecord | None:
        """One job, or None."""

    async def list(
        self, states: Collection[JobState] | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[JobRecord]:
        """Jobs in the given stored states (all when None), newest first."""

    async def count_by_state(self, now: datetime) -> dict[JobState, int]:
        """How many jobs are in each state, pending ones split by ``now`` into
        scheduled and enqueued."""

    async def transition(
        self,
        job_id: str,
        expected: Collection[JobState],
        state: JobState,
        now: datetime,
    ) -> JobRecord | None:
        """Compare-and-set the state of one job, for manual operations.

        Applies only when the stored state is in ``expected``; a move to a
        pending state makes the job due at ``now``, a move to a finished state
        stamps ``finished_at``. Returns the updated record, or None.
        """

    async def delete(self, job_id: str) -> bool:
        """Remove one job; False when it did not exist."""

    async def purge(self, states: Collection[JobState], finished_before: datetime) -> int:
        """Remove finished jobs in ``states`` finished before the given time."""

    async def wait_for_work(self, timeout: float) -> None:
        """Return when a job may be due: at once if one is, when one is added,
        when the earliest scheduled job falls due, or after ``timeout`` seconds."""

    async def heartbeat(self, worker: WorkerInfo) -> None:
        """Register or refresh a worker (upsert by id)."""

    async def list_workers(self, seen_since: datetime) -> builtins.list[WorkerInfo]:
        """Workers whose last heartbeat is at or after ``seen_since``, by id."""

    async def remove_worker(self, worker_id: str) -> None:
        """Forget a worker that stopped."""


@runtime_checkable
class ScheduleStore(Protocol):
    """Where recurring jobs are kept; every store implements it beside ``JobStore``.

    ``fire_schedule`` is the one atomic primitive: it moves a schedule's
    ``next_fire_at`` from the value the caller saw to the next tick and, in
    the same transaction, stores the tick's job. Of several schedulers that
    saw the same tick, exactly one succeeds.
    """

    async def upsert_schedule(self, schedule: ScheduleRecord) -> None:
        """Insert a schedule, or replace the one with the same id."""

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        """One schedule, or None."""

    async def list_schedules(self) -> builtins.list[ScheduleRecord]:
        """Every schedule, by id."""

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Remove a schedule; False when it did not exist."""

    async def fire_schedule(
        self,
        schedule_id: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        job: JobRecord | None,
    ) -> bool:
        """If the schedule's ``next_fire_at`` is still ``expected_next_fire_at``,
        set it to ``next_fire_at``, set ``last_fire_at`` to the expected value
        when ``job`` is given, and add ``job`` (None skips the tick): all or
        nothing. Returns whether it applied."""


@runtime_checkable
class Store(JobStore, ScheduleStore, Protocol):
    """What every backend implements: jobs and recurring jobs."""
