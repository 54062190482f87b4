"""``dashboard()``: the Starlette app, its routes, lifespan and error pages."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from ..exceptions import MasaJobsError, MasaNotBuiltError, StoreUnavailableError
from .actions import Actions
from .probes import Probes
from .render import Renderer
from .security import Authorize, CsrfSigner, Guard
from .source import ManagerSource
from .urls import PATHS
from .views import Pages

__all__ = ["dashboard"]


def dashboard(
    container: Any | None = None,
    *,
    authorize: Authorize | None = None,
    read_only: bool = False,
    csrf_secret: bytes | str | None = None,
) -> Starlette:
    """The operator dashboard of ``container``'s jobs, as an ASGI app.

    Mount it in your app (``app.mount("/jobs", dashboard(container))``), whose
    lifespan (``MasaApp.lifespan()``) opens the store; served alone, its own
    lifespan opens and closes the store (and runs no worker). ``container``
    None means the root container of ``MasaApp.build``; the job manager is
    resolved on every request.

    Without ``authorize`` only requests from this machine are answered;
    ``authorize(request)`` (sync or async) returning True lets a request in.
    ``read_only`` shows no action and refuses every POST. ``csrf_secret``
    signs the CSRF tokens: give every process the same one when several
    processes serve the dashboard (random per process by default).
    """
    source = ManagerSource(container)
    csrf = CsrfSigner(csrf_secret)
    renderer = Renderer(csrf=csrf, read_only=read_only)
    routes = _routes(source, renderer, csrf, read_only=read_only)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Runs only when the dashboard is the server's app: a mounted app's
        # lifespan is not run, and the application's own opens the store.
        store = source.store(source.manager())
        await store.open()
        try:
            yield
        finally:
            await store.aclose()

    async def masa_error(request: Request, exc: Exception) -> Response:
        return _error_page(renderer, request, exc)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return renderer.error(
            request, exc.status_code, _TITLES.get(exc.status_code, "Error"), exc.detail
        )

    return Starlette(
        routes=routes,
        middleware=[Middleware(Guard, authorize=authorize)],
        exception_handlers={MasaJobsError: masa_error, HTTPException: http_error},
        lifespan=lifespan,
    )


_TITLES = {400: "Bad request", 403: "Forbidden", 404: "Not found", 405: "Method not allowed"}


def _routes(
    source: ManagerSource, renderer: Renderer, csrf: CsrfSigner, *, read_only: bool
) -> list[BaseRoute]:
    pages = Pages(source, renderer)
    actions = Actions(source, renderer, csrf, read_only=read_only)
    probes = Probes(source)
    get, post = ["GET"], ["POST"]
    return [
        Route(PATHS["overview"], pages.overview, methods=get, name="overview"),
        Route(PATHS["jobs"], pages.jobs, methods=get, name="jobs"),
        Route(PATHS["job"], pages.job, methods=get, name="job"),
        Route(PATHS["job_action"], actions.job_action, methods=post, name="job_action"),
        Route(PATHS["bulk"], actions.confirm_bulk, methods=get, name="confirm_bulk"),
        Route(PATHS["bulk"], actions.bulk, methods=post, name="bulk"),
        Route(PATHS["schedules"], pages.schedules, methods=get, name="schedules"),
        Route(
            PATHS["schedule_action"], actions.schedule_action, methods=post, name="schedule_action"
        ),
        Route(PATHS["queues"], pages.queues, methods=get, name="queues"),
        Route(PATHS["queue_action"], actions.queue_action, methods=post, name="queue_action"),
        Route(PATHS["workers"], pages.workers, methods=get, name="workers"),
        Route(PATHS["health"], probes.health, methods=get, name="health"),
        Route(PATHS["metrics"], probes.metrics, methods=get, name="metrics"),
        Mount(
            PATHS["static"],
            app=StaticFiles(packages=[("masa_jobs.dashboard", "static")]),
            name="static",
        ),
    ]


def _error_page(renderer: Renderer, request: Request, exc: Exception) -> Response:
    """A readable page for a masa-jobs error that reached no view's own handling."""
    if isinstance(exc, StoreUnavailableError):
        return renderer.error(request, 503, "Store unavailable", f"{exc} Try again shortly.")
    if isinstance(exc, MasaNotBuiltError):
        return renderer.error(request, 500, "masa-jobs is not built", str(exc))
    return renderer.error(request, 500, f"masa-jobs error: {type(exc).__name__}", str(exc))
