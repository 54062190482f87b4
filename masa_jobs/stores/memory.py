"""The in-memory store: the embedded default for one process, tests and demos.

Jobs live in a dict. The claim order is kept per queue, by priority
(``DueQueues``: heaps whose stale entries are skipped lazily; their versions
are bookkeeping of that module, the *lease token* of a claim is the fencing
value of the protocol), and unique keys in a map of their holders
(``UniqueKeys``), checked and taken with no await in between. Operator reads
use ordered views of the jobs (``JobIndex``), kept up to date on read so that
claims and outcomes only mark the jobs they change. Nothing survives the
process, so use a durable store wherever a lost job matters.

Time comes from the store's clock (``utcnow`` unless a test injects another):
claims, leases and ``wait_for_work`` compare with it, never with a caller's.
"""

from __future__ import annotations

import builtins
import logging
import math
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timedelta

import anyio

from ..queries import JobQuery, Page, page_of
from ..records import (
    FINISHED_STATES,
    MAX_HISTORY_EVENTS,
    PENDING_STATES,
    JobEvent,
    JobOutcome,
    JobRecord,
    JobState,
    ScheduleRecord,
    WorkerInfo,
    utcnow,
)
from ._cancel_listeners import CancelListeners
from ._errors import duplicate_job, refuse_repeated_ids
from ._memory_due import DueQueues
from ._memory_index import JobIndex
from ._memory_unique import UniqueKeys
from .base import STALE_WORKER_SECONDS, new_lease_token

__all__ = ["MemoryJobStore"]

_STORE = "the memory store"

logger = logging.getLogger("masa_jobs.store")


