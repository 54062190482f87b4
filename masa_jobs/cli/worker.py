"""``masa-jobs worker APP``: run an application's worker until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import AsyncIterator
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Annotated

import anyio
import typer

from masa_jobs import MasaApp
from masa_jobs.stores import ASYNCIO_ONLY_BACKENDS

from ._app_loader import load_container
from ._common import (
    AppArgument,
    AppDirOption,
    Backend,
    BackendOption,
    CliError,
    fail,
    masa_error_in,
    run_async,
)
from ._worker_setup import WorkerSetup, check_memory_worker, prepare_worker

__all__ = ["worker"]

logger = logging.getLogger("masa_jobs.cli")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
# A second signal during the graceful stop cancels the running jobs at once
# (they are put back as due); the exit code then says the stop was forced.
FORCED_STOP_EXIT_CODE = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


def worker(
    app: AppArgument,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Jobs run at once; overrides options.concurrency."),
    ] = None,
    log_level: Annotated[
        LogLevel, typer.Option(case_sensitive=False, help="Log level of the stderr log.")
    ] = LogLevel.INFO,
    app_dir: AppDirOption = Path("."),
    backend: BackendOption = Backend.ASYNCIO,
) -> None:
    """Run the worker of your application's container until SIGINT or SIGTERM.

    Builds the container with MasaApp.build, which reads MASA_JOBS_...
    environment variables (e.g. MASA_JOBS_OPTIONS__CONCURRENCY=20) and the
    MASA_JOBS_CONFIG file under the container's own config, as in every
    process; refuses the memory store unless the app enqueues itself
    (recurring jobs, or jobs queued at import). Runs MasaApp.lifespan(), and
    on the first SIGINT/SIGTERM stops
    gracefully: no new jobs are claimed and running ones get
    options.shutdown_timeout to finish. A second signal stops at once; the
    interrupted jobs are put back as due.
    """
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr, format=LOG_FORMAT, force=True)
    try:
        setup = prepare_worker(load_container(app, app_dir), concurrency)
        if backend is not Backend.ASYNCIO and setup.store in ASYNCIO_ONLY_BACKENDS:
            raise CliError(
                f"the {setup.store} store's driver runs on asyncio only: drop --backend trio"
            )
        code = run_async(partial(_serve, setup), backend)
    except CliError as exc:
        fail(str(exc))
    except Exception as exc:
        # A store that cannot be reached (or a bad recurring job) is a
        # problem to state in one line, not a traceback.
        problem = masa_error_in(exc)
        if problem is None:
            raise
        fail(str(problem))
    raise typer.Exit(code)


async def _serve(setup: WorkerSetup) -> int:
    await check_memory_worker(setup, MasaApp.job_manager())
    forced = anyio.Event()
    # Signals are caught before the start line is logged, so a supervisor that
    # waits for that line can stop the worker without racing its set-up.
    with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with anyio.create_task_group() as tg:
            async with MasaApp.lifespan():
                _log_started(setup)
                received = await anext(signals)
                logger.info(
                    "received %s: stopping; running jobs get up to %g s (send it again to "
                    "stop at once)",
                    received.name,
                    setup.shutdown_timeout,
                )
                tg.start_soon(_force_stop_on_signal, signals, tg.cancel_scope, forced)
            tg.cancel_scope.cancel()
    if forced.is_set():
        logger.warning("masa-jobs worker %s stopped at once", setup.worker_id)
        return FORCED_STOP_EXIT_CODE
    logger.info("masa-jobs worker %s stopped gracefully", setup.worker_id)
    return 0


async def _force_stop_on_signal(
    signals: AsyncIterator[signal.Signals], scope: anyio.CancelScope, forced: anyio.Event
) -> None:
    received = await anext(signals)
    logger.warning("received %s while stopping: cancelling running jobs", received.name)
    forced.set()
    scope.cancel()


def _log_started(setup: WorkerSetup) -> None:
    handlers = "handler" if setup.handlers == 1 else "handlers"
    names = "job name" if setup.job_names == 1 else "job names"
    logger.info(
        "masa-jobs worker %s started: store %s, %d %s for %d %s, concurrency %d",
        setup.worker_id,
        setup.store_line,
        setup.handlers,
        handlers,
        setup.job_names,
        names,
        setup.concurrency,
    )
    if not setup.handlers:
        logger.warning(
            "no job handlers are registered: import their modules from the APP module, "
            "or list their packages in options.job_packages (which then limits the "
            "handlers to what those packages define)"
        )
