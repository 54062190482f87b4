"""Value objects that cross the store boundary, and what callers see of a job."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import lru_cache
from typing import Any

__all__ = [
    "DEFAULT_PRIORITY",
    "DEFAULT_QUEUE",
    "MAX_HISTORY_EVENTS",
    "MAX_PRIORITY",
    "MIN_PRIORITY",
    "JobEvent",
    "JobId",
    "JobInfo",
    "JobOutcome",
    "JobRecord",
    "JobState",
    "ScheduleInfo",
    "ScheduleRecord",
    "UniqueScope",
    "WorkerInfo",
    "decode_handlers",
    "decode_headers",
    "decode_history",
    "display_state",
    "encode_handlers",
    "encode_headers",
    "encode_history",
    "new_job_id",
    "put_back",
    "to_us",
    "utcnow",
]

# Events a job keeps at most (the newest): a job retried without end keeps
# its last runs' errors, not an ever-growing record.
MAX_HISTORY_EVENTS = 50
# The queue of a job whose class and enqueue name none, and the one a worker
# serves unless told otherwise (as in Hangfire and Sidekiq).
DEFAULT_QUEUE = "default"
# Priorities run 0 (first) to 9 (last), as in Oban; a job that names none
# goes first, so that priorities only ever push work back.
MIN_PRIORITY = 0
MAX_PRIORITY = 9
DEFAULT_PRIORITY = MIN_PRIORITY


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC: every timestamp in masa-jobs is."""
    return datetime.now(UTC)


# A job id is a random UUID (version 4, RFC 4122 variant) as 32 hex digits:
# these bits say so, the other 122 are random.
_UUID4_CLEARED = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_job_id() -> str:
    """A new job's id: ``uuid4().hex``, without building a ``UUID`` object
    (less than half its time, once per job of every bulk enqueue)."""
    return "%032x" % (int.from_bytes(os.urandom(16)) & _UUID4_CLEARED | _UUID4_SET)


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


class UniqueScope(StrEnum):
    """How long a job holds its unique key, so that a second enqueue with the
    same key returns the first job instead of storing another.

    ``pending``: until the job first starts running (enqueued or scheduled,
    retries not included). ``active``: until the job finishes (succeeded,
    dead, cancelled); a retry keeps it. ``period``: until ``unique_until``
    on the store's clock, whatever the job's state.
    """

    PENDING = "pending"
    ACTIVE = "active"
    PERIOD = "period"


class JobId(str):
    """The id ``enqueue`` returns: a ``str`` like any job id. ``duplicate`` is
    True when the job's unique key was held by a job already stored, whose
    id this is; nothing new was stored."""

    # A class default: a new job's id is built as cheaply as a str.
    duplicate: bool = False

    @classmethod
    def of_holder(cls, job_id: str) -> JobId:
        """The id of the job that held the unique key, marked as a duplicate."""
        held = cls(job_id)
        held.duplicate = True
        return held


@dataclass(frozen=True, slots=True)
class JobEvent:
    """One step of a job's history, stored with the job.

    A store appends one when it applies an outcome (``finish``: the attempt
    that ended, its error and the worker that ran it; ``started_at`` is the
    claim's ``last_try_at``) and when an operator moves the job
    (``transition``: ``worker`` is None). ``at`` is the store's clock.
    """

    at: datetime
    state: JobState
    attempt: int
    error: str | None = None
    worker: str | None = None
    started_at: datetime | None = None


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
    # JSON object of text values the enqueuing process attached (the W3C
    # ``traceparent`` of its trace); stores keep it as given.
    headers: str | None = None
    # What happened to the job, oldest first (``JobEvent``), at most
    # MAX_HISTORY_EVENTS; stores append to it, callers never write it.
    history: tuple[JobEvent, ...] = ()
    # The queue the job waits in: only workers serving it claim it.
    queue: str = DEFAULT_QUEUE
    # MIN_PRIORITY (claimed first) to MAX_PRIORITY; ties go by due time.
    priority: int = DEFAULT_PRIORITY
    # The key that makes the job unique while ``unique_scope`` says it holds
    # it (``unique_until`` ends a ``period`` scope); see ``JobStore.add``.
    # Stores may clear the key once the job no longer holds it.
    unique_key: str | None = None
    unique_scope: UniqueScope | None = None
    unique_until: datetime | None = None


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


