"""The deep-queue scenario: claim rate and pickup with a large backlog of due jobs.

Both measures run twice, each time on a fresh namespace: on an empty store,
then with ``deep_jobs`` due no-op jobs waiting in the default queue. The
claim rate is the time one in-process worker takes for the first N jobs of
the queue (on the empty store: N jobs queued alone); the pickup is timed on
single jobs of another queue, ``probe``, on a worker that serves only that
queue, while the backlog waits beside it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import anyio

from masa_jobs import MasaApp, MemoryJobStore
from masa_jobs.stores import Store

from ._bench_build import built_app, fill
from ._bench_jobs import PROBE
from ._bench_processes import RATIO_DIGITS
from ._bench_run import PICKUP_POLL_INTERVAL, pickup_samples, run_timeout
from ._bench_settings import BenchSettings
from ._bench_stats import latency_summary, percentile
from ._bench_stores import bench_store

__all__ = ["measure_deep"]

PROBE_QUEUE = "probe"


class _Namespace:
    """One fresh namespace: its store section, and the instance when in memory."""

    def __init__(self, section: Mapping[str, Any], settings: BenchSettings) -> None:
        self.section = section
        self.settings = settings
        # The in-memory store lives in its instance: every app of the run shares it.
        self.instance: Store | None = MemoryJobStore() if section["backend"] == "memory" else None

    def app(self, **options: Any) -> Any:
        return built_app(self.section, self.settings.worker_options(**options), self.instance)


async def measure_deep(settings: BenchSettings) -> dict[str, Any]:
    """The claim rate and pickup latency on an empty store, then with the backlog."""
    jobs = min(settings.jobs, settings.deep_jobs)
    # The empty store first: the backlog's writes (and its removal) leave the
    # server busy for a while, which must not slow the reference down.
    empty = await _measure(settings, 0, jobs)
    deep = await _measure(settings, settings.deep_jobs, jobs)
    return {
        "backlog": settings.deep_jobs,
        "jobs": jobs,
        "fill_jobs_per_s": round(deep["fill_jobs_per_s"]),
        "empty_jobs_per_s": round(empty["jobs_per_s"]),
        "deep_jobs_per_s": round(deep["jobs_per_s"]),
        "throughput_ratio": round(deep["jobs_per_s"] / empty["jobs_per_s"], RATIO_DIGITS),
        "pickup_ms": {
            "empty": latency_summary(empty["pickup"]),
            "deep": latency_summary(deep["pickup"]),
        },
        "pickup_p50_ratio": round(
            percentile(deep["pickup"], 50) / percentile(empty["pickup"], 50), RATIO_DIGITS
        ),
    }


async def _measure(settings: BenchSettings, backlog: int, jobs: int) -> dict[str, Any]:
    async with bench_store(settings.store) as section:
        space = _Namespace(section, settings)
        fill_rate = await _fill(space, backlog) if backlog else 0.0
        pickup = await _pickup(space)
        if not backlog:
            await _fill(space, jobs)
        seconds = await _run_first(space, jobs)
    return {"fill_jobs_per_s": fill_rate, "pickup": pickup, "jobs_per_s": jobs / seconds}


async def _fill(space: _Namespace, jobs: int) -> float:
    """Queue ``jobs`` due jobs in bulk; returns the rate."""
    async with space.app(disable_background_job=True) as container, MasaApp.lifespan():
        started = time.perf_counter()
        await fill(container, jobs)
        return jobs / (time.perf_counter() - started)


async def _pickup(space: _Namespace) -> list[float]:
    """Pickup samples of the probe queue, on a worker that serves it alone."""
    options = {"poll_interval": PICKUP_POLL_INTERVAL, "queues": [PROBE_QUEUE]}
    async with space.app(**options), MasaApp.lifespan():
        return await pickup_samples(space.settings.latency_samples, queue=PROBE_QUEUE)


async def _run_first(space: _Namespace, jobs: int) -> float:
    """Seconds from worker start until the handler ran for the first ``jobs`` jobs."""
    all_ran = PROBE.expect(jobs)
    async with space.app(poll_interval=PICKUP_POLL_INTERVAL):
        started = time.perf_counter()
        async with MasaApp.lifespan():
            with anyio.fail_after(run_timeout(jobs)):
                await all_ran.wait()
            return time.perf_counter() - started
