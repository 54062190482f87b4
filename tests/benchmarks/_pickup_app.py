"""The worker side of ``tests.benchmarks.pickup_breakdown``: a no-op job that
reports, over UDP, when each step of its pickup happened in this process.

Importing this module wraps the steps it times (the store's wake-up, its
claim, the executor's run): only the benchmark's worker process imports it.
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any

from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJob, job_name
from masa_jobs.executor import JobExecutor

__all__ = ["REPORT_PORT_VARIABLE", "container", "stamped"]

# The UDP port on 127.0.0.1 where the benchmark listens for the reports.
REPORT_PORT_VARIABLE = "PICKUP_REPORT_PORT"
# Moments (time.time()) of the job being picked up, by step; one job at a time.
_MOMENTS: dict[str, float] = {}
_SOCKET = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)


def stamped(
    key: str, call: Callable[..., Awaitable[Any]], moments: dict[str, float] = _MOMENTS
) -> Callable[..., Awaitable[Any]]:
    """``call``, noting in ``moments`` when its latest call began (``key``) and
    ended (``key_end``): of the claims, the last before the handler is the
    one that took the job. The enqueuing process notes its own in its dict."""

    @functools.wraps(call)
    async def noted(*args: Any, **kwargs: Any) -> Any:
        moments[key] = time.time()
        result = await call(*args, **kwargs)
        moments[f"{key}_end"] = time.time()
        return result

    return noted


def _stamp_the_store(backend: str) -> None:
    """The store's claim, and the moment its wait learns of the job: Redis's
    BLPOP (with the claim behind it) returns; PostgreSQL's LISTEN connection
    hears the NOTIFY."""
    if backend == "redis":
        from masa_jobs.stores import redis

        redis.blpop_then_claim = stamped("woken", redis.blpop_then_claim)  # type: ignore[attr-defined,assignment]
        redis.RedisJobStore.claim = stamped("claim", redis.RedisJobStore.claim)  # type: ignore[method-assign,assignment]
    elif backend == "postgres":
        from masa_jobs.stores._postgres_wakeup import WakeUps
        from masa_jobs.stores.postgres import PostgresJobStore

        notified = WakeUps._notified

        def heard(self: WakeUps, *args: Any) -> None:
            _MOMENTS["woken"] = _MOMENTS["woken_end"] = time.time()
            notified(self, *args)

        WakeUps._notified = heard  # type: ignore[method-assign,assignment]
        PostgresJobStore.claim = stamped("claim", PostgresJobStore.claim)  # type: ignore[method-assign,assignment]


_stamp_the_store(os.environ.get("MASA_JOBS_STORE__BACKEND", ""))
JobExecutor.run = stamped("run", JobExecutor.run)  # type: ignore[method-assign,assignment]


@job_name("bench.pickup")
class Pickup(BaseModel):
    """No arguments: the figure is the framework's path, not the job's."""


class PickupJob(BackgroundJob[Pickup]):
    async def execute(self, args: Pickup) -> None:
        _MOMENTS["handler"] = time.time()
        port = int(os.environ[REPORT_PORT_VARIABLE])
        report = " ".join(f"{key}={at!r}" for key, at in _MOMENTS.items())
        _SOCKET.sendto(report.encode(), ("127.0.0.1", port))
        _MOMENTS.clear()


container = BackgroundJobContainer()
