"""The in-memory store: the embedded default for one process, tests and demos.

Jobs live in a dict; two heaps order the due jobs and the leases. Heap entries
are invalidated lazily: each job has one current token, and an entry whose
token is not current is skipped when it reaches the top. Nothing survives the
process, so use a durable store wherever a lost job matters.
"""

from __future__ import annotations

import builtins
import heapq
import math
import time
from collections.abc import Collection, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from itertools import count

import anyio

from ..records import (
    FINISHED_STATES,
    PENDING_STATES,
    JobOutcome,
    JobRecord,
    JobState,
    ScheduleRecord,
    WorkerInfo,
)
from .base import STALE_WORKER_SECONDS

__all__ = ["MemoryJobStore"]


class MemoryJobStore:
    """A ``JobStore`` kept in this process's memory."""

    def __init__(self) -> None:
        self._jobs: dict[str, JobRecord] = {}
        # (next_try_at, attempts, token, job_id) for pending jobs.
        self._due: list[tuple[float, int, int, str]] = []
        # (lease_expires_at, token, job_id) for processing jobs.
        self._leases: list[tuple[float, int, str]] = []
        self._tokens: dict[str, int] = {}
        self._sequence = count()
        self._wakeup: anyio.Event | None = None
        self._workers: dict[str, WorkerInfo] = {}
        self._schedules: dict[str, ScheduleRecord] = {}

    def __repr__(self) -> str:
        return f"MemoryJobStore(jobs={len(self._jobs)})"

    async def open(self) -> None:
        """Nothing to connect to."""

    async def aclose(self) -> None:
        """Nothing to release; the jobs stay for a later ``open()``."""

    async def add(self, records: Sequence[JobRecord]) -> None:
        for record in records:
            if record.id in self._jobs:
                raise ValueError(f"a job with id {record.id!r} exists already")
        for record in records:
            self._jobs[record.id] = record
            self._push_due(record)
        self._wake()

    async def claim(
        self, worker_id: str, limit: int, now: datetime, lease: timedelta
    ) -> list[JobRecord]:
        now_ts = now.timestamp()
        self._requeue_expired_leases(now_ts)
        lease_expires_at = now + lease
        expires_ts = lease_expires_at.timestamp()
        claimed: list[JobRecord] = []
        due = self._due
        while due and len(claimed) < limit and due[0][0] <= now_ts:
            _, _, token, job_id = heapq.heappop(due)
            if self._tokens.get(job_id) != token:
                continue
            record = self._jobs[job_id]
            taken = JobRecord(
                id=record.id,
                name=record.name,
                payload=record.payload,
                state=JobState.PROCESSING,
                created_at=record.created_at,
                next_try_at=record.next_try_at,
                attempts=record.attempts + 1,
                last_try_at=now,
                last_error=record.last_error,
                done_handlers=record.done_handlers,
                lease_owner=worker_id,
                lease_expires_at=lease_expires_at,
            )
            self._jobs[job_id] = taken
            token = next(self._sequence)
            self._tokens[job_id] = token
            heapq.heappush(self._leases, (expires_ts, token, job_id))
            claimed.append(taken)
        return claimed

    async def extend_leases(
        self, worker_id: str, job_ids: Collection[str], expires_at: datetime
    ) -> None:
        expires_ts = expires_at.timestamp()
        for job_id in job_ids:
            record = self._owned(worker_id, job_id)
            if record is None:
                continue
            self._jobs[job_id] = replace(record, lease_expires_at=expires_at)
            token = next(self._sequence)
            self._tokens[job_id] = token
            heapq.heappush(self._leases, (expires_ts, token, job_id))

    async def finish(self, worker_id: str, outcomes: Sequence[JobOutcome]) -> int:
        applied = 0
        requeued = False
        for outcome in outcomes:
            record = self._owned(worker_id, outcome.job_id)
            if record is None:
                continue
            updated = replace(
                record,
                state=outcome.state,
                attempts=outcome.attempts,
                next_try_at=outcome.next_try_at,
                last_error=outcome.last_error,
                done_handlers=outcome.done_handlers,
                finished_at=outcome.finished_at,
                lease_owner=None,
                lease_expires_at=None,
            )
            self._jobs[outcome.job_id] = updated
            if updated.state in PENDING_STATES:
                self._push_due(updated)
                requeued = True
            else:
                self._tokens.pop(outcome.job_id, None)
            applied += 1
        if requeued:
            self._wake()
        return applied

    async def get(self, job_id: str) -> JobRecord | None:
        return self._jobs.get(job_id)

    async def list(
        self, states: Collection[JobState] | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[JobRecord]:
        wanted = None if states is None else frozenset(states)
        found = [r for r in self._jobs.values() if wanted is None or r.state in wanted]
        found.sort(key=lambda r: r.created_at, reverse=True)
        return found[offset : offset + limit]

    async def count_by_state(self, now: datetime) -> dict[JobState, int]:
        counts = dict.fromkeys(JobState, 0)
        for record in self._jobs.values():
            state = record.state
            if state in PENDING_STATES:
                state = JobState.ENQUEUED if record.next_try_at <= now else JobState.SCHEDULED
            counts[state] += 1
        return counts

    async def transition(
        self,
        job_id: str,
        expected: Collection[JobState],
        state: JobState,
        now: datetime,
    ) -> JobRecord | None:
        record = self._jobs.get(job_id)
        if record is None or record.state not in expected:
            return None
        if state in PENDING_STATES:
            updated = replace(
                record,
                state=state,
                next_try_at=now,
                finished_at=None,
                lease_owner=None,
                lease_expires_at=None,
            )
            self._jobs[job_id] = updated
            self._push_due(updated)
            self._wake()
        else:
            finished_at = now if state in FINISHED_STATES else None
            updated = replace(
                record,
                state=state,
                finished_at=finished_at,
                lease_owner=None,
                lease_expires_at=None,
            )
            self._jobs[job_id] = updated
            self._tokens.pop(job_id, None)
        return updated

    async def delete(self, job_id: str) -> bool:
        self._tokens.pop(job_id, None)
        return self._jobs.pop(job_id, None) is not None

    async def purge(self, states: Collection[JobState], finished_before: datetime) -> int:
        wanted = frozenset(states) & FINISHED_STATES
        doomed = [
            job_id
            for job_id, record in self._jobs.items()
            if record.state in wanted
            and record.finished_at is not None
            and record.finished_at < finished_before
        ]
        for job_id in doomed:
            del self._jobs[job_id]
            self._tokens.pop(job_id, None)
        return len(doomed)

    async def wait_for_work(self, timeout: float) -> None:
        wait = min(timeout, self._seconds_until_due(time.time()))
        if wait <= 0:
            return
        if self._wakeup is None or self._wakeup.is_set():
            self._wakeup = anyio.Event()
        with anyio.move_on_after(wait):
            await self._wakeup.wait()

    async def heartbeat(self, worker: WorkerInfo) -> None:
        stale_before = worker.last_seen_at - timedelta(seconds=STALE_WORKER_SECONDS)
        for stale in [w.id for w in self._workers.values() if w.last_seen_at < stale_before]:
            del self._workers[stale]
        self._workers[worker.id] = worker

    async def list_workers(self, seen_since: datetime) -> builtins.list[WorkerInfo]:
        alive = [w for w in self._workers.values() if w.last_seen_at >= seen_since]
        return sorted(alive, key=lambda w: w.id)

    async def remove_worker(self, worker_id: str) -> None:
        self._workers.pop(worker_id, None)

    async def upsert_schedule(self, schedule: ScheduleRecord) -> None:
        self._schedules[schedule.id] = schedule

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        return self._schedules.get(schedule_id)

    async def list_schedules(self) -> builtins.list[ScheduleRecord]:
        return sorted(self._schedules.values(), key=lambda s: s.id)

    async def delete_schedule(self, schedule_id: str) -> bool:
        return self._schedules.pop(schedule_id, None) is not None

    async def fire_schedule(
        self,
        schedule_id: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        job: JobRecord | None,
    ) -> bool:
        schedule = self._schedules.get(schedule_id)
        if schedule is None or schedule.next_fire_at != expected_next_fire_at:
            return False
        if job is not None:
            await self.add((job,))
        last_fire_at = expected_next_fire_at if job is not None else schedule.last_fire_at
        self._schedules[schedule_id] = replace(
            schedule, next_fire_at=next_fire_at, last_fire_at=last_fire_at
        )
        return True

    def _push_due(self, record: JobRecord) -> None:
        token = next(self._sequence)
        self._tokens[record.id] = token
        entry = (record.next_try_at.timestamp(), record.attempts, token, record.id)
        heapq.heappush(self._due, entry)

    def _owned(self, worker_id: str, job_id: str) -> JobRecord | None:
        record = self._jobs.get(job_id)
        if record is None or record.state is not JobState.PROCESSING:
            return None
        return record if record.lease_owner == worker_id else None

    def _requeue_expired_leases(self, now_ts: float) -> None:
        leases = self._leases
        while leases and leases[0][0] <= now_ts:
            _, token, job_id = heapq.heappop(leases)
            if self._tokens.get(job_id) == token:
                self._push_due(self._jobs[job_id])

    def _seconds_until_due(self, now_ts: float) -> float:
        """Seconds until the earliest pending job or lease falls due (inf if none)."""
        due, leases, tokens = self._due, self._leases, self._tokens
        while due and tokens.get(due[0][3]) != due[0][2]:
            heapq.heappop(due)
        while leases and tokens.get(leases[0][2]) != leases[0][1]:
            heapq.heappop(leases)
        earliest = min(due[0][0] if due else math.inf, leases[0][0] if leases else math.inf)
        return earliest - now_ts

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
