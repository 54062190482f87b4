"""Prepare an application's container for ``masa-jobs worker``.

Order of precedence for settings: the container's own configuration, then
``MASA_JOBS_...`` environment variables, then command-line flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from masa_jobs import BackgroundJobOptions, JobRegistry
from masa_jobs.containers import ENV_PREFIX

from ._app_setup import apply_settings, build_app, jobs_container, store_name
from ._common import CliError

__all__ = ["WorkerSetup", "prepare_worker"]


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What the start line reports and what the stop needs."""

    worker_id: str
    store: str
    handlers: int
    job_names: int
    concurrency: int
    shutdown_timeout: float


def prepare_worker(container: Any, concurrency: int | None) -> WorkerSetup:
    """Apply environment and flags, ``MasaApp.build`` the container, describe the worker."""
    jobs = jobs_container(container)
    _apply_settings(jobs, concurrency)
    build_app(container)
    options: BackgroundJobOptions = jobs.options()
    if options.disable_background_job:
        raise CliError(
            "options.disable_background_job is true, so this process would run no worker; "
            f"set it to false for worker processes ({ENV_PREFIX}OPTIONS__DISABLE_BACKGROUND_JOB"
            "=false)"
        )
    registry: JobRegistry = jobs.job_registry()
    return WorkerSetup(
        worker_id=jobs.worker().worker_id,
        store=store_name(jobs),
        handlers=sum(len(registry.handlers(name)) for name in registry.names()),
        job_names=len(registry.names()),
        concurrency=options.concurrency,
        shutdown_timeout=options.shutdown_timeout,
    )


def _apply_settings(jobs: Any, concurrency: int | None) -> None:
    config = apply_settings(jobs)
    if concurrency is None:
        return
    if config is None:
        raise CliError(
            "--concurrency needs a `config` Configuration provider on the jobs container; "
            "set options.concurrency in the container instead"
        )
    config.from_dict({"options": {"concurrency": concurrency}})
