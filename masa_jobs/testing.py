"""Test helpers for code that enqueues jobs: an inline mode and a manual mode.

Not imported by ``import masa_jobs``: tests import ``masa_jobs.testing``.
Both modes take the container that ``MasaApp.build(...)`` published and
override its ``job_manager`` and ``job_store`` providers for the duration of
a ``with`` block, so the static ``BackgroundJobManager`` facade and every
``Provide[Container.job_manager]`` injection reach the test double (the
facade resolves the provider on every call). No worker, no server.

- ``inline(container)``: ``enqueue`` runs the job at once, in the caller,
  with the real handler classes and their injected dependencies; a
  handler's exception raises from ``enqueue``, as it is. A delay is ignored:
  delayed jobs run at once too. Nothing is retried; the job is kept,
  finished, for ``get`` and ``wait``.
- ``manual(container)``: ``enqueue`` records the job in a memory store on a
  fake clock. ``drain()`` runs every job due now (retries included) and
  ``advance(delta)`` moves the clock, firing the cron ticks of recurring
  jobs on the way; ``assert_enqueued`` and friends look at what waits.

``manual_jobs_fixture`` and ``inline_jobs_fixture`` make pytest fixtures of
them for a ``conftest.py``. See docs/testing.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from typing import Any

from dependency_injector import providers

from ._testing_doubles import FakeClock, InlineJobs
from ._testing_manual import DrainResult, ManualJobs
from .app import MasaApp, find_jobs_container
from .exceptions import MasaNotBuiltError
from .manager import DefaultJobManager
from .stores.memory import MemoryJobStore

__all__ = [
    "DrainResult",
    "FakeClock",
    "InlineJobs",
    "ManualJobs",
    "inline",
    "inline_jobs_fixture",
    "manual",
    "manual_jobs_fixture",
]


# -- switching the modes on ------------------------------------------------------------


@contextmanager
def manual(
    container: Any = None, *, start: datetime | None = None, schedules: bool = True
) -> Iterator[ManualJobs]:
    """Record jobs instead of running them, on a fake clock starting at ``start`` (now).

    ``container`` is the one given to ``MasaApp.build`` (by default, the
    built one). Resolve the services under test inside the block: an object
    built before holds the real manager. The recurring jobs that classes
    declare fire as ``advance()`` passes their ticks, unless ``schedules`` is
    False (then only schedules the code adds while testing fire).
    """
    jobs_container = _built_jobs_container(container)
    recorded = ManualJobs(jobs_container, start, schedules=schedules)
    with _overridden(jobs_container, recorded.store, recorded.manager):
        yield recorded


@contextmanager
def inline(container: Any = None) -> Iterator[InlineJobs]:
    """Run each enqueued job at once, in the caller; a handler's error raises from enqueue.

    ``container`` is the one given to ``MasaApp.build`` (by default, the built one).
    """
    jobs_container = _built_jobs_container(container)
    inline_jobs = InlineJobs(jobs_container)
    with _overridden(jobs_container, inline_jobs.store, inline_jobs.manager):
        yield inline_jobs


def _built_jobs_container(container: Any) -> Any:
    """The job container of ``container``, which must be the built root."""
    root = MasaApp.root()  # MasaNotBuiltError, with its fix, before build
    jobs = find_jobs_container(root)
    if container is not None and find_jobs_container(container) is not jobs:
        raise MasaNotBuiltError(
            "masa_jobs.testing got a container that MasaApp.build(...) did not publish: "
            "pass the built container (or nothing, to use it), or build this one first "
            "(MasaApp.reset() between apps)"
        )
    return jobs


@contextmanager
def _overridden(
    jobs_container: Any, store: MemoryJobStore, manager: DefaultJobManager
) -> Iterator[None]:
    with ExitStack() as stack:
        stack.enter_context(jobs_container.job_store.override(providers.Object(store)))
        stack.enter_context(jobs_container.job_manager.override(providers.Object(manager)))
        yield


# -- pytest fixtures -------------------------------------------------------------------


def manual_jobs_fixture(
    container_factory: Callable[[], Any] | None = None,
    *,
    name: str = "jobs",
    start: datetime | None = None,
    schedules: bool = True,
) -> Any:
    """A pytest fixture (named ``name``) yielding ``ManualJobs``.

    ``start`` and ``schedules`` are ``manual()``'s; the container as in
    ``inline_jobs_fixture``.
    """
    import pytest

    @pytest.fixture(name=name)
    def fixture() -> Iterator[ManualJobs]:
        with (
            _app(container_factory) as container,
            manual(container, start=start, schedules=schedules) as jobs,
        ):
            yield jobs

    return fixture


def inline_jobs_fixture(
    container_factory: Callable[[], Any] | None = None, *, name: str = "jobs"
) -> Any:
    """A pytest fixture (named ``name``) yielding ``InlineJobs``.

    With ``container_factory``, each test builds a fresh container with it,
    publishes it with ``MasaApp.build`` and resets ``MasaApp`` afterwards;
    without it, the fixture uses the container the application already built.
    Assign it in a ``conftest.py``: ``jobs = inline_jobs_fixture(make_container)``.
    """
    import pytest

    @pytest.fixture(name=name)
    def fixture() -> Iterator[InlineJobs]:
        with _app(container_factory) as container, inline(container) as jobs:
            yield jobs

    return fixture


@contextmanager
def _app(container_factory: Callable[[], Any] | None) -> Iterator[Any]:
    if container_factory is None:
        yield MasaApp.root()
        return
    container = container_factory()
    MasaApp.build(container)
    try:
        yield container
    finally:
        MasaApp.reset()
