"""Job handlers and job names.

A job is a pydantic model (its arguments) plus one or more handler classes
that subclass ``BackgroundJob[TheModel]``. The job's *name* is what the store
keeps, so that a worker in another process finds the args type and the
handlers again; it defaults to ``"<module>.<QualName>"`` of the args class and
can be pinned with ``@job_name("...")`` so that moving the class does not
orphan jobs already stored.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

from pydantic import BaseModel

from ._job_control import (
    NO_CONTROL,
    JobControl,
    UniqueKey,
    check_priority,
    check_queue,
    check_scope_or_period,
    check_unique_for,
    check_unique_key_source,
    check_unique_scope,
    positive_seconds,
)
from .exceptions import InvalidTimeoutError
from .records import DEFAULT_QUEUE, UniqueScope

__all__ = [
    "BackgroundJob",
    "BackgroundJobBase",
    "BackgroundScheduleJob",
    "get_handler_args_type",
    "get_job_control",
    "get_job_name",
    "get_job_timeout",
    "handler_name",
    "job_name",
    "job_options",
]

TArgs = TypeVar("TArgs", bound=BaseModel)
TModel = TypeVar("TModel", bound=type[BaseModel])

_JOB_NAME_ATTRIBUTE = "__masa_job_name__"
_JOB_OPTIONS_ATTRIBUTE = "__masa_job_options__"
# Names travel through stores, logs, URLs and CLI arguments: keep them plain.
_VALID_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")


def job_name(name: str) -> Any:
    """Pin the stored name of a job args class (MASA's ``BackgroundJobNameAttribute``).

    ::

        @job_name("register-user")
        class RegisterUser(BaseModel):
            name: str
    """
    if not isinstance(name, str) or not _VALID_NAME.match(name):
        raise ValueError(
            f"invalid job name {name!r}: use 1-200 characters of letters, digits, "
            "'_', '.', ':' and '-'"
        )

    def decorate(cls: TModel) -> TModel:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            raise TypeError(f"@job_name decorates a pydantic model class, not {cls!r}")
        # Stored in the class's own __dict__ so that subclasses do not inherit it.
        setattr(cls, _JOB_NAME_ATTRIBUTE, (cls, name))
        return cls

    return decorate


def job_options(
    *,
    timeout: float | timedelta | None = None,
    queue: str | None = None,
    priority: int | None = None,
    unique_key: UniqueKey | None = None,
    unique_scope: UniqueScope | str | None = None,
    unique_for: float | timedelta | None = None,
) -> Any:
    """Set what the jobs of an args class run with, beside their name; every
    one can be overridden per ``enqueue``.

    - ``timeout`` (seconds or a ``timedelta``): a run that lasts longer is
      cancelled and counts as a failed attempt, retried by the retry policy;
      it overrides the ``job_timeout`` option.
    - ``queue``: the queue the jobs wait in (default ``"default"``); only
      workers serving it run them (Hangfire's ``[Queue]``).
    - ``priority``: 0 (claimed first, the default) to 9 (last) within a queue.
    - ``unique_key``: a text, or a function of the args returning one; while
      a job of this name holds a key, enqueuing another with the same key
      returns the first job's id instead of storing a second job.
    - ``unique_scope``: how long the key is held: ``"active"`` (the default:
      until the job finishes), ``"pending"`` (until it starts running); or
      ``unique_for`` (seconds or a ``timedelta``): for that long after
      enqueue, whatever the job's state. ::

        @job_options(timeout=30, queue="reports", unique_key=lambda a: a.month)
        class BuildReport(BaseModel):
            month: str
    """
    where = "@job_options(...)"
    check_scope_or_period(unique_scope, unique_for, where)
    control = JobControl(
        timeout=timeout_seconds(timeout, "@job_options(timeout=...)"),
        queue=None if queue is None else check_queue(queue, where),
        priority=None if priority is None else check_priority(priority, where),
        unique_key=None if unique_key is None else check_unique_key_source(unique_key, where),
        unique_scope=None if unique_scope is None else check_unique_scope(unique_scope, where),
        unique_for=None if unique_for is None else check_unique_for(unique_for, where),
    )

    def decorate(cls: TModel) -> TModel:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            raise TypeError(f"@job_options decorates a pydantic model class, not {cls!r}")
        setattr(cls, _JOB_OPTIONS_ATTRIBUTE, (cls, control))
        return cls

    return decorate


def get_job_control(args_type: type[BaseModel]) -> JobControl:
    """What ``@job_options`` set on this args class (not inherited)."""
    pinned = args_type.__dict__.get(_JOB_OPTIONS_ATTRIBUTE)
    if pinned is not None and pinned[0] is args_type:
        return pinned[1]  # type: ignore[no-any-return]
    return NO_CONTROL


def get_job_timeout(args_type: type[BaseModel]) -> float | None:
    """The timeout ``@job_options`` set on this args class (not inherited), or None."""
    return get_job_control(args_type).timeout


def timeout_seconds(timeout: object, where: str) -> float | None:
    """A job timeout in seconds (None: none); ``ValueError`` for anything but a
    positive, finite number of seconds or ``timedelta``."""
    if timeout is None:
        return None
    seconds = positive_seconds(timeout)
    if seconds is None:
        raise InvalidTimeoutError(
            f"{where}: timeout {timeout!r} is not a positive number of seconds or a "
            "timedelta; pass e.g. 30 or timedelta(minutes=5), or None for no timeout"
        )
    return seconds


def get_job_name(args_type: type[BaseModel]) -> str:
    """The name a job of this args type is stored under."""
    pinned = args_type.__dict__.get(_JOB_NAME_ATTRIBUTE)
    if pinned is not None and pinned[0] is args_type:
        return str(pinned[1])
    return f"{args_type.__module__}.{args_type.__qualname__}"


def handler_name(handler_type: type[Any]) -> str:
    """The stable name of a handler class, kept in a job's list of finished handlers."""
    return f"{handler_type.__module__}.{handler_type.__qualname__}"


class BackgroundJob(ABC, Generic[TArgs]):
    """A handler for jobs whose arguments are ``TArgs`` (MASA's ``IBackgroundJob<TArgs>``).

    A new instance is built for every execution, so constructor dependencies
    (``@inject`` with ``Provide[...]``) come fresh from the root container.
    Several handler classes may serve one args type; each runs once per job,
    and on a retry only the ones that failed run again.
    """

    @abstractmethod
    async def execute(self, args: TArgs) -> None:
        """Do the work. Raise to have the job retried."""


class BackgroundJobBase(BackgroundJob[TArgs]):
    """A handler with hooks and a logger (MASA's ``BackgroundJobBase<TArgs>``).

    ``execute`` runs ``pre_execute``, ``executing`` and ``post_execute`` in
    that order; an exception in any of them fails this execution.
    """

    logger: ClassVar[logging.Logger] = logging.getLogger("masa_jobs.job")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.logger = logging.getLogger(f"{cls.__module__}.{cls.__qualname__}")

    async def execute(self, args: TArgs) -> None:
        await self.pre_execute(args)
        await self.executing(args)
        await self.post_execute(args)

    async def pre_execute(self, args: TArgs) -> None:
        """Runs before ``executing``; does nothing by default."""

    @abstractmethod
    async def executing(self, args: TArgs) -> None:
        """Do the work. Raise to have the job retried."""

    async def post_execute(self, args: TArgs) -> None:
        """Runs after ``executing`` succeeded; does nothing by default."""


class BackgroundScheduleJob(ABC):
    """A recurring job on a cron schedule (MASA's ``IBackgroundScheduleJob``).

    Declare ``id``, ``cron_expression`` and optionally ``timezone`` (an IANA
    name, UTC by default) as class attributes; a class that declares them is
    scheduled when a worker starts, and ``add_or_update_schedule`` adds or
    changes one at run time. Each tick becomes a job, retried like any other;
    a new instance is built for each (``@inject`` works as for handlers), and
    ``fire_at`` holds the tick it runs for.
    """

    # Plain attributes, not ClassVar: a class declares them, and an instance
    # passed to add_or_update_schedule may set its own.
    id: str
    cron_expression: str
    timezone: str = "UTC"
    #: The queue its ticks wait in (Hangfire's ``Queue`` of a recurring job).
    queue: str = DEFAULT_QUEUE
    #: The tick this execution runs for (UTC); set before ``execute``.
    fire_at: datetime | None = None

    @abstractmethod
    async def execute(self) -> None:
        """Do the work of one tick. Raise to have the tick retried."""


def get_handler_args_type(handler_type: type[Any]) -> type[BaseModel] | None:
    """The concrete args type a handler class was parametrised with, if any.

    Looks through the class and its ancestors for ``SomeHandlerBase[Model]``;
    a parameter that is still a type variable (a generic intermediate base)
    does not count.
    """
    for klass in handler_type.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            origin = get_origin(base)
            if not (isinstance(origin, type) and issubclass(origin, BackgroundJob)):
                continue
            params = get_args(base)
            if params and isinstance(params[0], type) and issubclass(params[0], BaseModel):
                return params[0]
    return None
