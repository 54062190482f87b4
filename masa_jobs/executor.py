"""Running one claimed job: every handler that has not yet succeeded, once.

The executor turns a ``JobRecord`` into a ``JobOutcome``; it never raises for
a job's own failure, so one broken job cannot take the worker down.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio
from pydantic import BaseModel, ValidationError

from ._completion import CompletionSource, RunCompletion
from ._observe import Observers
from ._timeouts import stored_timeout
from .context import enter_job, leave_job
from .jobs import BackgroundJob, BackgroundScheduleJob, get_job_timeout, handler_name
from .options import DEFAULT_UNKNOWN_JOB_TIMEOUT_SECONDS
from .records import JobOutcome, JobRecord, JobState, utcnow
from .registry import HandlerType, JobRegistry
from .retry import RetryPolicy
from .schedules import SCHEDULE_JOB_PREFIX, ScheduleTick

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

__all__ = ["JobExecutor", "timeout_of"]

logger = logging.getLogger("masa_jobs.worker")

# A job no handler here knows goes back for this long: soon enough that a
# worker which knows it (a new release) picks it up within seconds, rarely
# enough that an old worker does not spin on it.
UNKNOWN_JOB_RECHECK_SECONDS = 5.0
# A failure's log line carries at most this much of the exception's text; the
# whole text (cleaned and capped) is in the job's last_error.
LOGGED_EXCEPTION_LENGTH = 500
# One warning per unknown job name per minute: visible, not a flood.
UNKNOWN_JOB_WARNING_SECONDS = 60.0
# How a waiting job's last_error says since when it waits.
_WAITING_SINCE = "waiting since"
_WAITING_SINCE_PATTERN = re.compile(rf"{_WAITING_SINCE} (\S+) for a worker that has it")


@dataclass(frozen=True, slots=True)
class _JobKind:
    """What running a job of one name takes, looked up once per name (the
    registry does not change once built)."""

    args_type: type[BaseModel]
    # (handler name, handler class), in the order they run.
    handlers: tuple[tuple[str, HandlerType], ...]
    handler_names: tuple[str, ...]
    # The args class's timeout, else the option's.
    timeout: float | None


class JobExecutor:
    """Runs the handlers of a job and decides its outcome."""

    def __init__(
        self,
        registry: JobRegistry,
        retry_policy: RetryPolicy,
        *,
        unknown_job_timeout: float = DEFAULT_UNKNOWN_JOB_TIMEOUT_SECONDS,
        job_timeout: float | None = None,
        observers: Observers | None = None,
        completions: CompletionSource | None = None,
    ) -> None:
        self._registry = registry
        # None on a store that cannot share the application's transactions.
        self._completions = completions
        self._job_timeout = job_timeout
        # None when nothing watches: a run then pays one `is None` test.
        self._observers = observers
        self._retry_policy = retry_policy
        self._unknown_job_timeout = timedelta(seconds=unknown_job_timeout)
        # Handler names are computed once per class, not once per job.
        self._names: dict[type[Any], str] = {}
        # Known job names only: unknown ones (from a store full of junk, say)
        # must not grow it.
        self._kinds: dict[str, _JobKind] = {}
        # Unknown job name -> when it was last warned about (monotonic seconds).
        self._unknown_warned: dict[str, float] = {}

    async def run(self, record: JobRecord, done: list[str] | None = None) -> JobOutcome:
        """The outcome of one execution of ``record``.

        ``done`` (the handlers finished so far, initially the record's) grows
        as handlers succeed, so a caller that interrupts the execution still
        knows which handlers need not run again.
        """
        if done is None:
            done = list(record.done_handlers)
        completion = None if self._completions is None else self._completions.of(record, done)
        token = enter_job(record, completion)
        try:
            if self._observers is not None:
                return await self._run_observed(record, done, completion, self._observers)
            return await self._dispatch(record, done, completion)
        finally:
            leave_job(token)

    async def _run_observed(
        self,
        record: JobRecord,
        done: list[str],
        completion: RunCompletion | None,
        observers: Observers,
    ) -> JobOutcome:
        """``run`` with the start, the outcome and the run time reported, in a
        span while a tracer provider is configured."""
        observers.job_started(record)
        began = time.perf_counter()
        tracer = observers.tracer()
        if tracer is None:
            outcome = await self._dispatch(record, done, completion)
        else:
            outcome = await self._run_traced(record, done, completion, tracer)
        observers.job_finished(record, outcome, time.perf_counter() - began)
        return outcome

    async def _run_traced(
        self, record: JobRecord, done: list[str], completion: RunCompletion | None, tracer: Tracer
    ) -> JobOutcome:
        from .tracing import run_span

        with run_span(tracer, record) as span:
            outcome = await self._dispatch(record, done, completion)
            span.finish(outcome)
        return outcome

    async def _dispatch(
        self, record: JobRecord, done: list[str], completion: RunCompletion | None
    ) -> JobOutcome:
        timeout = self._timeout_of(record)
        if timeout is None:
            return await self._dispatch_now(record, done, completion)
        with anyio.move_on_after(timeout):
            return await self._dispatch_now(record, done, completion)
        # Only our own deadline lands here: a worker that stops cancels an
        # outer scope, which this one does not catch.
        logger.warning(
            "job %s (%s) timed out after %g s on attempt %d",
            record.id,
            record.name,
            timeout,
            record.attempts,
        )
        error = (
            f"timed out after {timeout:g} s: the run was cancelled; raise the timeout "
            "(enqueue(..., timeout=...), @job_options(timeout=...) or options.job_timeout) "
            "if the job needs longer"
        )
        return self._failed(record, error, tuple(done))

    def _timeout_of(self, record: JobRecord) -> float | None:
        """``timeout_of``, with the class's timeout looked up once per name."""
        kind = self._kind_of(record.name)
        return _own_timeout_or(record, self._job_timeout if kind is None else kind.timeout)

    def _kind_of(self, name: str) -> _JobKind | None:
        kind = self._kinds.get(name)
        if kind is not None:
            return kind
        args_type = self._registry.args_type(name)
        if args_type is None:
            return None
        handlers = tuple((self._name_of(h), h) for h in self._registry.handlers(name))
        declared = get_job_timeout(args_type)
        kind = self._kinds[name] = _JobKind(
            args_type=args_type,
            handlers=handlers,
            handler_names=tuple(name for name, _ in handlers),
            timeout=self._job_timeout if declared is None else declared,
        )
        return kind

    async def _dispatch_now(
        self, record: JobRecord, done: list[str], completion: RunCompletion | None
    ) -> JobOutcome:
        if record.name.startswith(SCHEDULE_JOB_PREFIX):
            return await self._run_tick(record, done, completion)
        return await self._run_job(record, done, completion)

    async def _run_job(
        self, record: JobRecord, done: list[str], completion: RunCompletion | None
    ) -> JobOutcome:
        kind = self._kind_of(record.name)
        if kind is None:
            return self._unknown(record, record.name, "no handler for this job name")
        try:
            args = kind.args_type.model_validate_json(record.payload)
        except ValidationError as exc:
            return _dead(
                record,
                f"the stored args of job {record.name!r} no longer validate as "
                f"{kind.args_type.__qualname__}: {exc}",
            )
        failures: list[str] = []
        if completion is not None:
            completion.handlers = kind.handler_names
        for name, handler_type in kind.handlers:
            if name in done:
                continue
            if completion is not None:
                completion.current = name
            error = await self._attempt(name, record, partial(_run_handler, handler_type, args))
            if error is None:
                done.append(name)
            else:
                failures.append(error)
        return self._decide(record, failures, done)

    async def _run_tick(
        self, record: JobRecord, done: list[str], completion: RunCompletion | None
    ) -> JobOutcome:
        """Run one tick of a recurring job: build its class and execute it."""
        try:
            tick = ScheduleTick.model_validate_json(record.payload)
        except ValidationError as exc:
            return _dead(record, f"the stored tick of {record.name!r} is not valid: {exc}")
        job_class = self._registry.schedule_class(tick.job_class)
        if job_class is None:
            return self._unknown(record, tick.job_class, "no such recurring job class")
        failures: list[str] = []
        if completion is not None:
            completion.handlers = (tick.job_class,)
            completion.current = tick.job_class
        if tick.job_class not in done:
            error = await self._attempt(
                tick.job_class, record, partial(_run_schedule_job, job_class, tick.fire_at)
            )
            if error is None:
                done.append(tick.job_class)
            else:
                failures.append(error)
        return self._decide(record, failures, done)

    def _unknown(self, record: JobRecord, what: str, why: str) -> JobOutcome:
        """A job this worker cannot run: back to the queue for a worker that can.

        It uses no attempt. The wait is counted from the first time a worker
        without the handler claimed it (kept in ``last_error``, where an
        operator sees why the job waits), on the store's clock; only after
        ``unknown_job_timeout`` of it is the job dead: by then no worker that
        knows it has run for that long, which is a mistake someone must see.
        """
        now = record.last_try_at or record.next_try_at
        since = _waiting_since(record.last_error) or now
        if now - since >= self._unknown_job_timeout:
            return _dead(
                record,
                f"{why}: {what!r}; no worker that knows it ran it within unknown_job_timeout "
                f"({self._unknown_job_timeout.total_seconds():g} s). Deploy workers with the "
                "code that defines it (with options.job_packages set, inside one of those "
                "packages), then retry the job",
            )
        self._warn_unknown(record, what, why)
        recheck = min(self._unknown_job_timeout, timedelta(seconds=UNKNOWN_JOB_RECHECK_SECONDS))
        return JobOutcome(
            job_id=record.id,
            state=JobState.SCHEDULED,
            attempts=record.attempts - 1,
            next_try_at=now + recheck,
            last_error=(
                f"{why}: {what!r}; {_WAITING_SINCE} {since.isoformat()} for a worker that has it"
            ),
            done_handlers=record.done_handlers,
            lease_token=record.lease_token,
        )

    def _warn_unknown(self, record: JobRecord, what: str, why: str) -> None:
        now = time.monotonic()
        warned = self._unknown_warned.get(what)
        if warned is not None and now - warned < UNKNOWN_JOB_WARNING_SECONDS:
            return
        self._unknown_warned[what] = now
        logger.warning(
            "job %s (%s): %s: %r; put back for a worker that has it (a rolling deploy?); "
            "dead after unknown_job_timeout %g s",
            record.id,
            record.name,
            why,
            what,
            self._unknown_job_timeout.total_seconds(),
        )

    def _decide(self, record: JobRecord, failures: list[str], done: list[str]) -> JobOutcome:
        if not failures:
            return JobOutcome(
                job_id=record.id,
                state=JobState.SUCCEEDED,
                attempts=record.attempts,
                next_try_at=record.next_try_at,
                done_handlers=tuple(done),
                finished_at=utcnow(),
                lease_token=record.lease_token,
            )
        return self._failed(record, "\n".join(failures), tuple(done))

    async def _attempt(
        self, name: str, record: JobRecord, run: Callable[[], Awaitable[None]]
    ) -> str | None:
        """Run one handler; the error text when it fails, else None."""
        try:
            await run()
        except Exception as exc:
            if self._observers is not None:
                self._observers.handler_failed(exc)
            logger.warning(
                "job %s (%s) failed in %s on attempt %d: %s",
                record.id,
                record.name,
                name,
                record.attempts,
                _shortened(repr(exc)),
            )
            return f"{name} failed:\n{''.join(traceback.format_exception(exc))}"
        return None

    def _failed(self, record: JobRecord, error: str, done: tuple[str, ...]) -> JobOutcome:
        last_try = record.last_try_at or utcnow()
        next_try_at = self._retry_policy.next_try_at(max(record.attempts, 1), last_try)
        if next_try_at is None:
            return _dead(record, error, done)
        return JobOutcome(
            job_id=record.id,
            state=JobState.SCHEDULED,
            attempts=record.attempts,
            next_try_at=next_try_at,
            last_error=error,
            done_handlers=done,
            lease_token=record.lease_token,
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
        lease_token=record.lease_token,
    )


def _waiting_since(last_error: str | None) -> datetime | None:
    """When a job began to wait for a worker with its handler, if it does."""
    found = _WAITING_SINCE_PATTERN.search(last_error or "")
    if found is None:
        return None
    try:
        return datetime.fromisoformat(found.group(1))
    except ValueError:
        return None


def _shortened(text: str) -> str:
    if len(text) <= LOGGED_EXCEPTION_LENGTH:
        return text
    return f"{text[: LOGGED_EXCEPTION_LENGTH - 20]}... [{len(text)} characters]"


def timeout_of(record: JobRecord, registry: JobRegistry, job_timeout: float | None) -> float | None:
    """The job's own timeout (set at enqueue), else its args class's, else the option's."""
    args_type = registry.args_type(record.name)
    declared = None if args_type is None else get_job_timeout(args_type)
    return _own_timeout_or(record, job_timeout if declared is None else declared)


def _own_timeout_or(record: JobRecord, otherwise: float | None) -> float | None:
    """The timeout stored with the job at enqueue, else ``otherwise``."""
    if record.headers is not None:
        stored = stored_timeout(record.headers)
        if stored is not None:
            return stored
    return otherwise
