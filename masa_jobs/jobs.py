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
import math
import re
from abc import ABC, abstractmethod
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, TypeVar, get_args, get_origin

from pydantic import BaseModel

from .exceptions import InvalidTimeoutError

__all__ = [
    "BackgroundJob",
    "BackgroundJobBase",
    "BackgroundScheduleJob",
    "get_handler_args_type",
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


def job_options(*, timeout: float | timedelta | None = None) -> Any:
    """Set what the jobs of an args class run with, beside their name.

    ``timeout`` (seconds or a ``timedelta``): a run that lasts longer is
    cancelled and counts as a failed attempt, retried by the retry policy;
    it overrides the ``job_timeout`` option and is overridden by
    ``enqueue(..., timeout=...)``. ::

        @job_options(timeout=30)
        class BuildReport(BaseModel):
            month: str
    """
    seconds = timeout_seconds(timeout, "@job_options(timeout=...)")

    def decorate(cls: TModel) -> TModel:
        if not (isinstance(cls, type) and issubclass(cls, BaseModel)):
            raise TypeError(f"@job_options decorates a pydantic model class, not {cls!r}")
        setattr(cls, _JOB_OPTIONS_ATTRIBUTE, (cls, seconds))
        return cls

    return decorate


def get_job_timeout(args_type: type[BaseModel]) -> float | None:
    """The timeout ``@job_options`` set on this args class (not inherited), or None."""
    pinned = args_type.__dict__.get(_JOB_OPTIONS_ATTRIBUTE)
    if pinned is not None and pinned[0] is args_type:
        return pinned[1]  # type: ignore[no-any-return]
    return None


def timeout_seconds(timeout: object, where: str) -> float | None:
    """A job timeout in seconds (None: none); ``ValueError`` for anything but a
    positive, finite number of seconds or ``timedelta``."""
    if timeout is None:
        return None
    seconds: float | None = None
    if isinstance(timeout, timedelta):
        seconds = timeout.total_seconds()
    elif isinstance(timeout, int | float) and not isinstance(timeout, bool):
        seconds = float(timeout)
    if seconds is None or not math.isfinite(seconds) or seconds <= 0:
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
