"""Open an application's store for one operator command, with no worker running.

The operator commands (``jobs``, ``retry``, ``purge`` ...) load APP exactly
as ``masa-jobs worker`` does, so they see the store the workers use, but
build it with ``disable_background_job`` forced on: ``MasaApp.lifespan()``
then only opens and closes the store, and this process never claims a job
or fires a recurring one.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from dependency_injector import providers

from masa_jobs import BackgroundJobOptions, JobManager, MasaApp
from masa_jobs.stores.base import Store

from ._app_loader import load_container
from ._app_setup import apply_settings, build_app, jobs_container, store_name
from ._common import Backend, one_line_errors, run_async, stderr_console

__all__ = ["OperatorApp", "load_operator_app", "run_operation"]

T = TypeVar("T")

_ENQUEUE_ONLY = {"disable_background_job": True}


@dataclass(frozen=True, slots=True)
class OperatorApp:
    """What an operator command works with, the store open.

    ``job_store`` is the manager's store, for the few reads the manager has no
    method for (how many jobs a purge would remove).
    """

    manager: JobManager
    options: BackgroundJobOptions
    store: str
    job_store: Store


def run_operation(spec: str, app_dir: Path, operation: Callable[[OperatorApp], Awaitable[T]]) -> T:
    """Build APP without a worker, run ``operation`` inside ``MasaApp.lifespan()``.

    A problem the user can fix, or a ``MasaJobsError`` (a store that cannot be
    reached, an unknown id the operation did not handle), is one line on
    stderr and exit code 2.
    """
    with one_line_errors():
        target = load_operator_app(spec, app_dir)
        try:
            return run_async(partial(_in_lifespan, target, operation), Backend.ASYNCIO)
        finally:
            MasaApp.reset()


async def _in_lifespan(target: OperatorApp, operation: Callable[[OperatorApp], Awaitable[T]]) -> T:
    async with MasaApp.lifespan():
        return await operation(target)


def load_operator_app(spec: str, app_dir: Path) -> OperatorApp:
    """APP built without a worker (enqueue-only options), warning when its store is the
    memory store, which an operator command cannot share with the workers."""
    container = load_container(spec, app_dir)
    jobs = jobs_container(container)
    config = apply_settings(jobs)
    if config is not None:
        config.from_dict({"options": _ENQUEUE_ONLY})
    build_app(container)
    target = OperatorApp(
        jobs.job_manager(), _enqueue_only_options(jobs), store_name(jobs), jobs.job_store()
    )
    if target.store == "memory":
        stderr_console().print(
            "warning: the memory store keeps jobs inside the process that runs them, so this "
            "command sees an empty store; set store.backend (MASA_JOBS_STORE__BACKEND) to "
            "sqlite, postgres or redis, as for your workers",
            markup=False,
        )
    return target


def _enqueue_only_options(jobs: Any) -> BackgroundJobOptions:
    """The built options, overridden to enqueue-only where they do not come from config."""
    options: BackgroundJobOptions = jobs.options()
    if not options.disable_background_job:
        # A container whose `options` provider ignores config (or that has no
        # Configuration): MasaApp.lifespan() reads this provider, so override it.
        options = options.model_copy(update=_ENQUEUE_ONLY)
        jobs.options.override(providers.Object(options))
    return options
