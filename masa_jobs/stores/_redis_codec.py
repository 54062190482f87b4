"""How the Redis store writes records as script arguments and reads them back.

Timestamps are integer microseconds since the Unix epoch: exact in a sorted
set score (a double) until the year 2255, and compared by the scripts as
numbers. Each argument of a script call costs the client about as much as a
short text: a new job travels in ``JOB_ARGS`` arguments and an outcome in
one, their fields packed as numbers and texts measured in UTF-8 bytes (a
text of any character follows its size, ``''`` for None). An optional
argument of a schedule is ``''`` for None and otherwise carries one marker
character before its text (the scripts drop it), so that an empty string
stays distinguishable from None. A job stored before queues, priorities and
unique keys existed has none of their fields: it reads as a job of the
default queue and priority, without a key.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from ..exceptions import StoreError
from ..records import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    MAX_HISTORY_EVENTS,
    JobOutcome,
    JobRecord,
    JobState,
    ScheduleRecord,
    UniqueScope,
    WorkerInfo,
    decode_history,
    encode_handlers,
    encode_history,
)

__all__ = [
    "CLAIM_FIELDS",
    "DECODE_ERRORS",
    "FIELDS",
    "claimed_record",
    "corrupt_outcome",
    "job_args",
    "micros",
    "moment",
    "outcome_arg",
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
    "token",
    "headers",
    "history",
    "queue",
    "priority",
    "ukey",
    "uscope",
    "uuntil",
)
# Values per job in a claim reply: id attempts name payload created next error done
# headers control (None for the default queue and priority without a unique key,
# else queue priority unique_key unique_scope unique_until).
CLAIM_FIELDS = 10
# The queue, priority, unique key, scope and end of period of a claimed job.
_Control = tuple[str, int, str | None, UniqueScope | None, datetime | None]
# The control of a claimed job the reply gives as None (most jobs).
_NO_CONTROL: _Control = (DEFAULT_QUEUE, DEFAULT_PRIORITY, None, None, None)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
DECODE_ERRORS = (ValueError, TypeError, OverflowError)


def us(when: datetime) -> int:
    """Microseconds since the epoch; a naive datetime is refused (TypeError)."""
    return (when - _EPOCH) // _MICROSECOND


def micros(duration: timedelta) -> int:
    """A duration in whole microseconds, as the scripts add it to the server's clock."""
    return duration // _MICROSECOND


def moment(value: str | int) -> datetime:
    """The datetime of a timestamp the server wrote or answered (microseconds)."""
    # timedelta(days, seconds, microseconds): positional is the quickest.
    return _EPOCH + timedelta(0, 0, int(value))


def job_args(r: JobRecord) -> tuple[str, str, str, str, str]:
    """A new job as the scripts take it: ``JOB_ARGS`` (5) arguments, since each
    argument costs about as much to send as a short field's text: the id, the
    name, the payload, ``<state>,<delay>,<attempts>,<events>`` and the extras
    (``_extras``). The scripts keep only the delay between ``created_at`` and
    ``next_try_at`` (microseconds): they rebase both on the server's clock. The
    history goes with its count of events, which the finish script keeps beside
    it so that an append never parses it."""
    if not r.state.is_pending:
        raise ValueError(f"job {r.id!r} is {r.state.value}: only pending jobs are added")
    delay = us(r.next_try_at) - us(r.created_at)
    events = min(len(r.history), MAX_HISTORY_EVENTS)
    return r.id, r.name, r.payload, f"{r.state.value},{delay},{r.attempts},{events}", _extras(r)


