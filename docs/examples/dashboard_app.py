"""A FastAPI app with the operator dashboard mounted at /ops/jobs.

Run it with ``uvicorn dashboard_app:create_app --factory`` and open
http://127.0.0.1:8000/ops/jobs/ through the sign-on proxy.
"""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel
from starlette.requests import Request

from masa_jobs import BackgroundJob, MasaApp, job_name
from masa_jobs.dashboard import dashboard


@job_name("reports.build")
class BuildReport(BaseModel):
    month: str


class BuildReportJob(BackgroundJob[BuildReport]):
    async def execute(self, args: BuildReport) -> None:
        print(f"report for {args.month} built")


# The operators' e-mail addresses, as the single-sign-on proxy names them.
OPERATORS = frozenset(os.environ.get("OPERATORS", "ada@example.com").split(","))


def is_operator(request: Request) -> bool:
    """The users that the sign-on proxy in front of the app vouches for.

    The proxy sets X-Forwarded-Email after the login; the app must be
    reachable through the proxy only, or anyone could send that header.
    """
    return request.headers.get("x-forwarded-email", "") in OPERATORS


async def has_ops_scope(request: Request) -> bool:
    """The app's own login instead: Starlette's AuthenticationMiddleware on
    the app puts the user's scopes in the request, also under the mount."""
    return "ops" in getattr(request.scope.get("auth"), "scopes", ())


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with MasaApp.lifespan():  # opens the store (the dashboard's too), runs the worker
        yield


def create_app(config: dict[str, Any] | None = None, *, read_only: bool = False) -> FastAPI:
    container = BackgroundJobContainer()
    if config is not None:
        container.config.from_dict(config)
    MasaApp.build(container)
    app = FastAPI(lifespan=lifespan)
    app.mount("/ops/jobs", dashboard(container, authorize=is_operator, read_only=read_only))
    return app
