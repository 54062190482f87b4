"""Prepare an application's container for ``masa-jobs worker``.

Order of precedence for settings: the container's own configuration, then
``MASA_JOBS_...`` environment variables, then command-line flags.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from dependency_injector import errors as di_errors
from dependency_injector import providers
from pydantic import ValidationError

from containers import ENV_PREFIX, load_env
from masa_jobs import BackgroundJobOptions, JobRegistry, MasaApp, MasaJobsError
from masa_jobs.app import find_jobs_container

from ._common import CliError, first_line

__all__ = ["WorkerSetup", "prepare_worker"]

logger = logging.getLogger("masa_jobs.cli")

_OPTIONS_MODEL = BackgroundJobOptions.__name__


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
    jobs = _jobs_container(container)
    _apply_settings(jobs, concurrency)
    _build(container)
    options: BackgroundJobOptions = jobs.options()
    if options.disable_background_job:
        raise CliError(
            "options.disable_background_job is true, so this process would run no worker; "
            f"set it to false for worker processes ({ENV_PREFIX}OPTIONS__DISABLE_BACKGROUND_JOB"
            "=false)"
        )
    registry: JobRegistry = jobs.job_registry()
    backend = getattr(jobs, "store_backend", None)
    return WorkerSetup(
        worker_id=jobs.worker().worker_id,
        store=str(backend()) if backend is not None else type(jobs.job_store()).__name__,
        handlers=sum(len(registry.handlers(name)) for name in registry.names()),
        job_names=len(registry.names()),
        concurrency=options.concurrency,
        shutdown_timeout=options.shutdown_timeout,
    )


def _jobs_container(container: Any) -> Any:
    try:
        return find_jobs_container(container)
    except TypeError as exc:
        raise CliError(str(exc)) from None


def _apply_settings(jobs: Any, concurrency: int | None) -> None:
    config = getattr(jobs, "config", None)
    if not isinstance(config, providers.Configuration):
        if concurrency is not None:
            raise CliError(
                "--concurrency needs a `config` Configuration provider on the jobs container; "
                "set options.concurrency in the container instead"
            )
        if any(key.startswith(ENV_PREFIX) for key in os.environ):
            logger.warning(
                "the jobs container has no `config` Configuration provider: "
                "%s... environment variables are ignored",
                ENV_PREFIX,
            )
        return
    try:
        load_env(config)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if concurrency is not None:
        config.from_dict({"options": {"concurrency": concurrency}})


def _build(container: Any) -> None:
    try:
        MasaApp.build(container)
    except ValidationError as exc:
        raise CliError(describe_validation_error(exc)) from None
    except (MasaJobsError, TypeError) as exc:
        raise CliError(first_line(str(exc))) from None
    except di_errors.Error as exc:
        raise CliError(
            f"the container cannot be built: {first_line(str(exc))}; provide the missing dependency"
        ) from None
    except Exception as exc:
        logger.debug("building the container failed", exc_info=True)
        raise CliError(
            f"building the container failed with {type(exc).__name__}: {first_line(str(exc))}; "
            "--log-level debug shows the traceback"
        ) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line per invalid field, naming the config key and the environment variable."""
    options = exc.title == _OPTIONS_MODEL
    problems = []
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"])
        where = f"options.{field}" if options else f"{exc.title}.{field}"
        problems.append(f"{where}: {error['msg']} (got {error.get('input')!r})")
    fix = (
        f"fix it in the container's config or in {ENV_PREFIX}OPTIONS__<NAME>"
        if options
        else "fix the container's configuration"
    )
    return f"invalid configuration: {'; '.join(problems)}; {fix}"
