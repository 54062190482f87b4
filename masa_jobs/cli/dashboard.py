"""``masa-jobs dashboard APP``: serve the operator dashboard of an application's store.

APP is loaded and built as for the operator commands (``jobs``, ``retry``
...): with ``disable_background_job`` forced on, so this process never runs
a worker or fires a recurring job; the dashboard's own lifespan opens and
closes the store. It answers requests from this machine only: to open it to
others, mount it in your application with an ``authorize`` hook.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from masa_jobs import MasaApp

from ._common import AppArgument, AppDirOption, CliError, fail, stderr_console
from ._operator import load_operator_app
from .worker import LogLevel

__all__ = ["dashboard"]

logger = logging.getLogger("masa_jobs.cli")

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
_EXTRA = "the dashboard needs its extra: pip install 'masa-jobs[dashboard]'"


def dashboard(
    app: AppArgument,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = DEFAULT_HOST,
    port: Annotated[int, typer.Option(min=0, max=65535, help="Port to listen on.")] = DEFAULT_PORT,
    read_only: Annotated[
        bool, typer.Option("--read-only", help="Show jobs but offer no action, refuse every POST.")
    ] = False,
    log_level: Annotated[
        LogLevel, typer.Option(case_sensitive=False, help="Log level of the server's log.")
    ] = LogLevel.INFO,
    app_dir: AppDirOption = Path("."),
) -> None:
    """Serve the operator dashboard of your application's store until Ctrl+C.

    Opens the store the workers use (MASA_JOBS_... variables and the
    MASA_JOBS_CONFIG file apply, as for the worker) and runs no worker. The
    dashboard answers requests from this machine only (127.0.0.1, ::1); to
    serve other users, mount dashboard(container, authorize=...) in your
    application instead.
    """
    try:
        import uvicorn

        from masa_jobs.dashboard import dashboard as make_dashboard
    except ImportError as exc:
        fail(f"{_EXTRA} ({exc})")
    try:
        load_operator_app(app, app_dir)
        served = make_dashboard(read_only=read_only)
    except CliError as exc:
        fail(str(exc))
    try:
        _warn_if_not_loopback(host)
        uvicorn.run(served, host=host, port=port, log_level=log_level.value)
    finally:
        MasaApp.reset()


def _warn_if_not_loopback(host: str) -> None:
    if host in ("127.0.0.1", "localhost", "::1"):
        return
    stderr_console().print(
        f"warning: listening on {host}, but the dashboard answers requests from this machine "
        "only (it has no authorize hook here); to serve other users, mount "
        "dashboard(container, authorize=...) in your application",
        markup=False,
    )
