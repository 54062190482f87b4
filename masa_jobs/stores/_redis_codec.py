"""How the Redis store writes records as script arguments and reads them back.

Timestamps are integer microseconds since the Unix epoch: exact in a sorted
set score (a double) until the year 2255, and compared by the scripts as
numbers. An optional argument is ``''`` for None and otherwise carries one
marker character before its text (the scripts drop it), so that an empty
string stays distinguishable from None.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from ..exceptions import StoreError
from ..records import JobOutcome, JobRecord, JobState, ScheduleRecord, WorkerInfo

__all__ = [
    "CLAIM_FIELDS",
    "DECODE_ERRORS",
    "FIELDS",
    "claimed_record",
    "corrupt_outcome",
    "job_args",
    "outcome_args",
    "read_record",
    "read_schedule",
    "read_worker",
    "schedule_args",
    "us",
    "worker_json",
]

# The fields of a job hash, in the order the scripts and get() read them.
FIELDS = (
    "name",
    "payload",
    "state",
    "created",
    "next",
    "attempts",
    "last_try",
    "error",
    "done",
    "owner",
    "lease",
    "finished",
)
# Values per job in a claim reply: id attempts name payload created next error done.
CLAIM_FIELDS = 8
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
DECODE_ERRORS = (ValueError, TypeError, OverflowError)


def us(moment: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is refused (TypeError)."""
    return (moment - _EPOCH) // _MICROSECOND


def job_args(r: JobRecord) -> tuple[Any, ...]:
    """A new job as the scripts take it: 10 arguments."""
    if not r.state.is_pending:
        raise ValueError(f"job {r.id!r} is {r.state.value}: only pending jobs are added")
    return (
        r.id,
        r.name,
        r.payload,
        r.state.value,
        us(r.created_at),
        us(r.next_try_at),
        r.attempts,
        _opt_us(r.last_try_at),
        _opt(r.last_error),
        _opt_done(r.done_handlers),
    )


def outcome_args(o: JobOutcome, now: datetime) -> tuple[Any, ...]:
    """An outcome as the finish script takes it: 7 arguments."""
    if o.state is JobState.PROCESSING:
        raise ValueError(f"job {o.job_id!r}: an outcome cannot be processing")
    finished = o.finished_at if o.finished_at is not None else now
    return (
        o.job_id,
        o.state.value,
        o.attempts,
        us(o.next_try_at),
        _opt(o.last_error),
        _opt_done(o.done_handlers),
        us(finished),
    )


def schedule_args(s: ScheduleRecord) -> list[Any]:
    return [
        s.id,
        s.job_class,
        s.cron_expression,
        s.timezone,
        us(s.next_fire_at),
        us(s.created_at),
        us(s.updated_at),
        _opt_us(s.last_fire_at),
    ]


def worker_json(worker: WorkerInfo) -> str:
    info = {
        "id": worker.id,
        "host": worker.host,
        "pid": worker.pid,
        "started": us(worker.started_at),
        "seen": us(worker.last_seen_at),
        "running": worker.running_jobs,
    }
    return json.dumps(info)


def claimed_record(
    values: list[Any], worker_id: str, now: datetime, lease_expires_at: datetime
) -> JobRecord:
    """A job from a claim reply; ValueError (or TypeError) when it cannot be read."""
    job_id, attempts, name, payload, created, next_try, error, done = values
    if payload is None:
        raise ValueError("it has no payload")
    return JobRecord(
        id=job_id,
        name=name,
        payload=payload,
        state=JobState.PROCESSING,
        created_at=_dt(created),
        next_try_at=_dt(next_try),
        attempts=attempts,
        last_try_at=now,
        last_error=error,
        done_handlers=_done(done),
        lease_owner=worker_id,
        lease_expires_at=lease_expires_at,
    )


def corrupt_outcome(job_id: str, attempts: int, now: datetime, exc: Exception) -> JobOutcome:
    """Dead, with the reason: no handler can run a record that cannot be read."""
    return JobOutcome(
        job_id=job_id,
        state=JobState.DEAD,
        attempts=attempts,
        next_try_at=now,
        last_error=f"the stored record of job {job_id!r} cannot be read ({exc}); "
        "it was written by something other than masa-jobs or is damaged",
        finished_at=now,
    )


def read_record(job_id: str, fields: list[Any]) -> JobRecord | None:
    """A job from its ``FIELDS``; None when it does not exist."""
    if fields[0] is None:
        return None
    try:
        return _decode(job_id, fields)
    except DECODE_ERRORS as exc:
        raise StoreError(
            f"the stored record of job {job_id!r} is damaged ({exc}): it was written by "
            "something other than masa-jobs; delete the job"
        ) from exc


def read_schedule(schedule_id: str, fields: list[Any]) -> ScheduleRecord | None:
    job_class, cron, timezone, next_fire, created, updated, last = fields
    if job_class is None:
        return None
    return ScheduleRecord(
        id=schedule_id,
        job_class=job_class,
        cron_expression=cron,
        timezone=timezone,
        next_fire_at=_dt(next_fire),
        created_at=_dt(created),
        updated_at=_dt(updated),
        last_fire_at=_opt_dt(last),
    )


def read_worker(text: str) -> WorkerInfo:
    info = json.loads(text)
    return WorkerInfo(
        id=info["id"],
        host=info["host"],
        pid=info["pid"],
        started_at=_dt(info["started"]),
        last_seen_at=_dt(info["seen"]),
        running_jobs=info["running"],
    )


def _decode(job_id: str, fields: list[Any]) -> JobRecord:
    name, payload, state, created, next_try, attempts, *rest = fields
    last_try, error, done, owner, lease, finished = rest
    return JobRecord(
        id=job_id,
        name=name,
        payload=payload or "",
        state=JobState(state),
        created_at=_dt(created),
        next_try_at=_dt(next_try),
        attempts=int(attempts),
        last_try_at=_opt_dt(last_try),
        last_error=error,
        done_handlers=_done(done),
        lease_owner=owner,
        lease_expires_at=_opt_dt(lease),
        finished_at=_opt_dt(finished),
    )


def _opt_us(moment: datetime | None) -> str:
    return "" if moment is None else f"+{us(moment)}"


def _opt(text: str | None) -> str:
    return "" if text is None else "+" + text


def _opt_done(handlers: tuple[str, ...]) -> str:
    return f"+{json.dumps(list(handlers))}" if handlers else ""


def _dt(micros: str | int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(micros))


def _opt_dt(micros: str | None) -> datetime | None:
    return None if micros is None else _dt(micros)


def _done(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    handlers = json.loads(text)
    if not isinstance(handlers, list) or not all(isinstance(h, str) for h in handlers):
        raise ValueError(f"done handlers {text!r} are not a list of names")
    return tuple(handlers)