def put_back(
    record: JobRecord, *, started: bool, done: tuple[str, ...] | None = None
) -> JobOutcome:
    """A held job handed back, due at once; an attempt never started is not counted.

    ``done`` lists the handlers that finished before the interruption, so
    that they do not run again. Due "at once" is the claim's time, which is
    on the store's clock, so a worker's skewed clock cannot delay the job.
    """
    return JobOutcome(
        job_id=record.id,
        state=JobState.ENQUEUED,
        attempts=record.attempts if started else record.attempts - 1,
        next_try_at=record.last_try_at or record.next_try_at,
        last_error=record.last_error,
        done_handlers=record.done_handlers if done is None else done,
        lease_token=record.lease_token,
    )


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
    finished_at: datetime | None = None
    # The worker that holds the job while it is processing.
    worker: str | None = None
    history: tuple[JobEvent, ...] = ()
    headers: dict[str, str] | None = None
    queue: str = DEFAULT_QUEUE
    priority: int = DEFAULT_PRIORITY

    @classmethod
    def from_record(cls, record: JobRecord, now: datetime | None = None) -> JobInfo:
        state = display_state(record, now or utcnow())
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
            finished_at=record.finished_at,
            worker=record.lease_owner if state is JobState.PROCESSING else None,
            history=record.history,
            headers=decode_headers(record.headers),
            queue=record.queue,
            priority=record.priority,
        )


def display_state(record: JobRecord, now: datetime) -> JobState:
    """The state callers see: stores keep one "pending" state in effect, and
    whether it shows as scheduled or enqueued depends on the clock, not on a write."""
    if record.state.is_pending:
        return JobState.ENQUEUED if record.next_try_at <= now else JobState.SCHEDULED
    return record.state


def encode_headers(headers: dict[str, str] | None) -> str | None:
    """Headers as the JSON text stores keep (None when there are none)."""
    return json.dumps(headers, separators=(",", ":"), sort_keys=True) if headers else None


def decode_headers(text: str | None) -> dict[str, str] | None:
    """Stored headers as a dict; None when absent or not a JSON object of texts."""
    if not text:
        return None
    try:
        decoded = json.loads(text)
    except ValueError:
        return None
    if not isinstance(decoded, dict):
        return None
    return {str(k): str(v) for k, v in decoded.items() if isinstance(v, str)}


# Distinct lists of finished handlers one process encodes: about one per job
# name and progress. Cached, an outcome's list costs a dict lookup instead of
# a json.dumps (1.3 us, on every job's outcome).
HANDLER_LISTS_CACHED = 256


@lru_cache(maxsize=HANDLER_LISTS_CACHED)
def encode_handlers(handlers: tuple[str, ...]) -> str:
    """``done_handlers`` as the stores keep it: a JSON array, ``[]`` for none."""
    return json.dumps(handlers) if handlers else "[]"


def decode_handlers(text: str) -> tuple[str, ...]:
    """``done_handlers`` from what ``encode_handlers`` wrote."""
    return () if text == "[]" else tuple(json.loads(text))


def encode_history(events: tuple[JobEvent, ...]) -> str:
    """Events as the JSON array text stores keep (timestamps in microseconds)."""
    return json.dumps([_event_json(e) for e in events[-MAX_HISTORY_EVENTS:]], separators=(",", ":"))


def _event_json(event: JobEvent) -> dict[str, Any]:
    out: dict[str, Any] = {
        "at": to_us(event.at),
        "state": event.state.value,
        "attempt": event.attempt,
    }
    if event.error is not None:
        out["error"] = event.error
    if event.worker is not None:
        out["worker"] = event.worker
    if event.started_at is not None:
        out["started"] = to_us(event.started_at)
    return out


def decode_history(text: str | None) -> tuple[JobEvent, ...]:
    """Stored history as events; entries that are not well-formed are left out,
    so that one damaged event never hides a job."""
    if not text:
        return ()
    try:
        decoded = json.loads(text)
    except ValueError:
        return ()
    if not isinstance(decoded, list):
        return ()
    events = (_event_from_json(item) for item in decoded)
    return tuple(e for e in events if e is not None)[-MAX_HISTORY_EVENTS:]


def _event_from_json(item: object) -> JobEvent | None:
    if not isinstance(item, dict):
        return None
    try:
        started = item.get("started")
        error, worker = item.get("error"), item.get("worker")
        return JobEvent(
            at=_from_us(item["at"]),
            state=JobState(item["state"]),
            attempt=int(item.get("attempt", 0)),
            error=error if isinstance(error, str) else None,
            worker=worker if isinstance(worker, str) else None,
            started_at=None if started is None else _from_us(started),
        )
    except (KeyError, ValueError, TypeError, OverflowError):
        return None


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_us(moment: datetime) -> int:
    """A timezone-aware datetime as integer microseconds since the Unix epoch."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_us(value: object) -> datetime:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(value)
    return _EPOCH + timedelta(microseconds=int(value))


def _decode_args(payload: str) -> dict[str, Any] | None:
    """The stored args as a dict; None when the payload is not a JSON object."""
    try:
        decoded = json.loads(payload)
    except ValueError:
        return None
    return decoded if isinstance(decoded, dict) else None
