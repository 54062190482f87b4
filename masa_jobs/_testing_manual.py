"""The manual mode: jobs recorded on a fake clock, run when the test says so."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel

from ._completion import InlineCompletions
from ._testing_doubles import WORKER_ID, ClockedJobManager, FakeClock, RecordingStore
from ._text import clean_error
from .executor import JobExecutor
from .options import BackgroundJobOptions
from .records import PENDING_STATES, JobInfo, JobOutcome, JobRecord, JobState
from .registry import JobRegistry
from .retry import RetryPolicy
from .scheduler import Scheduler

__all__ = ["DRAIN_LIMIT", "DrainResult", "ManualJobs"]

A = TypeVar("A", bound=BaseModel)

# drain() stops after this many executions: a job that enqueues another of
# itself on every run would otherwise keep a test busy forever.
DRAIN_LIMIT = 10_000


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What one ``drain()`` did: executions, and how each ended.

    ``failed`` counts executions put back for a retry, ``dead`` those that
    ended the job; ``errors`` holds their error texts (tracebacks included).
    """

    ran: int = 0
    succeeded: int = 0
    failed: int = 0
    dead: int = 0
    errors: tuple[str, ...] = ()

    def counted(self, outcome: JobOutcome) -> DrainResult:
        """This result with one more execution, ending in ``outcome``."""
        ran = self.ran + 1
        if outcome.state is JobState.SUCCEEDED:
            return replace(self, ran=ran, succeeded=self.succeeded + 1)
        errors = (*self.errors, outcome.last_error or "")
        if outcome.state is JobState.DEAD:
            return replace(self, ran=ran, dead=self.dead + 1, errors=errors)
        return replace(self, ran=ran, failed=self.failed + 1, errors=errors)


