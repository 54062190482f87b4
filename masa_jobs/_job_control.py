"""Where a job waits, how urgent it is, and whether it may be stored twice.

The rules every entry point shares (``@job_options``, ``enqueue``, the
``queues`` option and the CLI): queue names, priorities, unique keys and
their scopes are checked here, before anything reaches a store, and a wrong
value raises ``InvalidJobOptionsError`` naming the fix.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from .exceptions import InvalidJobOptionsError
from .records import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    MAX_PRIORITY,
    MIN_PRIORITY,
    JobRecord,
    UniqueScope,
)

__all__ = [
    "ALL_QUEUES",
    "MAX_UNIQUE_KEY_LENGTH",
    "NO_CONTROL",
    "VALID_QUEUE",
    "JobControl",
    "QueuePlan",
    "UniqueKey",
    "asked_control",
    "check_priority",
    "check_queue",
    "check_scope_or_period",
    "check_unique_for",
    "check_unique_key",
    "check_unique_key_source",
    "check_unique_scope",
    "parse_queues",
    "placed",
    "positive_seconds",
    "unique_fields",
]

# Queue names travel in store keys, NOTIFY payloads, URLs and CLI arguments.
VALID_QUEUE = re.compile(r"^[A-Za-z0-9_.:\-]{1,100}$")
# Long enough for any composite of ids; short enough for a B-tree entry.
MAX_UNIQUE_KEY_LENGTH = 500
# The entry of the ``queues`` option that serves every queue.
ALL_QUEUES = "*"

UniqueKey = str | Callable[[Any], str]


@dataclass(frozen=True, slots=True)
class JobControl:
    """What ``@job_options`` set on an args class; None leaves the default."""

    timeout: float | None = None
    queue: str | None = None
    priority: int | None = None
    unique_key: UniqueKey | None = None
    unique_scope: UniqueScope | None = None
    unique_for: float | None = None


NO_CONTROL = JobControl()


def asked_control(
    queue: object,
    priority: object,
    unique_key: object,
    unique_scope: object,
    unique_for: object,
    where: str,
) -> JobControl:
    """What one enqueue call asked for, checked."""
    if (
        queue is None
        and priority is None
        and unique_key is None
        and unique_scope is None
        and unique_for is None
    ):
        return NO_CONTROL
    check_scope_or_period(unique_scope, unique_for, where)
    return JobControl(
        queue=None if queue is None else check_queue(queue, where),
        priority=None if priority is None else check_priority(priority, where),
        unique_key=None if unique_key is None else check_unique_key(unique_key, where),
        unique_scope=None if unique_scope is None else check_unique_scope(unique_scope, where),
        unique_for=None if unique_for is None else check_unique_for(unique_for, where),
    )


def check_scope_or_period(scope: object, period: object, where: str) -> None:
    """A key is held for a scope or for a period, never both."""
    if scope is not None and period is not None:
        raise InvalidJobOptionsError(
            f"{where}: pass unique_scope or unique_for, not both: unique_for holds the key "
            "for a period whatever the job's state"
        )


def placed(record: JobRecord, args: Any, declared: JobControl, asked: JobControl) -> JobRecord:
    """``record`` with the queue, priority and unique key that ``asked`` (one
    enqueue) or else ``declared`` (the args class) give it."""
    if declared is NO_CONTROL and asked is NO_CONTROL:
        return record
    where = f"enqueue of {record.name!r}"
    queue = asked.queue or declared.queue or DEFAULT_QUEUE
    priority = _first(asked.priority, declared.priority, DEFAULT_PRIORITY)
    key = asked.unique_key if asked.unique_key is not None else declared.unique_key
    if callable(key):
        key = _key_of(key, args, where)
    if asked.unique_scope is not None or asked.unique_for is not None:
        scope, period = asked.unique_scope, asked.unique_for
    else:
        scope, period = declared.unique_scope, declared.unique_for
    unique_key, unique_scope, unique_until = unique_fields(
        record.name, key, scope, period, record.created_at
    )
    return replace(
        record,
        queue=queue,
        priority=priority,
        unique_key=unique_key,
        unique_scope=unique_scope,
        unique_until=unique_until,
    )


def _first(*values: int | None) -> int:
    return next(value for value in values if value is not None)


def _key_of(make_key: Callable[[Any], str], args: Any, where: str) -> str:
    try:
        key = make_key(args)
    except Exception as exc:
        raise InvalidJobOptionsError(
            f"{where}: the unique_key function raised {type(exc).__name__}: {exc}; it must "
            "return a text built from the args"
        ) from exc
    return check_unique_key(key, where)


def check_queue(queue: object, where: str) -> str:
    if isinstance(queue, str) and VALID_QUEUE.match(queue):
        return queue
    raise InvalidJobOptionsError(
        f"{where}: queue {queue!r} is not a valid queue name: use 1-100 characters of "
        "letters, digits, '_', '.', ':' and '-', e.g. queue='critical'"
    )


def check_priority(priority: object, where: str) -> int:
    integral = isinstance(priority, int) and not isinstance(priority, bool)
    if integral and MIN_PRIORITY <= priority <= MAX_PRIORITY:  # type: ignore[operator]
        return priority  # type: ignore[return-value]
    raise InvalidJobOptionsError(
        f"{where}: priority {priority!r} is not a whole number from {MIN_PRIORITY} "
        f"(runs first) to {MAX_PRIORITY} (runs last)"
    )


def check_unique_key(key: object, where: str) -> str:
    if isinstance(key, str) and 0 < len(key) <= MAX_UNIQUE_KEY_LENGTH and "\x00" not in key:
        return key
    raise InvalidJobOptionsError(
        f"{where}: unique key {key!r} is not a text of 1-{MAX_UNIQUE_KEY_LENGTH} "
        "characters without NUL; build it from the args, e.g. f'report:{args.month}'"
    )


def check_unique_key_source(key: object, where: str) -> UniqueKey:
    """A unique key, or a function of the args that makes one."""
    if callable(key):
        return key
    return check_unique_key(key, where)


def check_unique_scope(scope: object, where: str) -> UniqueScope:
    try:
        checked = UniqueScope(str(scope))
        if checked is not UniqueScope.PERIOD:
            return checked
        raise ValueError(scope)
    except ValueError:
        names = ", ".join(repr(s.value) for s in UniqueScope if s is not UniqueScope.PERIOD)
        raise InvalidJobOptionsError(
            f"{where}: unique_scope {scope!r} is not one of {names}; for a period "
            "after enqueue pass unique_for=<seconds or timedelta> instead"
        ) from None


def positive_seconds(value: object) -> float | None:
    """``value`` in seconds when it is a positive, finite number of seconds or
    ``timedelta``; None for anything else (the caller raises its own error)."""
    seconds: float | None = None
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
        return None
    return seconds


def check_unique_for(period: object, where: str) -> float:
    seconds = positive_seconds(period)
    if seconds is None:
        raise InvalidJobOptionsError(
            f"{where}: unique_for {period!r} is not a positive number of seconds or a "
            "timedelta; pass e.g. 3600 or timedelta(hours=1)"
        )
    return seconds


def unique_fields(
    name: str,
    key: str | None,
    scope: UniqueScope | None,
    period: float | None,
    now: datetime,
) -> tuple[str | None, UniqueScope | None, datetime | None]:
    """The stored ``unique_key``, ``unique_scope`` and ``unique_until`` of a job.

    Keys are per job name (two jobs of different names never collide); a
    period makes the scope ``period``; without either, a key holds while the
    job is pending or running (``active``)."""
    if key is None:
        return None, None, None
    stored_key = f"{name}/{key}"
    if period is not None:
        return stored_key, UniqueScope.PERIOD, now + timedelta(seconds=period)
    return stored_key, scope or UniqueScope.ACTIVE, None


@dataclass(frozen=True, slots=True)
class QueuePlan:
    """The queues a worker serves, in the order it claims from them, each with
    its own cap on held jobs (None: only the worker's total applies).
    ``queues`` None serves every queue."""

    queues: tuple[str, ...] | None
    limits: tuple[int | None, ...] = ()

    @property
    def limited(self) -> bool:
        return any(limit is not None for limit in self.limits)


def parse_queues(entries: tuple[str, ...] | list[str]) -> QueuePlan:
    """``("critical:5", "default")`` as a plan; ``("*",)`` serves every queue.

    Raises ``InvalidJobOptionsError`` on a bad name, a bad limit, a repeated
    queue or ``*`` beside named queues."""
    where = "the queues option"
    if list(entries) == [ALL_QUEUES]:
        return QueuePlan(None)
    if not entries:
        raise InvalidJobOptionsError(
            f"{where} is empty: name at least one queue, e.g. 'default', or '*' for every queue"
        )
    names: list[str] = []
    limits: list[int | None] = []
    for entry in entries:
        name, _, limit_text = str(entry).strip().partition(":")
        if name == ALL_QUEUES:
            raise InvalidJobOptionsError(
                f"{where}: '*' serves every queue and stands alone; list named queues or '*'"
            )
        names.append(check_queue(name, where))
        limits.append(_queue_limit(name, limit_text, where) if limit_text else None)
    if len(set(names)) != len(names):
        raise InvalidJobOptionsError(f"{where} names a queue twice: {list(entries)!r}")
    return QueuePlan(tuple(names), tuple(limits))


def _queue_limit(name: str, text: str, where: str) -> int:
    try:
        limit = int(text)
    except ValueError:
        limit = 0
    if limit <= 0:
        raise InvalidJobOptionsError(
            f"{where}: {name}:{text} needs a positive number of jobs after the colon, "
            "e.g. 'critical:5'"
        )
    return limit
