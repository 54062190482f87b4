"""The job manager: enqueue jobs and look after them.

``JobManager`` is the protocol (MASA's ``IBackgroundJobManager``) that the
container's ``job_manager`` provides; ``DefaultJobManager`` implements it over
any ``JobStore``; ``BackgroundJobManager`` is the static facade that resolves
the root container's ``job_manager`` on every call.
"""

from __future__ import annotations

import builtins
import json
import logging
import math
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from contextlib import aclosing
from datetime import datetime, timedelta
from functools import partial
from typing import Any, Protocol, runtime_checkable

import anyio
from pydantic import BaseModel

from ._job_control import NO_CONTROL, JobControl, asked_control, check_queue, placed
from ._observe import Observers, observers_for
from ._payload import stored_args, validate_stored_args
from ._timeouts import timeout_headers
from .app import MasaApp  # here, not per facade call: an import statement costs ~1 µs
from .cron import CronSchedule
from .exceptions import (
    InvalidDelayError,
    InvalidJobArgsError,
    InvalidJobStateError,
    InvalidScheduleError,
    JobNotFoundError,
    PayloadTooLargeError,
    ScheduleNotFoundError,
    TransactionError,
    UnknownJobError,
)
from .jobs import BackgroundScheduleJob, get_job_control, get_job_name, timeout_seconds
from .options import BackgroundJobOptions
from .queries import MAX_PAGE_SIZE, JobQuery, Page, pages
from .records import (
    FINISHED_STATES,
    PENDING_STATES,
    JobId,
    JobInfo,
    JobRecord,
    JobState,
    ScheduleInfo,
    ScheduleRecord,
    UniqueScope,
    WorkerInfo,
    new_job_id,
    utcnow,
)
from .registry import JobRegistry
from .schedules import (
    check_schedule_id,
    job_name_of_schedule,
    job_schedule,
    schedule_from_job,
    tick_job,
    tick_placement,
)
from .stores.base import Store, TransactionalStore

logger = logging.getLogger(__name__)

__all__ = ["BackgroundJobManager", "DefaultJobManager", "Delay", "JobManager", "Timeout"]

Delay = timedelta | float | int | None
Timeout = timedelta | float | int | None
# UTF-8 spends at most four bytes on a character: shorter strings need no encoding to check.
_MAX_UTF8_BYTES_PER_CHAR = 4
# wait() polls: no store signals the end of a job. The first look comes soon
# (short jobs end in milliseconds), later ones back off so that a long wait
# costs at most five reads a second.
_FIRST_WAIT_POLL_SECONDS = 0.005
_MAX_WAIT_POLL_SECONDS = 0.2


# A store's add: its own, or in the application's transaction (add_in).
_Add = Callable[[Sequence[JobRecord]], Awaitable[builtins.list[str]]]
# A job can be cancelled until it finishes; a running one is stopped by its worker.
_CANCELLABLE = PENDING_STATES | {JobState.PROCESSING}