def outcome_arg(o: JobOutcome) -> str:
    """An outcome as the finish script takes it: one argument (each argument
    costs about as much to send as a short field's text), ``<state>,<attempts>,
    <next_try_at in microseconds>,<bytes of the id>,<bytes of the lease token>,
    <bytes of the error, nothing for None>,<id><token><error><done handlers as
    JSON, nothing for none>``. No finish time: the script stamps a final outcome
    with the server's clock. An outcome without a token ('') matches no job,
    since every claim stores one."""
    if o.state is JobState.PROCESSING:
        raise ValueError(f"job {o.job_id!r}: an outcome cannot be processing")
    token, error = o.lease_token or "", o.last_error
    sizes = f"{_bytes(o.job_id)},{_bytes(token)},{'' if error is None else _bytes(error)}"
    done = encode_handlers(o.done_handlers) if o.done_handlers else ""
    head = f"{o.state.value},{o.attempts},{us(o.next_try_at)},{sizes},"
    return f"{head}{o.job_id}{token}{error or ''}{done}"


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
        _opt(s.payload),
        _opt("1" if s.paused else None),
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
    values: list[Any],
    worker_id: str,
    now: datetime,
    lease_expires_at: datetime,
    token: str,
    moments: dict[str, datetime],
) -> JobRecord:
    """A job from a claim reply; ValueError (or TypeError) when it cannot be read.
    ``moments`` keeps the timestamps read from the reply so far: they repeat (the
    jobs of one add share their creation time, and a job due at once is due
    when it was created), and each is read once."""
    job_id, attempts, name, payload, created, next_try, error, done, headers, control = values
    if payload is None:
        raise ValueError("it has no payload")
    queue, priority, unique_key, unique_scope, unique_until = (
        _NO_CONTROL if control is None else _claimed_control(control)
    )
    created_at, next_try_at = _moment_in(moments, created), _moment_in(moments, next_try)
    return JobRecord(
        id=job_id,
        name=name,
        payload=payload,
        state=JobState.PROCESSING,
        created_at=created_at,
        next_try_at=next_try_at,
        attempts=attempts,
        last_try_at=now,
        last_error=error,
        done_handlers=_done(done),
        lease_owner=worker_id,
        lease_expires_at=lease_expires_at,
        lease_token=token,
        headers=headers,
        queue=queue,
        priority=priority,
        unique_key=unique_key,
        unique_scope=unique_scope,
        unique_until=unique_until,
    )


def _claimed_control(values: list[Any]) -> _Control:
    queue, priority, unique_key, unique_scope, unique_until = values
    return queue, _priority(priority), unique_key, _scope(unique_scope), _opt_dt(unique_until)


def _moment_in(moments: dict[str, datetime], text: str) -> datetime:
    """The datetime of a timestamp of a reply, read once per reply."""
    found = moments.get(text)
    if found is None:
        found = moments[text] = moment(text)
    return found


