"""Configure and build an application's container for a command that works on it.

Shared by ``masa-jobs worker`` and the operator commands (``jobs``, ``retry``
...), so that both read the same store as the application's other processes:
``MasaApp.build`` applies the defaults, the ``MASA_JOBS_CONFIG`` file and the
``MASA_JOBS_...`` variables under the container's own configuration, exactly
as in a web process; command-line flags go on top.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dependency_injector import errors as di_errors
from dependency_injector import providers
from pydantic import ValidationError

from masa_jobs import BackgroundJobOptions, MasaApp, MasaJobsError
from masa_jobs.app import build_logger, find_jobs_container
from masa_jobs.containers import ENV_PREFIX

from ._common import CliError, first_line

__all__ = [
    "apply_settings",
    "build_app",
    "describe_validation_error",
    "jobs_container",
    "store_name",
]

logger = logging.getLogger("masa_jobs.cli")

_OPTIONS_MODEL = BackgroundJobOptions.__name__


def jobs_container(container: Any) -> Any:
    """The container itself, or its one background-jobs sub-container."""
    try:
        return find_jobs_container(container)
    except TypeError as exc:
        raise CliError(str(exc)) from None


def apply_settings(jobs: Any) -> providers.Configuration | None:
    """The jobs container's config, for the command-line flags to go on top; None without one.

    The environment is not merged here: ``MasaApp.build`` puts it (and the
    ``MASA_JOBS_CONFIG`` file) under the values the code set, as in every
    other process, and warns when there is no ``config`` to put it in.
    """
    config = getattr(jobs, "config", None)
    return config if isinstance(config, providers.Configuration) else None


def build_app(container: Any) -> None:
    """``MasaApp.build(container)``, with every failure as a one-line ``CliError``.

    An enqueue-only build on the memory store is accepted: the operator
    commands build so on purpose (and warn), and ``masa-jobs worker`` refuses
    ``disable_background_job`` and an idle memory store itself.
    """
    try:
        with _without_build_line():
            MasaApp.build(container, allow_memory_without_worker=True)
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
            "`masa-jobs worker APP --log-level debug` shows the traceback"
        ) from None


@contextmanager
def _without_build_line() -> Iterator[None]:
    """The commands say which store they use themselves, and an error must stay one line."""
    saved = build_logger.level
    build_logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        build_logger.setLevel(saved)


def store_name(jobs: Any) -> str:
    """The configured store backend (``sqlite`` ...), or the store's class name."""
    backend = getattr(jobs, "store_backend", None)
    return str(backend()) if backend is not None else type(jobs.job_store()).__name__


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