@runtime_checkable
class JobManager(Protocol):
    """Enqueue jobs and manage them (MASA's ``IBackgroundJobManager``)."""

    async def enqueue(
        self,
        args: BaseModel,
        delay: Delay = None,
        *,
        timeout: Delay = None,
        queue: str | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        unique_scope: UniqueScope | str | None = None,
        unique_for: Delay = None,
        connection: object = None,
    ) -> JobId:
        """Store a job to run after ``delay`` (now when None); returns its id.

        ``timeout`` (seconds or a timedelta) cancels a run that lasts longer.
        ``queue`` and ``priority`` (0 first to 9 last) say where it waits.
        ``unique_key`` makes it unique among jobs of its name while the key
        is held (``unique_scope`` ``"active"``, the default, or
        ``"pending"``; or ``unique_for`` seconds after enqueue): a second
        enqueue returns the holder's id, with ``JobId.duplicate`` True. Each
        overrides ``@job_options(...)`` of the args class, then the options.
        ``connection`` (the application's, in an open transaction on the
        store's database: PostgreSQL or SQLite) stores the job in that
        transaction: it exists, and workers see it, only once it commits."""

    async def enqueue_many(
        self,
        jobs: Iterable[tuple[BaseModel, Delay]],
        *,
        timeout: Delay = None,
        queue: str | None = None,
        priority: int | None = None,
        connection: object = None,
    ) -> list[JobId]:
        """Store several jobs at once, all or none; returns their ids (a job
        whose class declares a unique key may answer an existing job's id).
        ``timeout``, ``queue`` and ``priority`` apply to every job;
        ``connection`` stores them in the application's transaction."""

    async def add_or_update_schedule(
        self, job: BackgroundScheduleJob | type[BackgroundScheduleJob]
    ) -> None:
        """Add a recurring job, or update the one with the same id (class or instance)."""

    async def add_or_update_job_schedule(
        self, schedule_id: str, args: BaseModel, cron: str, timezone: str = "UTC"
    ) -> None:
        """Enqueue the job of ``args`` on every tick of ``cron`` in ``timezone``.

        Adds the schedule ``schedule_id`` at run time, or updates the one with
        that id (its args, cron or time zone); the job's own handlers run
        each tick's job, with retries, like any enqueued job.
        """

    async def remove_schedule(self, schedule_id: str) -> None:
        """Remove a recurring job."""

    async def list_schedules(self) -> builtins.list[ScheduleInfo]:
        """Every recurring job, by id."""

    async def trigger_schedule(self, schedule_id: str) -> str:
        """Run a recurring job once now, besides its schedule; returns the job id.

        Works on a paused schedule too."""

    async def pause_schedule(self, schedule_id: str) -> None:
        """Stop firing a recurring job's ticks until ``resume_schedule``.

        The schedule stays stored (and can be triggered); redeclaring or
        updating it does not resume it.
        """

    async def resume_schedule(self, schedule_id: str) -> None:
        """Fire a paused recurring job's ticks again.

        Ticks missed while paused follow the missed-ticks rule: none is lost
        within ``misfire_grace``, older ones give one catch-up run or none
        (``missed_ticks``).
        """

    async def get(self, job_id: str) -> JobInfo | None:
        """One job, or None."""

    async def wait(self, job_id: str, timeout: Timeout = None) -> JobInfo:
        """The job once it is finished (succeeded, dead or cancelled).

        Raises ``JobNotFoundError`` for an unknown id (or a job deleted
        meanwhile), and the built-in ``TimeoutError`` -- the one asyncio and
        anyio raise, so one ``except TimeoutError`` covers both -- when
        ``timeout`` (seconds or a timedelta; None waits as long as it takes)
        passes first; the message names the job and its state. The job is
        left as it is. No store signals the end of a job, so this polls
        ``get``: at once, after 5 ms, then at intervals doubling up to 200 ms.
        """

    async def list(
        self, state: JobState | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[JobInfo]:
        """Jobs, newest first, optionally in one state."""

    async def list_jobs(self, query: JobQuery) -> Page[JobInfo]:
        """One page of jobs matching ``query`` (state, name, creation time),
        newest first unless the query says otherwise; pass the page's
        ``next_cursor`` in the next query for the page after it."""

    async def count(self) -> dict[JobState, int]:
        """How many jobs are in each state (exact up to 10,000 per state; above,
        PostgreSQL gives its planner's estimate)."""

    async def retry_all(self, name: str | None = None) -> int:
        """Run every dead job (of one job name, when given) again, now; returns
        how many were retried."""

    async def delete_all(self, state: JobState, name: str | None = None) -> int:
        """Remove every job in a finished state (of one job name, when given);
        returns how many were removed."""

    async def retry(self, job_id: str) -> JobInfo:
        """Run a dead job again, now."""

    async def cancel(self, job_id: str) -> JobInfo:
        """Cancel a job that has not finished: a pending one never runs; a
        running one is stopped by its worker at the worker's next lease
        renewal (within a third of ``lease_timeout``) and is not retried."""

    async def delete(self, job_id: str) -> None:
        """Remove a job, whatever its state."""

    async def purge(self, older_than: timedelta | None = None) -> int:
        """Remove finished jobs older than ``older_than`` (the retention by default)."""

    async def workers(self) -> builtins.list[WorkerInfo]:
        """The workers whose heartbeat is recent (within one lease timeout)."""

    async def pause_queue(self, queue: str) -> None:
        """Stop every worker from starting jobs of ``queue`` (stored, so a restart
        keeps it); running jobs finish, and enqueues are still accepted."""

    async def resume_queue(self, queue: str) -> None:
        """Let workers start jobs of ``queue`` again."""

    async def paused_queues(self) -> set[str]:
        """The queues paused now."""


class DefaultJobManager:
    """The ``JobManager`` over one store, registry and set of options."""

    def __init__(self, store: Store, registry: JobRegistry, options: BackgroundJobOptions) -> None:
        self._store = store
        self._registry = registry
        self._options = options
        # Metrics and traces of enqueues, or None when nothing watches (see _observe).
        self._observers = observers_for(options)

    @property
    def store(self) -> Store:
        return self._store

    @property
    def options(self) -> BackgroundJobOptions:
        return self._options

    async def enqueue(
        self,
        args: BaseModel,
        delay: Delay = None,
        *,
        timeout: Delay = None,
        queue: str | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        unique_scope: UniqueScope | str | None = None,
        unique_for: Delay = None,
        connection: object = None,
    ) -> JobId:
        asked = NO_CONTROL
        if not (
            queue is None
            and priority is None
            and unique_key is None
            and unique_scope is None
            and unique_for is None
        ):
            asked = asked_control(queue, priority, unique_key, unique_scope, unique_for, "enqueue")
        record = self._new_record(args, delay, self._now(), timeout, asked)
        return _job_ids([record], await self._store_new([record], connection))[0]

    async def enqueue_many(
        self,
        jobs: Iterable[tuple[BaseModel, Delay]],
        *,
        timeout: Delay = None,
        queue: str | None = None,
        priority: int | None = None,
        connection: object = None,
    ) -> builtins.list[JobId]:
        now = self._now()
        asked = asked_control(queue, priority, None, None, None, "enqueue_many")
        # Validate everything before storing anything: one bad job refuses the batch.
        records = [self._new_record(args, delay, now, timeout, asked) for args, delay in jobs]
        if not records:
            return []
        return _job_ids(records, await self._store_new(records, connection))

    def _now(self) -> datetime:
        """The time new jobs are stamped with (a test double's fake clock overrides it)."""
        return utcnow()

    async def _store_new(
        self, records: builtins.list[JobRecord], connection: object = None
    ) -> builtins.list[str]:
        """Store new jobs, in the application's transaction on ``connection``
        when given; returns the id standing for each (see ``JobStore.add``)."""
        add = self._store.add if connection is None else self._adding_in(connection)
        if self._observers is None:
            return await add(records)
        return await self._add_observed(records, self._observers, add)

    def _adding_in(self, connection: object) -> _Add:
        store = self._store
        if not isinstance(store, TransactionalStore):
            raise TransactionError(
                f"enqueue got a connection, but {type(store).__name__} keeps its jobs apart "
                "from the application's database and cannot join its transaction: only the "
                "PostgreSQL and SQLite stores can (store.backend postgres or sqlite). On "
                "this store, enqueue after the commit instead (without connection=)"
            )
        return partial(store.add_in, connection)

    async def _add_observed(
        self,
        records: builtins.list[JobRecord],
        observers: Observers,
        add: _Add,
    ) -> builtins.list[str]:
        """Store ``records``, in an enqueue span (whose context their headers
        carry) while a tracer provider is configured, then report the ones stored."""
        tracer = observers.tracer()
        if tracer is None:
            ids = await add(records)
            observers.jobs_enqueued(_stored_only(records, ids))
            return ids
        from .tracing import enqueue_span

        with enqueue_span(tracer, records) as stored:
            ids = await add(stored)
        observers.jobs_enqueued(_stored_only(stored, ids))
        return ids

    async def add_or_update_schedule(
        self, job: BackgroundScheduleJob | type[BackgroundScheduleJob]
    ) -> None:
        now = utcnow()
        # Validate first (id, cron, time zone, class), so bad input stores nothing.
        declared = schedule_from_job(job, now, None)
        if self._registry.schedule_class(declared.job_class) is None:
            raise InvalidScheduleError(
                f"recurring job class {declared.job_class} is not registered: import its "
                "module before MasaApp.build(...), or list its package in options.job_packages"
            )
        # Next ticks are on the store's clock; the store's upsert keeps a next
        # tick that a concurrent scheduler moved, unless the cron changed.
        now = await self._store.now()
        existing = await self._store.get_schedule(declared.id)
        schedule = schedule_from_job(job, now, existing)
        if schedule is not existing:
            await self._store.upsert_schedule(schedule)

    async def add_or_update_job_schedule(
        self, schedule_id: str, args: BaseModel, cron: str, timezone: str = "UTC"
    ) -> None:
        # Validate like enqueue (and the id, cron and time zone), so bad
        # input stores nothing.
        job = self._new_record(args, None, utcnow())
        timing = CronSchedule(cron, timezone)
        check_schedule_id(schedule_id, f"the schedule of job {job.name!r}")
        # Next ticks are on the store's clock; the store's upsert keeps a next
        # tick that a concurrent scheduler moved, unless the cron changed.
        now = await self._store.now()
        existing = await self._store.get_schedule(schedule_id)
        schedule = job_schedule(schedule_id, job.name, job.payload, timing, now, existing)
        if schedule is not existing:
            await self._store.upsert_schedule(schedule)

    async def remove_schedule(self, schedule_id: str) -> None:
        if not await self._store.delete_schedule(schedule_id):
            raise ScheduleNotFoundError(_no_schedule(schedule_id))

    async def list_schedules(self) -> builtins.list[ScheduleInfo]:
        return [self._schedule_info(s) for s in await self._store.list_schedules()]

    def _schedule_info(self, schedule: ScheduleRecord) -> ScheduleInfo:
        job_name = job_name_of_schedule(schedule)
        if job_name is None:
            known = self._registry.schedule_class(schedule.job_class) is not None
        else:
            known = self._registry.args_type(job_name) is not None
        return ScheduleInfo(
            id=schedule.id,
            job_class=schedule.job_class,
            cron_expression=schedule.cron_expression,
            timezone=schedule.timezone,
            next_fire_at=schedule.next_fire_at,
            last_fire_at=schedule.last_fire_at,
            known=known,
            args=_schedule_args(schedule.payload),
            paused=schedule.paused,
        )

    async def trigger_schedule(self, schedule_id: str) -> str:
        schedule = await self._store.get_schedule(schedule_id)
        if schedule is None:
            raise ScheduleNotFoundError(_no_schedule(schedule_id))
        now = utcnow()
        job = tick_job(schedule, now, now, tick_placement(schedule, self._registry))
        await self._store.add((job,))
        return job.id

    async def pause_schedule(self, schedule_id: str) -> None:
        if not await self._store.set_schedule_paused(schedule_id, True):
            raise ScheduleNotFoundError(_no_schedule(schedule_id))

    async def resume_schedule(self, schedule_id: str) -> None:
        if not await self._store.set_schedule_paused(schedule_id, False):
            raise ScheduleNotFoundError(_no_schedule(schedule_id))

    async def get(self, job_id: str) -> JobInfo | None:
        record = await self._store.get(job_id)
        return None if record is None else JobInfo.from_record(record)

    async def wait(self, job_id: str, timeout: Timeout = None) -> JobInfo:
        # Polls the store with a back-off: its wake-ups (wait_for_work) say when
        # a job may be due, never when one finished.
        seconds = _timeout_seconds(timeout)
        deadline = None if seconds is None else anyio.current_time() + seconds
        pause = _FIRST_WAIT_POLL_SECONDS
        while True:
            record = await self._store.get(job_id)
            if record is None:
                raise JobNotFoundError(
                    f"no job with id {job_id!r} (never enqueued, or deleted or purged while "
                    "waited for); list jobs to find its id"
                )
            if record.state in FINISHED_STATES:
                return JobInfo.from_record(record)
            left = None if deadline is None else deadline - anyio.current_time()
            if left is not None and left <= 0:
                state = JobInfo.from_record(record).state.value
                raise TimeoutError(
                    f"job {job_id!r} is still {state} after waiting {seconds:g} s: "
                    "wait longer, or check that a worker runs on this store "
                    "(`masa-jobs workers`)"
                )
            await anyio.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, _MAX_WAIT_POLL_SECONDS)

    async def list(
        self, state: JobState | None = None, *, limit: int = 100, offset: int = 0
    ) -> list[JobInfo]:
        if limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        # An offset is walked page by page: list_jobs with a cursor is the way
        # to page far into a long list.
        found: builtins.list[JobInfo] = []
        skip = offset
        if limit == 0:
            return found
        # Closed at once when the walk stops early, not whenever it is collected.
        async with aclosing(pages(self.list_jobs, JobQuery.of(state, limit=MAX_PAGE_SIZE))) as walk:
            async for page in walk:
                items = page.items[skip:]
                skip = max(skip - len(page.items), 0)
                found.extend(items[: limit - len(found)])
                if len(found) == limit:
                    break
        return found

    async def list_jobs(self, query: JobQuery) -> Page[JobInfo]:
        now = await self._store.now()
        page = await self._store.list_jobs(query, now)
        return Page(tuple(JobInfo.from_record(r, now) for r in page.items), page.next_cursor)

    async def count(self) -> dict[JobState, int]:
        return await self._store.count_by_state(await self._store.now())

    async def retry_all(self, name: str | None = None) -> int:
        return await self._move_all(JobState.DEAD, name, self._retry_one)

    async def delete_all(self, state: JobState, name: str | None = None) -> int:
        if not state.is_finished:
            raise InvalidJobStateError(
                f"delete_all removes finished jobs (succeeded, dead, cancelled), not "
                f"{state.value!r} ones; cancel pending jobs first"
            )
        return await self._move_all(state, name, self._store.delete)

    async def _retry_one(self, job_id: str) -> bool:
        moved = await self._store.transition(
            job_id, (JobState.DEAD,), JobState.ENQUEUED, await self._store.now()
        )
        return moved is not None

    async def _move_all(
        self, state: JobState, name: str | None, move: Callable[[str], Awaitable[bool]]
    ) -> int:
        """Apply ``move`` to every job in ``state`` (of ``name``), a page at a time;
        the cursor keeps its place though the moved jobs leave the list."""
        query = JobQuery.of(state, name=name, limit=MAX_PAGE_SIZE, newest_first=False)
        moved = 0
        async for page in pages(self._store_page, query):
            for record in page.items:
                moved += bool(await move(record.id))
        return moved

    async def _store_page(self, query: JobQuery) -> Page[JobRecord]:
        return await self._store.list_jobs(query, await self._store.now())

    async def retry(self, job_id: str) -> JobInfo:
        return await self._transition(job_id, (JobState.DEAD,), JobState.ENQUEUED, "retried")

    async def cancel(self, job_id: str) -> JobInfo:
        return await self._transition(job_id, _CANCELLABLE, JobState.CANCELLED, "cancelled")

    async def delete(self, job_id: str) -> None:
        if not await self._store.delete(job_id):
            raise JobNotFoundError(f"no job with id {job_id!r}; list jobs to find its id")

    async def purge(self, older_than: timedelta | None = None) -> int:
        age = older_than if older_than is not None else timedelta(seconds=self._options.retention)
        return await self._store.purge(FINISHED_STATES, utcnow() - age)

    async def workers(self) -> builtins.list[WorkerInfo]:
        since = utcnow() - timedelta(seconds=self._options.lease_timeout)
        return await self._store.list_workers(since)

    async def pause_queue(self, queue: str) -> None:
        await self._store.set_queue_paused(check_queue(queue, "pause_queue"), True)

    async def resume_queue(self, queue: str) -> None:
        await self._store.set_queue_paused(check_queue(queue, "resume_queue"), False)

    async def paused_queues(self) -> set[str]:
        return await self._store.paused_queues()

    async def _transition(
        self, job_id: str, expected: Collection[JobState], state: JobState, verb: str
    ) -> JobInfo:
        record = await self._store.transition(job_id, expected, state, await self._store.now())
        if record is not None:
            return JobInfo.from_record(record)
        current = await self._store.get(job_id)
        if current is None:
            raise JobNotFoundError(f"no job with id {job_id!r}; list jobs to find its id")
        allowed = " or ".join(sorted({s.value for s in expected}))
        raise InvalidJobStateError(
            f"job {job_id!r} is {JobInfo.from_record(current).state.value}; "
            f"only a job that is {allowed} can be {verb}"
        )

    def _new_record(
        self,
        args: BaseModel,
        delay: Delay,
        now: datetime,
        timeout: Delay = None,
        asked: JobControl = NO_CONTROL,
    ) -> JobRecord:
        name = self._job_name_of(args)
        headers = None
        if timeout is not None:
            headers = timeout_headers(timeout_seconds(timeout, f"enqueue of {name!r}"))
        payload = stored_args(args, name)
        self._check_payload_size(name, payload)
        # After the size check: a payload over the limit is not worth parsing.
        validate_stored_args(args, name, payload)
        seconds = _delay_seconds(delay)
        try:
            next_try_at = now + timedelta(seconds=seconds) if seconds else now
        except OverflowError:
            raise InvalidDelayError(
                f"delay {delay!r} ends past the last date a timestamp can hold: "
                "pass a shorter delay"
            ) from None
        record = JobRecord(
            id=new_job_id(),
            name=name,
            payload=payload,
            state=JobState.SCHEDULED if seconds > 0 else JobState.ENQUEUED,
            created_at=now,
            next_try_at=next_try_at,
            headers=headers,
        )
        declared = get_job_control(type(args))
        if declared is NO_CONTROL and asked is NO_CONTROL:
            return record  # queue, priority and no key: the defaults
        return placed(record, args, declared, asked)

    def _job_name_of(self, args: object) -> str:
        if not isinstance(args, BaseModel):
            if isinstance(args, type) and issubclass(args, BaseModel):
                raise InvalidJobArgsError(
                    f"enqueue got the class {args.__qualname__}, not an instance: "
                    f"pass {args.__qualname__}(...)"
                )
            raise InvalidJobArgsError(
                f"job args must be an instance of a pydantic model, got "
                f"{type(args).__qualname__}: define `class MyArgs(BaseModel)` and "
                "enqueue MyArgs(...)"
            )
        name = self._registry.name_of(type(args))
        if name is None:
            args_type = type(args)
            raise UnknownJobError(
                f"no handler is registered for {args_type.__module__}.{args_type.__qualname__} "
                f"(job name {get_job_name(args_type)!r}): define a "
                f"BackgroundJob[{args_type.__qualname__}] subclass at module level and import "
                "its module before MasaApp.build(...), or add its package to "
                "options.job_packages"
            )
        return name

    def _check_payload_size(self, name: str, payload: str) -> None:
        limit = self._options.max_payload_bytes
        if len(payload) * _MAX_UTF8_BYTES_PER_CHAR <= limit:
            return
        size = len(payload.encode())
        if size > limit:
            raise PayloadTooLargeError(
                f"the args of job {name!r} are {size} bytes as JSON, over the "
                f"{limit}-byte limit: store large data elsewhere and pass a reference, "
                "or raise options.max_payload_bytes"
            )


