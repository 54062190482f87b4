"""Which args type and which handlers belong to each job name.

The registry is MASA's ``BackgroundJobRelationNetwork``: it is built once at
start-up by each container and then only read, on the enqueue path and for
every job a worker runs. Without ``options.job_packages`` it holds every
imported concrete ``BackgroundJob`` (and ``BackgroundScheduleJob``) subclass;
with them, it imports those packages and holds only the classes defined in
them, so that two containers in one process keep their own handlers.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel

from ._job_control import VALID_QUEUE as _VALID_QUEUE
from .exceptions import DuplicateJobNameError, InvalidScheduleError, RegistryError
from .jobs import (
    BackgroundJob,
    BackgroundScheduleJob,
    get_handler_args_type,
    get_job_name,
    handler_name,
)
from .records import utcnow
from .schedules import declared_schedule, schedule_from_job

__all__ = ["JobRegistry", "import_job_packages"]

HandlerType = type[BackgroundJob[Any]]
ScheduleType = type[BackgroundScheduleJob]


class JobRegistry:
    """Maps job names to their args type and handler classes."""

    __slots__ = (
        "_args_by_name",
        "_declared_schedules",
        "_handlers_by_name",
        "_name_by_args",
        "_schedule_classes",
    )

    def __init__(
        self,
        handlers: Iterable[HandlerType] = (),
        schedule_classes: Iterable[ScheduleType] = (),
    ) -> None:
        args_by_name: dict[str, type[BaseModel]] = {}
        handlers_by_name: dict[str, list[HandlerType]] = {}
        for handler in handlers:
            args_type = _args_type_of(handler)
            name = get_job_name(args_type)
            known = args_by_name.setdefault(name, args_type)
            if known is not args_type:
                raise DuplicateJobNameError(
                    f"job name {name!r} is used by two args types: "
                    f"{_qualified(known)} and {_qualified(args_type)}; give one of them "
                    "another name with @job_name(...)"
                )
            bucket = handlers_by_name.setdefault(name, [])
            if handler not in bucket:
                bucket.append(handler)
        self._args_by_name = MappingProxyType(args_by_name)
        self._handlers_by_name = MappingProxyType(
            {name: tuple(found) for name, found in handlers_by_name.items()}
        )
        self._name_by_args = MappingProxyType({t: n for n, t in args_by_name.items()})
        self._schedule_classes = MappingProxyType(
            {handler_name(klass): _checked_schedule_class(klass) for klass in schedule_classes}
        )
        self._declared_schedules = MappingProxyType(
            _declared_schedules(self._schedule_classes.values())
        )

    @classmethod
    def discover(cls, job_packages: Iterable[str] = ()) -> JobRegistry:
        """The concrete handler and recurring-job classes of ``job_packages``.

        Imports each package with all its submodules and registers only the
        classes defined in them. Without packages, registers every concrete
        class imported so far in the process (the default, for apps that
        import their handlers before ``MasaApp.build``).
        """
        packages = tuple(job_packages)
        import_job_packages(packages)
        return cls(
            _defined_in(_concrete_subclasses(BackgroundJob), packages),
            _defined_in(_concrete_subclasses(BackgroundScheduleJob), packages),
        )

    def name_of(self, args_type: type[Any]) -> str | None:
        """The job name of a registered args type, or None."""
        return self._name_by_args.get(args_type)

    def args_type(self, name: str) -> type[BaseModel] | None:
        """The args type registered under ``name``, or None."""
        return self._args_by_name.get(name)

    def handlers(self, name: str) -> tuple[HandlerType, ...]:
        """The handler classes registered for ``name``, in registration order."""
        return self._handlers_by_name.get(name, ())

    def names(self) -> tuple[str, ...]:
        return tuple(self._args_by_name)

    def schedule_class(self, class_name: str) -> ScheduleType | None:
        """The recurring-job class of that ``module.QualName``, or None."""
        return self._schedule_classes.get(class_name)

    def schedule_classes(self) -> tuple[ScheduleType, ...]:
        return tuple(self._schedule_classes.values())

    def declared_schedules(self) -> Mapping[str, ScheduleType]:
        """Schedule id -> the class that declares it (``id`` and ``cron_expression``)."""
        return self._declared_schedules

    def handler_modules(self) -> tuple[str, ...]:
        """The modules defining handlers and recurring jobs (MasaApp wires them)."""
        modules = {h.__module__ for hs in self._handlers_by_name.values() for h in hs}
        modules.update(klass.__module__ for klass in self._schedule_classes.values())
        return tuple(sorted(modules))

    def __repr__(self) -> str:
        return f"JobRegistry(names={list(self._args_by_name)!r})"


def import_job_packages(job_packages: Iterable[str]) -> None:
    """Import each named package and, recursively, every module inside it."""
    for package_name in job_packages:
        try:
            package = importlib.import_module(package_name)
        except ImportError as exc:
            raise RegistryError(
                f"cannot import job package {package_name!r} named in options.job_packages: "
                f"{exc}; check the name and that it is importable (on sys.path)"
            ) from exc
        search_path = getattr(package, "__path__", None)
        if search_path is None:
            continue
        for module in pkgutil.walk_packages(search_path, prefix=f"{package.__name__}."):
            importlib.import_module(module.name)


def _concrete_subclasses(root: type[Any]) -> Iterator[type[Any]]:
    seen: set[type[Any]] = set()
    stack = list(reversed(root.__subclasses__()))
    while stack:
        klass = stack.pop()
        if klass in seen:
            continue
        seen.add(klass)
        stack.extend(reversed(klass.__subclasses__()))
        if inspect.isabstract(klass) or _is_generic_base(klass):
            continue
        # A class defined inside a function cannot be found by name from
        # another process, and tests define throw-away ones: register those
        # explicitly with JobRegistry([...]) instead.
        if "<locals>" in klass.__qualname__:
            continue
        yield klass


def _defined_in(classes: Iterable[type[Any]], packages: tuple[str, ...]) -> list[type[Any]]:
    """The ``classes`` whose module is one of ``packages`` or inside one (all when none)."""
    if not packages:
        return list(classes)
    # The dot keeps package "app.jobs" from taking the module "app.jobs_old".
    prefixes = tuple(f"{package}." for package in packages)
    return [
        klass
        for klass in classes
        if klass.__module__ in packages or klass.__module__.startswith(prefixes)
    ]


def _is_generic_base(klass: type[Any]) -> bool:
    """True for ``class Base(BackgroundJob[T])``: parametrised by a type variable only."""
    return bool(getattr(klass, "__parameters__", ())) and get_handler_args_type(klass) is None


def _args_type_of(handler: HandlerType) -> type[BaseModel]:
    if not (isinstance(handler, type) and issubclass(handler, BackgroundJob)):
        raise RegistryError(f"{handler!r} is not a BackgroundJob subclass")
    args_type = get_handler_args_type(handler)
    if args_type is None:
        raise RegistryError(
            f"handler {handler_name(handler)} does not say which args it takes: subclass "
            "BackgroundJob[YourArgs] or BackgroundJobBase[YourArgs] with a pydantic model"
        )
    if inspect.isabstract(handler):
        raise RegistryError(
            f"handler {handler_name(handler)} is abstract: implement "
            f"{', '.join(sorted(handler.__abstractmethods__))}"
        )
    return args_type


def _checked_schedule_class(klass: ScheduleType) -> ScheduleType:
    if not (isinstance(klass, type) and issubclass(klass, BackgroundScheduleJob)):
        raise RegistryError(f"{klass!r} is not a BackgroundScheduleJob subclass")
    if inspect.isabstract(klass):
        raise RegistryError(
            f"recurring job {handler_name(klass)} is abstract: implement "
            f"{', '.join(sorted(klass.__abstractmethods__))}"
        )
    if not _VALID_QUEUE.match(str(klass.queue)):
        raise InvalidScheduleError(
            f"recurring job {handler_name(klass)} declares queue {klass.queue!r}: use 1-100 "
            "letters, digits, '_', '.', ':' and '-', e.g. queue = 'reports'"
        )
    return klass


def _declared_schedules(classes: Iterable[ScheduleType]) -> dict[str, ScheduleType]:
    """Validate the schedules classes declare (id, cron, time zone), at build time."""
    now = utcnow()
    owners: dict[str, ScheduleType] = {}
    for klass in classes:
        if not declared_schedule(klass):
            continue
        schedule_id = schedule_from_job(klass, now, None).id
        other = owners.setdefault(schedule_id, klass)
        if other is not klass:
            raise InvalidScheduleError(
                f"recurring jobs {handler_name(other)} and {handler_name(klass)} both "
                f"declare id {schedule_id!r}: give each its own id"
            )
    return owners


def _qualified(klass: type[Any]) -> str:
    return f"{klass.__module__}.{klass.__qualname__}"