class MemoryJobStore:
    """A ``JobStore`` kept in this process's memory.

    ``clock`` is the store's time: what due times and leases are compared
    with. Tests inject a fake one to move time without waiting.
    """

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._jobs: dict[str, JobRecord] = {}
        # Pending jobs and leases, per queue, in claim order; the paused queues.
        self._due = DueQueues(self._jobs)
        self._unique = UniqueKeys()
        self._cancel_listeners = CancelListeners()
        self._wakeup: anyio.Event | None = None
        self._workers: dict[str, WorkerInfo] = {}
        self._schedules: dict[str, ScheduleRecord] = {}
        # Every write that changes a job's state, due time or existence tells it.
        self._index = JobIndex()

    def __repr__(self) -> str:
        return f"MemoryJobStore(jobs={len(self._jobs)})"

    async def open(self) -> None:
        """Nothing to connect to."""

    async def aclose(self) -> None:
        """Nothing to release; the jobs stay for a later ``open()``."""

    async def add(self, records: Sequence[JobRecord]) -> builtins.list[str]:
        self._check_new(records)
        # No await from here on: a key checked free is taken before another add runs.
        keyed = False
        for record in records:
            if record.unique_key is not None:
                keyed = True
                break
        if keyed:
            answer, records = self._without_held_keys(records)
        else:
            answer = [record.id for record in records]
        now_ts: float | None = None
        jobs, push, touch = self._jobs, self._due.push_pending, self._index.touch
        for record in records:
            jobs[record.id] = record
            if record.next_try_at <= record.created_at:
                # Due when created (the enqueuer's "now"): ready whatever the
                # clock says, so the hot path reads no clock.
                push(record, math.inf)
            else:
                if now_ts is None:
                    now_ts = self._clock().timestamp()
                push(record, now_ts)
            touch(record)
        if keyed:
            for record in records:
                self._unique.take(record)
        if records:
            self._wake()
        return answer

    def _without_held_keys(
        self, records: Sequence[JobRecord]
    ) -> tuple[builtins.list[str], builtins.list[JobRecord]]:
        """The answer of ``add`` and the records to store: a record whose key a
        stored job or an earlier record of the batch holds stands for that job."""
        now = self._clock()
        taken: dict[str, str] = {}
        answer: list[str] = []
        kept: list[JobRecord] = []
        for record in records:
            key = record.unique_key
            holder = None
            if key is not None:
                holder = taken.get(key) or self._unique.holder(key, now, self._jobs)
            if holder is not None:
                answer.append(holder)
                continue
            if key is not None:
                taken[key] = record.id
            answer.append(record.id)
            kept.append(record)
        return answer, kept

    def _check_new(self, records: Sequence[JobRecord], *, tick: bool = False) -> None:
        """Refuse the batch (before storing any of it) if an id is taken or named twice."""
        refuse_repeated_ids(_STORE, records, tick=tick)
        for record in records:
            if record.id in self._jobs:
                raise duplicate_job(_STORE, record.id, tick=tick)

    async def now(self) -> datetime:
        return self._clock()

    async def claim(
        self,
        worker_id: str,
        limit: int,
        lease: timedelta,
        *,
        exclude: Collection[str] = (),
        queues: Collection[str] | None = None,
    ) -> list[JobRecord]:
        now = self._clock()
        taken = self._due.take(queues, now.timestamp(), limit, frozenset(exclude))
        if not taken:
            return []
        token = new_lease_token()
        lease_expires_at = now + lease
        return [self._take(job_id, worker_id, now, lease_expires_at, token) for job_id in taken]

    def _take(
        self, job_id: str, worker_id: str, now: datetime, lease_expires_at: datetime, token: str
    ) -> JobRecord:
        """Hold one due job under a new lease, and track its expiry."""
        record = self._jobs[job_id]
        taken = replace(
            record,
            state=JobState.PROCESSING,
            attempts=record.attempts + 1,
            last_try_at=now,
            finished_at=None,
            lease_owner=worker_id,
            lease_expires_at=lease_expires_at,
            lease_token=token,
        )
        self._jobs[job_id] = taken
        self._due.push_lease(taken, lease_expires_at.timestamp())
        self._unique.after_claim(taken)
        self._index.touch(taken)
        return taken

    async def extend_leases(
        self, worker_id: str, leases: Mapping[str, str], lease: timedelta
    ) -> set[str]:
        lease_expires_at = self._clock() + lease
        renewed: set[str] = set()
        for job_id in sorted(leases):
            record = self._held(job_id, leases[job_id])
            if record is None:
                continue
            renewed_record = replace(record, lease_expires_at=lease_expires_at)
            self._jobs[job_id] = renewed_record
            self._due.push_lease(renewed_record, lease_expires_at.timestamp())
            renewed.add(job_id)
        return renewed

    async def finish(self, worker_id: str, outcomes: Sequence[JobOutcome]) -> set[str]:
        applied: set[str] = set()
        requeued = False
        for outcome in sorted(outcomes, key=lambda o: o.job_id):
            record = self._held(outcome.job_id, outcome.lease_token)
            if record is None:
                continue
            event = JobEvent(
                at=self._clock(),
                state=outcome.state,
                attempt=outcome.attempts,
                error=outcome.last_error,
                worker=worker_id,
                started_at=record.last_try_at,
            )
            updated = replace(
                record,
                history=(*record.history, event)[-MAX_HISTORY_EVENTS:],
                state=outcome.state,
                attempts=outcome.attempts,
                next_try_at=outcome.next_try_at,
                last_error=outcome.last_error,
                done_handlers=outcome.done_handlers,
                finished_at=outcome.finished_at,
                lease_owner=None,
                lease_expires_at=None,
                lease_token=None,
            )
            self._jobs[outcome.job_id] = updated
            self._index.touch(updated)
            if updated.state in PENDING_STATES:
                self._due.push_pending(updated, event.at.timestamp())
                requeued = True
            else:
                self._due.forget(outcome.job_id)
                self._unique.after_move(updated, updated.state)
            applied.add(outcome.job_id)
        if requeued:
            self._wake()
        return applied

    async def get(self, job_id: str) -> JobRecord | None:
        return self._jobs.get(job_id)

    async def list_jobs(self, query: JobQuery, now: datetime) -> Page[JobRecord]:
        index = self._synced_index()
        return page_of(index.page(query, now, self._jobs), query.limit)

    async def count_by_state(self, now: datetime) -> dict[JobState, int]:
        return self._synced_index().counts(now)

    async def oldest_due_at(self) -> datetime | None:
        first = self._synced_index().first_due()
        return None if first is None else self._jobs[first].next_try_at

    async def finished_per_minute(self, since: datetime) -> builtins.list[tuple[datetime, int]]:
        return self._synced_index().finished_per_minute(since)

    def _synced_index(self) -> JobIndex:
        self._index.sync(self._jobs)
        return self._index

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
        event = JobEvent(at=now, state=state, attempt=record.attempts)
        released = replace(
            record,
            state=state,
            lease_owner=None,
            lease_expires_at=None,
            lease_token=None,
            history=(*record.history, event)[-MAX_HISTORY_EVENTS:],
        )
        if state in PENDING_STATES:
            updated = replace(released, next_try_at=now, finished_at=None)
            self._jobs[job_id] = updated
            self._due.push_pending(updated, self._clock().timestamp())
            self._wake()
        else:
            finished_at = now if state in FINISHED_STATES else None
            updated = replace(released, finished_at=finished_at)
            self._jobs[job_id] = updated
            self._due.forget(job_id)
            self._unique.after_move(updated, state)
        self._index.touch(updated)
        if record.state is JobState.PROCESSING and state is JobState.CANCELLED:
            self._cancel_listeners.tell(job_id)
        return updated

    def add_cancel_listener(self, listener: Callable[[str], None]) -> None:
        self._cancel_listeners.add(listener)

    async def delete(self, job_id: str) -> bool:
        self._due.forget(job_id)
        self._index.forget(job_id)
        record = self._jobs.pop(job_id, None)
        if record is None:
            return False
        self._unique.release(record)
        return True

    async def purge(
        self,
        states: Collection[JobState],
        finished_before: datetime,
        *,
        limit: int | None = None,
    ) -> int:
        if not self._index.may_have_finished_before(finished_before):
            # The maintenance pass of an idle store: no need to update the views.
            return 0
        wanted = [state.value for state in frozenset(states) & FINISHED_STATES]
        # The oldest first, as a caller pausing between chunks would expect.
        chunk = None if limit is None else max(limit, 0)
        doomed = self._synced_index().take_finished_before(wanted, finished_before, chunk)
        for job_id in doomed:
            self._unique.release(self._jobs.pop(job_id))
            self._due.forget(job_id)
        return len(doomed)

    async def wait_for_work(self, timeout: float, *, queues: Collection[str] | None = None) -> None:
        deadline = anyio.current_time() + timeout
        while True:
            until_due = self._due.seconds_until_due(queues, self._clock().timestamp())
            wait = min(deadline - anyio.current_time(), until_due)
            if wait <= 0:
                return
            if self._wakeup is None or self._wakeup.is_set():
                self._wakeup = anyio.Event()
            with anyio.move_on_after(wait) as timer:
                await self._wakeup.wait()
            if timer.cancelled_caught:
                # The timeout, or the moment the earliest job falls due.
                return
            # Woken by a change (an add, a resume ...): wait on unless it made
            # a job of these queues due, so other queues' work wakes nobody here.

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        if paused:
            self._due.paused.add(queue)
        elif queue in self._due.paused:
            self._due.paused.discard(queue)
            self._wake()

    async def paused_queues(self) -> builtins.set[str]:
        return set(self._due.paused)

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
        stored = self._schedules.get(schedule.id)
        if stored is None:
            self._schedules[schedule.id] = schedule
            return
        # The stored next tick stays unless the timing changed: a concurrent
        # fire may have moved it already, and that tick must not fire twice.
        retimed = (schedule.cron_expression, schedule.timezone) != (
            stored.cron_expression,
            stored.timezone,
        )
        self._schedules[schedule.id] = replace(
            stored,
            job_class=schedule.job_class,
            cron_expression=schedule.cron_expression,
            timezone=schedule.timezone,
            updated_at=schedule.updated_at,
            next_fire_at=schedule.next_fire_at if retimed else stored.next_fire_at,
            payload=schedule.payload,
        )

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        return self._schedules.get(schedule_id)

    async def list_schedules(self) -> builtins.list[ScheduleRecord]:
        return sorted(self._schedules.values(), key=lambda s: s.id)

    async def delete_schedule(self, schedule_id: str) -> bool:
        return self._schedules.pop(schedule_id, None) is not None

    async def set_schedule_paused(self, schedule_id: str, paused: bool) -> bool:
        schedule = self._schedules.get(schedule_id)
        if schedule is None:
            return False
        self._schedules[schedule_id] = replace(schedule, paused=paused)
        return True

    async def fire_schedule(
        self,
        schedule_id: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        job: JobRecord | None,
    ) -> bool:
        schedule = self._schedules.get(schedule_id)
        if schedule is None or schedule.paused:
            return False
        if schedule.next_fire_at != expected_next_fire_at:
            return False
        if job is not None:
            self._check_new((job,), tick=True)
            await self.add((job,))
        last_fire_at = expected_next_fire_at if job is not None else schedule.last_fire_at
        self._schedules[schedule_id] = replace(
            schedule, next_fire_at=next_fire_at, last_fire_at=last_fire_at
        )
        return True

    def _held(self, job_id: str, token: str | None) -> JobRecord | None:
        """The job if it is processing under ``token``: the token alone decides."""
        record = self._jobs.get(job_id)
        if record is None or record.state is not JobState.PROCESSING:
            return None
        if token is None or record.lease_token != token:
            return None
        return record

    def _forget_jobs(self) -> None:
        """Forget every job and key; workers, schedules and paused queues stay
        (for test doubles that start over between tests)."""
        self._jobs.clear()
        self._due.clear()
        self._unique = UniqueKeys()
        self._index = JobIndex()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()
