"""Prepare an application's container for ``masa-jobs worker``.

Order of precedence for settings, as in every process: the defaults, the
``MASA_JOBS_CONFIG`` file, ``MASA_JOBS_...`` environment variables, the
container's own configuration (its code); command-line flags on top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from masa_jobs import BackgroundJobOptions, JobManager, JobRegistry
from masa_jobs._observe import metrics_installed
from masa_jobs.app import describe_store, is_memory_store
from masa_jobs.containers import ENV_PREFIX

from ._app_setup import apply_settings, build_app, jobs_container, store_name
from ._common import CliError

__all__ = ["WorkerSetup", "check_memory_worker", "check_metrics_flag", "prepare_worker"]


@dataclass(frozen=True, slots=True)
class WorkerSetup:
    """What the start line reports and what the stop needs."""

    worker_id: str
    store: str
    store_line: str
    handlers: int
    job_names: int
    concurrency: int
    shutdown_timeout: float
    queues: tuple[str, ...] = ("default",)
    # On the memory store: whether the app declares recurring jobs (which enqueue).
    memory_store: bool = False
    declares_schedules: bool = False
    # options.log_format: how the log is written unless --log-format says.
    log_format: str = "text"


def check_metrics_flag(metrics_port: int | None) -> None:
    """Refuse ``--metrics-port`` without prometheus-client, before building anything."""
    if metrics_port is not None and not metrics_installed():
        raise CliError(
            "--metrics-port needs prometheus-client, which is not installed: "
            "pip install 'masa-jobs[metrics]'"
        )


def prepare_worker(
    container: Any,
    concurrency: int | None,
    *,
    metrics_port: int | None = None,
    queues: str | None = None,
) -> WorkerSetup:
    """Apply environment and flags, ``MasaApp.build`` the container, describe the worker."""
    jobs = jobs_container(container)
    _apply_settings(jobs, concurrency, queues)
    build_app(container)
    options: BackgroundJobOptions = jobs.options()
    _check_options(options, metrics_port)
    registry: JobRegistry = jobs.job_registry()
    return WorkerSetup(
        worker_id=jobs.worker().worker_id,
        store=store_name(jobs),
        store_line=_store_line(jobs),
        handlers=sum(len(registry.handlers(name)) for name in registry.names()),
        job_names=len(registry.names()),
        concurrency=options.concurrency,
        queues=options.queues,
        shutdown_timeout=options.shutdown_timeout,
        memory_store=is_memory_store(jobs.job_store()),
        declares_schedules=bool(registry.declared_schedules()),
        log_format=options.log_format,
    )


def _check_options(options: BackgroundJobOptions, metrics_port: int | None) -> None:
    if options.disable_background_job:
        raise CliError(
            "options.disable_background_job is true, so this process would run no worker; "
            f"set it to false for worker processes ({ENV_PREFIX}OPTIONS__DISABLE_BACKGROUND_JOB"
            "=false)"
        )
    if metrics_port is not None and not options.metrics:
        raise CliError(
            "--metrics-port serves the metrics, but options.metrics is false, so none are "
            f"counted; set it to true ({ENV_PREFIX}OPTIONS__METRICS=true) or drop --metrics-port"
        )


def _store_line(jobs: Any) -> str:
    """``sqlite (SqliteJobStore(path=...))``: the backend, and where, without a password."""
    name = store_name(jobs)
    store = jobs.job_store()
    return name if is_memory_store(store) else f"{name} ({describe_store(store)})"


async def check_memory_worker(setup: WorkerSetup, manager: JobManager) -> None:
    """Refuse a worker on the memory store that nothing could ever give a job.

    Its jobs live in this process: no web process or script can enqueue to it.
    It is useful only when the app enqueues itself: recurring jobs, or jobs
    already in its store when it starts (enqueued by the APP module).
    """
    if not setup.memory_store or setup.declares_schedules:
        return
    if any((await manager.count()).values()) or await manager.list_schedules():
        return
    raise CliError(
        "the store is the in-memory one, whose jobs live inside this worker process: no other "
        "process (a web app, a script) can enqueue to it, and this app enqueues nothing itself "
        f"(no recurring jobs, no queued jobs); set store.backend ({ENV_PREFIX}STORE__BACKEND) "
        "to sqlite, postgres or redis, the same as in the processes that enqueue"
    )


def _apply_settings(jobs: Any, concurrency: int | None, queues: str | None) -> None:
    config = apply_settings(jobs)
    flags: dict[str, Any] = {}
    if concurrency is not None:
        flags["concurrency"] = concurrency
    if queues is not None:
        flags["queues"] = queues
    if not flags:
        return
    if config is None:
        names = " and ".join(f"--{name}" for name in flags)
        raise CliError(
            f"{names} need a `config` Configuration provider on the jobs container; "
            "set the options in the container instead"
        )
    config.from_dict({"options": flags})
