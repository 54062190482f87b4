"""Running one claimed job: every handler that has not yet succeeded, once.

The executor turns a ``JobRecord`` into a ``JobOutcome``; it never raises for
a job's own failure, so one broken job cannot take the worker down.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from typing import Any

from pydantic import BaseModel, ValidationError

from .jobs import BackgroundJob, BackgroundScheduleJob, handler_name
from .records import JobOutcome, JobRecord, JobState, utcnow
from .registry import JobRegistry
from .retry import RetryPolicy
from .schedules import SCHEDULE_JOB_PREFIX, ScheduleTick

__all__ = ["JobExecutor"]

logger = logging.getLogger("masa_jobs.worker")


class JobExecutor:
    """Runs the handlers of a job and decides its outcome."""

    def __init__(self, registry: JobRegistry, retry_policy: RetryPolicy) -> None:
        self._registry = registry
        self._retry_policy = retry_policy
        # Handler names are computed once per class, not once per job.
        self._names: dict[type[Any], str] = {}

    async def run(self, record: JobRecord, done: list[str] | None = None) -> JobOutcome:
        """The outcome of one execution of ``record``.

        ``done`` (the handlers finished so far, initially the record's) grows
        as handlers succeed, so a caller that interrupts the execution still
        knows which handlers need not run again.
        """
        if done is None:
            done = list(record.done_handlers)
        if record.name.startswith(SCHEDULE_JOB_PREFIX):
            return await self._run_tick(record, done)
        args_type = self._registry.args_type(record.name)
        if args_type is None:
            return _dead(
                record,
                f"no args type is registered for job name {record.name!r}: deploy the code "
                "that defines it (or list its package in options.job_packages), then retry "
                "the job",
            )
        try:
            args = args_type.model_validate_json(record.payload)
        except ValidationError as exc:
            return _dead(
                record,
                f"the stored args of job {record.name!r} no longer validate as "
                f"{args_type.__qualname__}: {exc}",
            )
        failures: list[str] = []
        for handler_type in self._registry.handlers(record.name):
            name = self._name_of(handler_type)
            if name in done:
                continue
            error = await self._attempt(name, record, partial(_run_handler, handler_type, args))
            if error is None:
                done.append(name)
            else:
                failures.append(error)
        return self._decide(record, failures, done)

    async def _run_tick(self, record: JobRecord, done: list[str]) -> JobOutcome:
        """Run one tick of a recurring job: build its class and execute it."""
        try:
            tick = ScheduleTick.model_validate_json(record.payload)
        except ValidationError as exc:
            return _dead(record, f"the stored tick of {record.name!r} is not valid: {exc}")
        job_class = self._registry.schedule_class(tick.job_class)
        if job_class is None:
            return _dead(
                record,
                f"no recurring job class {tick.job_class} is known to this worker: deploy "
                "the code that defines it, then retry the job",
            )
        failures: list[str] = []
        if tick.job_class not in done:
            error = await self._attempt(
                tick.job_class, record, partial(_run_schedule_job, job_class, tick.fire_at)
            )
            if error is None:
                done.append(tick.job_class)
            else:
                failures.append(error)
        return self._decide(record, failures, done)

    def _decide(self, record: JobRecord, failures: list[str], done: list[str]) -> JobOutcome:
        if not failures:
            return JobOutcome(
                job_id=record.id,
                state=JobState.SUCCEEDED,
                attempts=record.attempts,
                next_try_at=record.next_try_at,
                done_handlers=tuple(done),
                finished_at=utcnow(),
            )
        return self._failed(record, "\n".join(failures), tuple(done))

    async def _attempt(
        self, name: str, record: JobRecord, run: Callable[[], Awaitable[None]]
    ) -> str | None:
        """Run one handler; the error text when it fails, else None."""
        try:
            await run()
        except Exception as exc:
            logger.warning(
                "job %s (%s) failed in %s on attempt %d: %r",
                record.id,
                record.name,
                name,
                record.attempts,
                exc,
            )
            return f"{name} failed:\n{''.join(traceback.format_exception(exc))}"
        return None

    def _failed(self, record: JobRecord, error: str, done: tuple[str, ...]) -> JobOutcome:
        last_try = record.last_try_at or utcnow()
        next_try_at = self._retry_policy.next_try_at(max(record.attempts, 1), last_try)
        if next_try_at is None:
            logger.error(
                "job %s (%s) is dead after %d attempts", record.id, record.name, record.attempts
            )
            return _dead(record, error, done)
        return JobOutcome(
            job_id=record.id,
            state=JobState.SCHEDULED,
            attempts=record.attempts,
            next_try_at=next_try_at,
            last_error=error,
            done_handlers=done,
        )

    def _name_of(self, handler_type: type[Any]) -> str:
        name = self._names.get(handler_type)
        if name is None:
            name = self._names[handler_type] = handler_name(handler_type)
        return name


async def _run_handler(handler_type: type[BackgroundJob[Any]], args: BaseModel) -> None:
    handler = handler_type()
    await handler.execute(args)


async def _run_schedule_job(job_class: type[BackgroundScheduleJob], fire_at: datetime) -> None:
    job = job_class()
    job.fire_at = fire_at
    await job.execute()


def _dead(record: JobRecord, reason: str, done: tuple[str, ...] | None = None) -> JobOutcome:
    return JobOutcome(
        job_id=record.id,
        state=JobState.DEAD,
        attempts=record.attempts,
        next_try_at=record.next_try_at,
        last_error=reason,
        done_handlers=record.done_handlers if done is None else done,
        finished_at=utcnow(),
    )