def _schedule_args(payload: str | None) -> dict[str, Any] | None:
    if payload is None:
        return None
    try:
        args = json.loads(payload)
    except ValueError:
        # A damaged record is still listed: the id is what removes it.
        return None
    return args if isinstance(args, dict) else None


def _job_ids(records: builtins.list[JobRecord], ids: builtins.list[str]) -> builtins.list[JobId]:
    """The ids ``enqueue`` answers: a record whose unique key another job held
    answers that job's id, marked as a duplicate (and logged, for whoever
    wonders why no new job appeared)."""
    if len(records) == 1 and ids[0] == records[0].id:
        return [JobId(ids[0])]  # the common case: one new job
    answers = []
    for record, job_id in zip(records, ids, strict=True):
        duplicate = job_id != record.id
        if duplicate:
            logger.info(
                "enqueue of %s: unique key %r is held by job %s; returned its id, stored nothing",
                record.name,
                record.unique_key,
                job_id,
            )
        answers.append(JobId.of_holder(job_id) if duplicate else JobId(job_id))
    return answers


def _stored_only(records: Sequence[JobRecord], ids: builtins.list[str]) -> builtins.list[JobRecord]:
    return [record for record, job_id in zip(records, ids, strict=True) if job_id == record.id]


def _no_schedule(schedule_id: str) -> str:
    return f"no recurring job with id {schedule_id!r}; list_schedules() shows the ids"