class ManualJobs:
    """The manual mode's handle: recorded jobs, a fake clock, and a way to run them.

    Jobs are kept in ``store`` (a memory store on ``clock``); ``drain()``
    runs the due ones through the worker's ``JobExecutor`` (so handlers,
    retries and dead jobs behave as under a worker) and ``advance()`` moves
    ``clock``, firing cron ticks through the ``Scheduler``.
    """

    def __init__(
        self, jobs_container: Any, start: datetime | None = None, *, schedules: bool = True
    ) -> None:
        registry: JobRegistry = jobs_container.job_registry()
        options: BackgroundJobOptions = jobs_container.options()
        self.clock = FakeClock(start)
        self.store = RecordingStore(self.clock)
        self.manager = ClockedJobManager(self.store, registry, options, self.clock)
        self._registry = registry
        self._options = options
        self._executor = JobExecutor(
            registry,
            RetryPolicy.from_options(options),
            unknown_job_timeout=options.unknown_job_timeout,
            job_timeout=options.job_timeout,
            # Jobs here are not in the application's database: complete_in writes nothing.
            completions=InlineCompletions(),
        )
        self._scheduler = Scheduler(self.store, registry, options)
        # Without schedules, the declared ones count as declared already: no tick fires.
        self._declared = not schedules

    @property
    def now(self) -> datetime:
        """The fake clock's time."""
        return self.clock()

    # -- running ------------------------------------------------------------------------

    async def drain(self, *, limit: int = DRAIN_LIMIT) -> DrainResult:
        """Run every job due now, one at a time, until none is due.

        Jobs that the handlers enqueue run too, if due. A failed job is
        retried only once its retry falls due on the fake clock: after
        ``advance(first_wait_duration)`` and another ``drain()``.
        """
        await self._declare()
        result = DrainResult()
        lease = timedelta(seconds=self._options.lease_timeout)
        while claimed := await self.store.claim(WORKER_ID, 1, lease):
            if result.ran >= limit:
                await self.store.finish(WORKER_ID, (_put_back(claimed[0]),))
                raise RuntimeError(
                    f"drain() ran {limit} jobs and more are due: a job that enqueues "
                    "itself? Pass a higher limit if that many are expected"
                )
            outcome = self._cleaned(await self._executor.run(claimed[0]))
            await self.store.finish(WORKER_ID, (outcome,))
            result = result.counted(outcome)
        return result

    async def advance(self, by: timedelta | float) -> datetime:
        """Move the fake clock forward; returns the new time.

        Every cron tick that falls due on the way fires once, at its own
        time (its job is recorded, not run: ``drain()`` runs it). Delayed
        jobs and retries simply become due.
        """
        delta = by if isinstance(by, timedelta) else timedelta(seconds=by)
        if delta < timedelta():
            raise ValueError(f"time only moves forward: cannot advance by {delta}")
        await self._declare()
        target = self.clock() + delta
        await self._scheduler.fire_due()
        while (tick := await self._next_tick(target)) is not None:
            self.clock.move_to(tick)
            await self._scheduler.fire_due()
        self.clock.move_to(target)
        return target

    async def _declare(self) -> None:
        """Store the schedules classes declare, once, as a worker's scheduler does."""
        if not self._declared:
            self._declared = True
            await self._scheduler.declare()

    async def _next_tick(self, until: datetime) -> datetime | None:
        now = self.clock()
        ticks = [
            schedule.next_fire_at
            for schedule in await self.store.list_schedules()
            if now < schedule.next_fire_at <= until
        ]
        return min(ticks, default=None)

    def _cleaned(self, outcome: JobOutcome) -> JobOutcome:
        """The error text as a worker would store it (redacted, capped)."""
        if outcome.last_error is None:
            return outcome
        text = self._options.redact_error(outcome.last_error)
        return replace(outcome, last_error=clean_error(text, self._options.max_error_length))

    # -- looking ------------------------------------------------------------------------

    def jobs(self, args_type: type[BaseModel] | None = None) -> list[JobInfo]:
        """Every recorded job (any state, ticks included), or those of ``args_type``."""
        now = self.clock()
        return [
            JobInfo.from_record(record, now)
            for record in self.store.records()
            if args_type is None or record.name == self._name(args_type)
        ]

    def enqueued(self, args_type: type[A]) -> list[A]:
        """The args of the jobs of ``args_type`` still waiting to run (delayed ones too)."""
        name = self._name(args_type)
        return [
            args_type.model_validate_json(record.payload)
            for record in self.store.records()
            if record.name == name and record.state in PENDING_STATES
        ]

    def assert_enqueued(self, args_type: type[A], **fields: Any) -> A:
        """The first waiting job of ``args_type`` whose fields equal ``fields``.

        Raises ``AssertionError`` listing every waiting job when none matches.
        """
        _check_fields(args_type, fields)
        for args in self.enqueued(args_type):
            if _matches(args, fields):
                return args
        raise AssertionError(
            f"no waiting {_described(args_type, fields)} job; {self._waiting_text()}"
        )

    def assert_not_enqueued(self, args_type: type[BaseModel], **fields: Any) -> None:
        """Raises ``AssertionError`` if a waiting job of ``args_type`` matches ``fields``."""
        _check_fields(args_type, fields)
        found = [args for args in self.enqueued(args_type) if _matches(args, fields)]
        if found:
            raise AssertionError(
                f"expected no waiting {_described(args_type, fields)} job, found "
                f"{len(found)}: {[args.model_dump(mode='json') for args in found]}"
            )

    def clear(self) -> None:
        """Forget every recorded job, whatever its state (schedules stay)."""
        self.store.clear_jobs()

    def _name(self, args_type: type[BaseModel]) -> str:
        name = self._registry.name_of(args_type)
        if name is None:
            raise TypeError(
                f"{args_type.__module__}.{args_type.__qualname__} has no registered handler, "
                "so no job of it can be enqueued: pass a job args class"
            )
        return name

    def _waiting_text(self) -> str:
        now = self.clock()
        waiting = [r for r in self.store.records() if r.state in PENDING_STATES]
        if not waiting:
            return "no job is waiting"
        lines = [f"{len(waiting)} waiting:"]
        for record in waiting:
            due = "due now" if record.next_try_at <= now else f"due in {record.next_try_at - now}"
            lines.append(f"  - {record.name} {record.payload} ({due}, attempt {record.attempts})")
        return "\n".join(lines)


def _put_back(record: JobRecord) -> JobOutcome:
    return JobOutcome(
        job_id=record.id,
        state=JobState.ENQUEUED,
        attempts=record.attempts - 1,
        next_try_at=record.next_try_at,
        last_error=record.last_error,
        done_handlers=record.done_handlers,
        lease_token=record.lease_token,
    )


def _check_fields(args_type: type[BaseModel], fields: dict[str, Any]) -> None:
    unknown = sorted(set(fields) - set(args_type.model_fields))
    if unknown:
        raise TypeError(
            f"{args_type.__qualname__} has no field {', '.join(map(repr, unknown))}; "
            f"its fields are {', '.join(args_type.model_fields)}"
        )


def _matches(args: BaseModel, fields: dict[str, Any]) -> bool:
    return all(getattr(args, name) == value for name, value in fields.items())


def _described(args_type: type[BaseModel], fields: dict[str, Any]) -> str:
    if not fields:
        return args_type.__qualname__
    wanted = ", ".join(f"{name}={value!r}" for name, value in fields.items())
    return f"{args_type.__qualname__}({wanted})"
