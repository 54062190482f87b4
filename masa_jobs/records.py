"""Value objects that cross the store boundary, and what callers see of a job."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

__all__ = [
    "JobInfo",
    "JobOutcome",
    "JobRecord",
    "JobState",
    "ScheduleInfo",
    "ScheduleRecord",
    "WorkerInfo",
    "utcnow",
]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC: every timestamp in masa-jobs is."""
    return datetime.now(UTC)


class JobState(StrEnum):
    """Where a job is in its life.

    ``scheduled`` (due later) → ``enqueued`` (due now) → ``processing``
    (claimed under a lease) → ``succeeded`` | ``scheduled`` (retry) | ``dead``;
    a pending job can be ``cancelled``.
    """

    SCHEDULED = "scheduled"
    ENQUEUED = "enqueued"
    PROCESSING = "processing"
    SUCCEEDED = "succeeded"
    DEAD = "dead"
    CANCELLED = "cancelled"

    @property
    def is_pending(self) -> bool:
        return self in PENDING_STATES

    @property
    def is_finished(self) -> bool:
        return self in FINISHED_STATES


PENDING_STATES = frozenset({JobState.SCHEDULED, JobState.ENQUEUED})
FINISHED_STATES = frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED})


@dataclass(frozen=True, slots=True)
class JobRecord:
    """A job as a store keeps it.

    ``attempts`` counts executions started: a store increments it when it
    claims the job. ``done_handlers`` names the handlers that already
    succeeded, so that a retry runs only the ones that failed.
    ``lease_owner``/``lease_expires_at``/``lease_token`` are set while the job
    is processing. ``lease_token`` is the fencing value of the claim that holds
    the job: a new one on every claim, so that renewals and outcomes of an
    earlier claim (a worker that froze or lost the store past its lease) are
    refused instead of overwriting the new owner's run.
    """

    id: str
    name: str
    payload: str
    state: JobState
    created_at: datetime
    next_try_at: datetime
    attempts: int = 0
    last_try_at: datetime | None = None
    last_error: str | None = None
    done_handlers: tuple[str, ...] = ()
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    finished_at: datetime | None = None
    lease_token: str | None = None


@dataclass(frozen=True, slots=True)
class JobOutcome:
    """What a worker decided for a job it holds, handed to ``JobStore.finish``.

    ``state`` is ``succeeded`` or ``dead`` (final), or ``scheduled`` with
    ``next_try_at`` (a retry, or a job put back by a stopping worker).
    ``lease_token`` is the token of the claim the outcome belongs to: the
    store applies the outcome only while the job is still held under it.
    ``finished_at`` marks a final outcome; network stores stamp it with their
    own clock.
    """

    job_id: str
    state: JobState
    attempts: int
    next_try_at: datetime
    last_error: str | None = None
    done_handlers: tuple[str, ...] = ()
    finished_at: datetime | None = None
    lease_token: str | None = None


@dataclass(frozen=True, slots=True)
class ScheduleRecord:
    """A recurring job as a store keeps it.

    ``job_class`` is the ``module.QualName`` of the ``BackgroundScheduleJob``
    subclass, or ``job:<job name>`` for a schedule of an ordinary job (whose
    args are ``payload``); ``next_fire_at`` is the next tick (UTC). Firing a
    tick moves ``next_fire_at`` forward atomically with storing the tick's
    job, so a tick fires once however many schedulers look at it.
    """

    id: str
    job_class: str
    cron_expression: str
    timezone: str
    next_fire_at: datetime
    created_at: datetime
    updated_at: datetime
    last_fire_at: datetime | None = None
    # The JSON args of a schedule of an ordinary job (``job_class`` is
    # ``job:<job name>``); None for a schedule of a BackgroundScheduleJob class.
    payload: str | None = None
    # A paused schedule fires no ticks (``set_schedule_paused``); upserts
    # keep it as it is, so redeploying a class does not resume it.
    paused: bool = False


@dataclass(frozen=True, slots=True)
class ScheduleInfo:
    """What the manager shows of a recurring job.

    ``known`` is False when this process has no class of that name: the
    schedule stays stored and its ticks go ``dead`` until a worker that
    knows the class runs them (and they are retried). A schedule of an
    ordinary job (``add_or_update_job_schedule``) has ``job_class``
    ``job:<job name>``, its ``args`` as stored, and is ``known`` when this
    process has a handler of that job name.
    """

    id: str
    job_class: str
    cron_expression: str
    timezone: str
    next_fire_at: datetime
    last_fire_at: datetime | None
    known: bool
    args: dict[str, Any] | None = None
    # A paused schedule fires no ticks until it is resumed; trigger still runs it.
    paused: bool = False


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A live worker as its heartbeat describes it, for operators and dashboards."""

    id: str
    host: str
    pid: int
    started_at: datetime
    last_seen_at: datetime
    running_jobs: int = 0


@dataclass(frozen=True, slots=True)
class JobInfo:
    """What the manager, the CLI and dashboards show of a job."""

    id: str
    name: str
    state: JobState
    attempts: int
    created_at: datetime
    next_try_at: datetime | None
    last_try_at: datetime | None
    last_error: str | None
    args: dict[str, Any] | None = field(default=None)

    @classmethod
    def from_record(cls, record: JobRecord, now: datetime | None = None) -> JobInfo:
        state = record.state
        # Stores keep one "pending" state in effect; whether it shows as
        # scheduled or enqueued depends on the clock, not on a write.
        if state.is_pending:
            due = record.next_try_at <= (now or utcnow())
            state = JobState.ENQUEUED if due else JobState.SCHEDULED
        return cls(
            id=record.id,
            name=record.name,
            state=state,
            attempts=record.attempts,
            created_at=record.created_at,
            next_try_at=record.next_try_at if not state.is_finished else None,
            last_try_at=record.last_try_at,
            last_error=record.last_error,
            args=_decode_args(record.payload),
        )


def _decode_args(payload: str) -> dict[str, Any] | None:
    """The stored args as a dict; None when the payload is not a JSON object."""
    try:
        decoded = json.loads(payload)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None