def _timeout_seconds(timeout: Timeout) -> float | None:
    if timeout is None:
        return None
    if isinstance(timeout, timedelta):
        seconds = timeout.total_seconds()
    elif isinstance(timeout, int | float) and not isinstance(timeout, bool):
        seconds = float(timeout)
    else:
        raise TypeError(
            f"timeout must be a timedelta or a number of seconds, got {type(timeout).__qualname__}"
        )
    if math.isnan(seconds) or seconds < 0:
        raise ValueError(
            f"timeout must be zero or more seconds, got {timeout!r}: pass None to wait "
            "as long as it takes"
        )
    return None if math.isinf(seconds) else seconds


def _delay_seconds(delay: Delay) -> float:
    if delay is None:
        return 0.0
    if isinstance(delay, timedelta):
        seconds = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        seconds = float(delay)
    else:
        raise InvalidDelayError(
            f"delay must be a timedelta or a number of seconds, got {type(delay).__qualname__}"
        )
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidDelayError(
            f"delay must be zero or more seconds, got {delay!r}: pass None to run now"
        )
    return seconds


class BackgroundJobManager:
    """The static facade (MASA's static ``BackgroundJobManager``).

    Each call resolves the ``job_manager`` provider of the container published
    by ``MasaApp.build(...)`` -- the same singleton the worker uses -- and
    raises ``MasaNotBuiltError`` before that. ``enqueue_sync``, ``get_sync``
    and ``wait_sync`` do the same from threads without an event loop
    (``masa_jobs.sync``).
    """

    def __init__(self) -> None:
        raise TypeError("BackgroundJobManager is a static facade; call its methods on the class")

    @staticmethod
    async def enqueue(
        args: BaseModel,
        delay: Delay = None,
        *,
        timeout: Delay = None,
        queue: str | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        unique_scope: UniqueScope | str | None = None,
        unique_for: Delay = None,
        connection: object = None,
    ) -> JobId:
        """``JobManager.enqueue`` on the published container's manager."""
        manager = MasaApp.job_manager()
        if (
            timeout is None
            and queue is None
            and priority is None
            and unique_key is None
            and unique_scope is None
            and unique_for is None
            and connection is None
        ):
            # A manager of the application's own (a provider override) may
            # predate these options: pass only what was asked for.
            return await manager.enqueue(args, delay)
        enqueue = manager.enqueue
        if connection is not None:
            enqueue = partial(manager.enqueue, connection=connection)
        return await enqueue(
            args,
            delay,
            timeout=timeout,
            queue=queue,
            priority=priority,
            unique_key=unique_key,
            unique_scope=unique_scope,
            unique_for=unique_for,
        )

    @staticmethod
    async def add_or_update_schedule(
        job: BackgroundScheduleJob | type[BackgroundScheduleJob],
    ) -> None:
        await MasaApp.job_manager().add_or_update_schedule(job)

    @staticmethod
    async def add_or_update_job_schedule(
        schedule_id: str, args: BaseModel, cron: str, timezone: str = "UTC"
    ) -> None:
        """Enqueue ``args`` on every tick; see ``JobManager.add_or_update_job_schedule``."""
        await MasaApp.job_manager().add_or_update_job_schedule(schedule_id, args, cron, timezone)

    @staticmethod
    async def wait(job_id: str, timeout: Timeout = None) -> JobInfo:
        """The job once it is finished; see ``JobManager.wait``."""
        return await MasaApp.job_manager().wait(job_id, timeout)

    # The sync API, for code without an event loop (Django views, Flask
    # handlers, scripts): the machinery is in masa_jobs.sync.

    @staticmethod
    def enqueue_sync(
        args: BaseModel,
        delay: Delay = None,
        *,
        timeout: Delay = None,
        queue: str | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        unique_scope: UniqueScope | str | None = None,
        unique_for: Delay = None,
    ) -> JobId:
        """``enqueue`` from a thread without a running event loop; returns the job id."""
        from .sync import SyncJobManager

        return SyncJobManager().enqueue(
            args,
            delay,
            timeout=timeout,
            queue=queue,
            priority=priority,
            unique_key=unique_key,
            unique_scope=unique_scope,
            unique_for=unique_for,
        )

    @staticmethod
    def get_sync(job_id: str) -> JobInfo | None:
        """``get`` from a thread without a running event loop."""
        from .sync import SyncJobManager

        return SyncJobManager().get(job_id)

    @staticmethod
    def wait_sync(job_id: str, timeout: Timeout = None) -> JobInfo:
        """``wait`` from a thread without a running event loop: blocks this thread."""
        from .sync import SyncJobManager

        return SyncJobManager().wait(job_id, timeout)
