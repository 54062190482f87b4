"""The test doubles behind masa_jobs.testing: a fake clock, a readable store,
managers that stamp jobs with the fake clock or run them inline."""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio
from pydantic import BaseModel

from ._completion import InlineCompletion
from ._text import clean_error
from .context import running
from .exceptions import NotSupportedError, ScheduleNotFoundError
from .executor import timeout_of
from .jobs import handler_name
from .manager import DefaultJobManager
from .options import BackgroundJobOptions
from .records import FINISHED_STATES, JobInfo, JobRecord, JobState, utcnow
from .registry import JobRegistry
from .schedules import tick_job, tick_placement
from .stores.memory import MemoryJobStore

__all__ = ["WORKER_ID", "ClockedJobManager", "FakeClock", "InlineJobs", "RecordingStore"]

A = TypeVar("A", bound=BaseModel)

# The worker id of the test doubles' claims and inline runs.
WORKER_ID = "masa_jobs.testing"


class FakeClock:
    """A clock that only moves when told to: the manual mode's store time."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is None:
            start = utcnow()
        if start.tzinfo is None:
            raise ValueError(
                f"the fake clock needs a timezone-aware start, got {start!r}: "
                "pass datetime(..., tzinfo=UTC)"
            )
        self._now = start

    def __call__(self) -> datetime:
        return self._now

    def advance(self, by: timedelta) -> datetime:
        """Move the clock forward by ``by``; returns the new time."""
        if by < timedelta():
            raise ValueError(f"time only moves forward: cannot advance by {by}")
        self._now += by
        return self._now

    def move_to(self, when: datetime) -> None:
        """Move the clock to ``when``, if that is later than now."""
        self._now = max(self._now, when)


class RecordingStore(MemoryJobStore):
    """The memory store, readable without awaiting: assertions are plain calls."""

    def records(self) -> list[JobRecord]:
        """Every job, in the order they were enqueued."""
        return list(self._jobs.values())

    def keep(self, record: JobRecord) -> None:
        """Keep a finished job, for ``get`` and ``wait``: it is never claimed."""
        self._jobs[record.id] = record
        self._index.touch(record)

    def clear_jobs(self) -> None:
        """Forget every job (schedules stay)."""
        self._forget_jobs()


class ClockedJobManager(DefaultJobManager):
    """The default manager, stamping new jobs with the fake clock's time.

    The default manager stamps with the wall clock; on a fake clock a job
    delayed by ``d`` must fall due after ``advance(d)``, not a few
    milliseconds later.
    """

    def __init__(
        self,
        store: MemoryJobStore,
        registry: JobRegistry,
        options: BackgroundJobOptions,
        clock: Callable[[], datetime],
    ) -> None:
        super().__init__(store, registry, options)
        self._clock = clock

    def _now(self) -> datetime:
        return self._clock()

    async def _store_new(self, records: list[JobRecord], connection: object = None) -> list[str]:
        # A job enqueued in the application's transaction is kept as if it
        # committed: the doubles hold jobs apart from the application's database.
        return await super()._store_new(records)

    async def trigger_schedule(self, schedule_id: str) -> str:
        schedule = await self.store.get_schedule(schedule_id)
        if schedule is None:
            raise ScheduleNotFoundError(
                f"no recurring job with id {schedule_id!r}; list_schedules() shows the ids"
            )
        now = self._clock()
        job = tick_job(schedule, now, now, tick_placement(schedule, self._registry))
        await self.store.add((job,))
        return job.id

    async def wait(self, job_id: str, timeout: timedelta | float | int | None = None) -> JobInfo:
        # No worker runs in a test: waiting for a job that drain() has not
        # finished would only sleep until the timeout.
        record = await self.store.get(job_id)
        if record is not None and record.state not in FINISHED_STATES:
            raise NotSupportedError(
                f"job {job_id!r} is {JobInfo.from_record(record, self._clock()).state.value}, "
                "and in masa_jobs.testing's manual mode jobs run only when the test calls "
                "drain(): drain before the code that waits, or test it in inline mode"
            )
        return await super().wait(job_id, timeout)


class _InlineJobManager(ClockedJobManager):
    """Runs each job at once, in the caller, instead of storing it."""

    def __init__(
        self,
        store: RecordingStore,
        registry: JobRegistry,
        options: BackgroundJobOptions,
        clock: Callable[[], datetime],
    ) -> None:
        super().__init__(store, registry, options, clock)
        self._recording = store
        self.ran: list[BaseModel] = []

    async def _store_new(self, records: list[JobRecord], connection: object = None) -> list[str]:
        # Called once every record is validated, as the real manager stores
        # all or none; each runs at once instead of being stored.
        for record in records:
            await self._run(record)
        return [record.id for record in records]

    async def _run(self, record: JobRecord) -> None:
        """Every handler of the job, as a worker runs them; then the first error raises."""
        args_type = self._registry.args_type(record.name)
        assert args_type is not None  # _new_record refused unregistered args
        # From the stored JSON, as a worker would: the handler gets what a worker gives it.
        args = args_type.model_validate_json(record.payload)
        self.ran.append(args)
        started = replace(
            record,
            state=JobState.PROCESSING,
            attempts=1,
            last_try_at=record.created_at,
            lease_owner=WORKER_ID,
        )
        errors: list[tuple[str, Exception]] = []
        timeout = timeout_of(record, self._registry, self._options.job_timeout)
        with running(started, InlineCompletion()):
            for handler_type in self._registry.handlers(record.name):
                try:
                    await _run_within(handler_type().execute(args), timeout)
                except Exception as exc:
                    errors.append((handler_name(handler_type), exc))
        finished = _finished(started, errors, self._clock())
        if finished.last_error is not None:
            # Redacted and capped as a worker stores it.
            text = self._options.redact_error(finished.last_error)
            finished = replace(
                finished, last_error=clean_error(text, self._options.max_error_length)
            )
        self._recording.keep(finished)
        _raise_first(record, errors)


async def _run_within(run: Awaitable[None], timeout: float | None) -> None:
    """Await ``run``; past ``timeout`` seconds it is cancelled and raises
    ``TimeoutError``, as the attempt fails on a worker."""
    if timeout is None:
        await run
        return
    with anyio.move_on_after(timeout) as scope:
        await run
    if scope.cancelled_caught:
        raise TimeoutError(
            f"timed out after {timeout:g} s: the run was cancelled, as a worker cancels it"
        )


def _finished(record: JobRecord, errors: list[tuple[str, Exception]], now: datetime) -> JobRecord:
    """The inline job as a worker would leave it: succeeded, or dead (no retries)."""
    last_error = "\n".join(
        f"{name} failed:\n{''.join(traceback.format_exception(exc))}" for name, exc in errors
    )
    return replace(
        record,
        state=JobState.DEAD if errors else JobState.SUCCEEDED,
        last_error=last_error or None,
        finished_at=now,
        lease_owner=None,
    )


def _raise_first(record: JobRecord, errors: list[tuple[str, Exception]]) -> None:
    if not errors:
        return
    first = errors[0][1]
    for name, other in errors[1:]:
        first.add_note(f"handler {name} of job {record.name!r} failed too: {other!r}")
    raise first


class InlineJobs:
    """The inline mode's handle: what ran, and the manager that ran it."""

    def __init__(self, jobs_container: Any) -> None:
        self.clock = FakeClock()
        self.store = RecordingStore(self.clock)
        self.manager = _InlineJobManager(
            self.store, jobs_container.job_registry(), jobs_container.options(), self.clock
        )

    @property
    def ran(self) -> list[BaseModel]:
        """The args of every job run so far, in order (failed ones included)."""
        return list(self.manager.ran)

    def performed(self, args_type: type[A]) -> list[A]:
        """The args of the jobs of ``args_type`` run so far."""
        return [args for args in self.manager.ran if isinstance(args, args_type)]

    def clear(self) -> None:
        """Forget the jobs run so far."""
        self.manager.ran.clear()
        self.store.clear_jobs()
