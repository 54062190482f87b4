"""``masa-jobs worker APP``: run an application's worker until SIGINT or SIGTERM."""

from __future__ import annotations

import logging
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Annotated

import anyio
import typer

from masa_jobs import MasaApp
from masa_jobs.logs import configure_logging
from masa_jobs.stores import ASYNCIO_ONLY_BACKENDS

from ._app_loader import load_container
from ._common import (
    AppArgument,
    AppDirOption,
    Backend,
    BackendOption,
    CliError,
    one_line_errors,
    run_async,
)
from ._worker_setup import WorkerSetup, check_memory_worker, check_metrics_flag, prepare_worker

__all__ = ["worker"]

logger = logging.getLogger("masa_jobs.cli")

# Metrics stay on this machine unless the operator says otherwise: they name
# job types and queue sizes.
DEFAULT_METRICS_HOST = "127.0.0.1"
# A second signal during the graceful stop cancels the running jobs at once
# (they are put back as due); the exit code then says the stop was forced.
FORCED_STOP_EXIT_CODE = 1
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class LogLevel(StrEnum):
    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


def worker(
    app: AppArgument,
    concurrency: Annotated[
        int | None,
        typer.Option(min=1, help="Jobs run at once; overrides options.concurrency."),
    ] = None,
    queues: Annotated[
        str | None,
        typer.Option(
            help="Queues served, in the order claimed from, e.g. critical:5,default "
            "(name:N holds at most N jobs of that queue; * serves every queue); "
            "overrides options.queues.",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        LogLevel, typer.Option(case_sensitive=False, help="Log level of the stderr log.")
    ] = LogLevel.INFO,
    log_format: Annotated[
        LogFormat | None,
        typer.Option(
            case_sensitive=False,
            help="text lines, or one JSON object a line; overrides options.log_format.",
            show_default=False,
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=0,
            max=65535,
            help="Serve Prometheus metrics at http://HOST:PORT/metrics (0: a free port); "
            "needs the metrics extra.",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address the metrics server listens on.")
    ] = DEFAULT_METRICS_HOST,
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
    level = log_level.upper()
    configure_logging(log_format.value if log_format else "text", level=level)
    with one_line_errors():
        check_metrics_flag(metrics_port)
        setup = prepare_worker(
            load_container(app, app_dir), concurrency, metrics_port=metrics_port, queues=queues
        )
        if log_format is None and setup.log_format == LogFormat.JSON:
            configure_logging("json", level=level)
        if backend is not Backend.ASYNCIO and setup.store in ASYNCIO_ONLY_BACKENDS:
            raise CliError(
                f"the {setup.store} store's driver runs on asyncio only: drop --backend trio"
            )
        metrics = None if metrics_port is None else (metrics_host, metrics_port)
        code = run_async(partial(_serve, setup, metrics), backend)
    raise typer.Exit(code)


async def _serve(setup: WorkerSetup, metrics: tuple[str, int] | None) -> int:
    await check_memory_worker(setup, MasaApp.job_manager())
    forced = anyio.Event()
    # Signals are caught before the start line is logged, so a supervisor that
    # waits for that line can stop the worker without racing its set-up.
    with anyio.open_signal_receiver(*STOP_SIGNALS) as signals:
        async with AsyncExitStack() as stack:
            if metrics is not None:
                await _serve_metrics(stack, *metrics)
            await _run_until_signal(setup, signals, forced)
    if forced.is_set():
        logger.warning("masa-jobs worker %s stopped at once", setup.worker_id)
        return FORCED_STOP_EXIT_CODE
    logger.info("masa-jobs worker %s stopped gracefully", setup.worker_id)
    return 0


async def _serve_metrics(stack: AsyncExitStack, host: str, port: int) -> None:
    """Serve /metrics until the stack closes; a port that cannot be bound is a usage error."""
    from masa_jobs._metrics_http import serve_metrics

    try:
        address = await stack.enter_async_context(serve_metrics(MasaApp.job_manager(), host, port))
    except OSError as exc:
        raise CliError(
            f"cannot serve metrics on {host}:{port} ({exc.strerror or exc}); "
            "choose another --metrics-port or --metrics-host"
        ) from None
    logger.info("metrics at http://%s:%d/metrics", *address)


async def _run_until_signal(
    setup: WorkerSetup, signals: AsyncIterator[signal.Signals], forced: anyio.Event
) -> None:
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
        "masa-jobs worker %s started: store %s, %d %s for %d %s, concurrency %d, queues %s",
        setup.worker_id,
        setup.store_line,
        setup.handlers,
        handlers,
        setup.job_names,
        names,
        setup.concurrency,
        ",".join(setup.queues),
    )
    if not setup.handlers:
        logger.warning(
            "no job handlers are registered: import their modules from the APP module, "
            "or list their packages in options.job_packages (which then limits the "
            "handlers to what those packages define)"
        )