def corrupt_outcome(
    job_id: str, attempts: int, now: datetime, token: str, exc: Exception
) -> JobOutcome:
    """Dead, with the reason: no handler can run a record that cannot be read."""
    return JobOutcome(
        job_id=job_id,
        state=JobState.DEAD,
        attempts=attempts,
        next_try_at=now,
        last_error=f"the stored record of job {job_id!r} cannot be read ({exc}); "
        "it was written by something other than masa-jobs or is damaged",
        finished_at=now,
        lease_token=token,
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
    job_class, cron, timezone, next_fire, created, updated, last, payload, paused = fields
    if job_class is None:
        return None
    return ScheduleRecord(
        id=schedule_id,
        job_class=job_class,
        cron_expression=cron,
        timezone=timezone,
        next_fire_at=moment(next_fire),
        created_at=moment(created),
        updated_at=moment(updated),
        last_fire_at=_opt_dt(last),
        payload=payload,
        paused=paused is not None,
    )


def read_worker(text: str) -> WorkerInfo:
    info = json.loads(text)
    return WorkerInfo(
        id=info["id"],
        host=info["host"],
        pid=info["pid"],
        started_at=moment(info["started"]),
        last_seen_at=moment(info["seen"]),
        running_jobs=info["running"],
    )


def _decode(job_id: str, fields: list[Any]) -> JobRecord:
    name, payload, state, created, next_try, attempts, *rest = fields
    last_try, error, done, owner, lease, finished, token, headers, history, *control = rest
    queue, priority, unique_key, unique_scope, unique_until = control
    return JobRecord(
        id=job_id,
        name=name,
        payload=payload or "",
        state=JobState(state),
        created_at=moment(created),
        next_try_at=moment(next_try),
        attempts=int(attempts),
        last_try_at=_opt_dt(last_try),
        last_error=error,
        done_handlers=_done(done),
        lease_owner=owner,
        lease_expires_at=_opt_dt(lease),
        finished_at=_opt_dt(finished),
        # A job out of processing keeps the token of its last claim (the
        # finish script's answer to an outcome sent again), not a lease.
        lease_token=token if state == JobState.PROCESSING.value else None,
        headers=headers,
        history=decode_history(history),
        queue=queue or DEFAULT_QUEUE,
        priority=_priority(priority),
        unique_key=unique_key,
        unique_scope=_scope(unique_scope),
        unique_until=_opt_dt(unique_until),
    )


def _opt_us(when: datetime | None) -> str:
    return "" if when is None else f"+{us(when)}"


def _opt(text: str | None) -> str:
    return "" if text is None else "+" + text


def _extras(r: JobRecord) -> str:
    """The fields of a new job that most jobs do not have, in one argument: ''
    when it has none (and the default queue and priority without a unique key),
    else the sizes in bytes of last_try_at (microseconds), last_error, the done
    handlers (JSON), headers, history (JSON) and the control (``_control``),
    separated by ',' (nothing for None), then ':' and those texts."""
    control = _control(r)
    if (
        control is None
        and r.last_try_at is None
        and r.last_error is None
        and not r.done_handlers
        and r.headers is None
        and not r.history
    ):
        return ""
    texts = (
        None if r.last_try_at is None else str(us(r.last_try_at)),
        r.last_error,
        encode_handlers(r.done_handlers) if r.done_handlers else None,
        r.headers,
        encode_history(r.history) if r.history else None,
        control,
    )
    sizes = ",".join("" if text is None else str(_bytes(text)) for text in texts)
    return sizes + ":" + "".join(text for text in texts if text is not None)


def _control(r: JobRecord) -> str | None:
    """The queue, priority and unique key of a new job: None for the default
    queue and priority without a key, else ``<priority>,<bytes of the
    queue>,<1 with a key, 0 without>,<scope>,<unique_until in microseconds
    after created_at, or nothing>,<queue><key>``. The queue and the key go last, measured, since
    they may hold any character."""
    key = r.unique_key
    if key is None and r.queue == DEFAULT_QUEUE and r.priority == DEFAULT_PRIORITY:
        return None
    size = _bytes(r.queue)
    scope = "" if r.unique_scope is None else r.unique_scope.value
    # The period's end after creation, rebased on the server's clock like the due time.
    until = "" if r.unique_until is None else us(r.unique_until) - us(r.created_at)
    return f"{r.priority},{size},{int(key is not None)},{scope},{until},{r.queue}{key or ''}"


def _bytes(text: str) -> int:
    """The length of a text as the server counts it, in UTF-8 bytes. A text
    that cannot be encoded is measured all the same: it is refused when the
    call is sent."""
    return len(text.encode("utf-8", "surrogatepass"))


def _opt_dt(value: str | None) -> datetime | None:
    return None if value is None else moment(value)


def _priority(value: str | None) -> int:
    return DEFAULT_PRIORITY if value is None else int(value)


def _scope(value: str | None) -> UniqueScope | None:
    return None if value is None else UniqueScope(value)


def _done(text: str | None) -> tuple[str, ...]:
    if text is None:
        return ()
    handlers = json.loads(text)
    if not isinstance(handlers, list) or not all(isinstance(h, str) for h in handlers):
        raise ValueError(f"done handlers {text!r} are not a list of names")
    return tuple(handlers)
