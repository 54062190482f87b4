"""The measurements of ``masa-jobs bench``, each on a freshly built app.

Every phase builds its own container, so that one phase's jobs never slow
another down, and goes through the public path: ``MasaApp.build``,
``MasaApp.lifespan()``, the static facade and the container's ``job_manager``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from masa_jobs import BackgroundJobManager, JobManager, JobState, MasaApp
from masa_jobs.containers import BackgroundJobContainer
from masa_jobs.queries import EXACT_COUNT_LIMIT

from ._bench_build import BULK_CHUNK, built_app, fill
from ._bench_ceiling import CEILING_CHUNK, CommitCeiling, commit_ceiling
from ._bench_jobs import PROBE, NoOp
from ._bench_settings import BenchResult, BenchSettings
from ._bench_stores import bench_store
from ._common import CliError

__all__ = ["PICKUP_POLL_INTERVAL", "peak_rss_bytes", "pickup_samples", "run_bench", "run_timeout"]

# The pickup phase polls this rarely, so a fast pickup proves the wake-up
# signal works: a missed wake-up would show as a multi-second latency.
PICKUP_POLL_INTERVAL = 5.0
# Gives the worker time to record the previous job, so every pickup sample
# starts on an idle worker.
PICKUP_GAP_SECONDS = 0.001
# No phase should take longer than its jobs at this slow rate, plus a margin.
SLOWEST_CREDIBLE_RATE = 500.0
TIMEOUT_MARGIN_SECONDS = 10.0
# How often the untimed check after the end-to-end phase looks at the counts.
VERIFY_POLL_SECONDS = 0.01
_NO_OP = NoOp()


async def run_bench(settings: BenchSettings, backend: str) -> BenchResult:
    """Run every phase in turn; ``backend`` is the event loop's name, for the report."""
    result = BenchResult(settings, backend)
    async with commit_ceiling(settings.store) as ceiling:
        result.enqueue_single_per_s, result.enqueue_bulk_per_s = await _measure_enqueue(
            settings, ceiling
        )
        result.commit_ceiling_per_s = None if ceiling is None else ceiling.per_s
    result.end_to_end_seconds = await _measure_end_to_end(settings)
    result.end_to_end_per_s = settings.jobs / result.end_to_end_seconds
    result.pickup_ms = await _measure_pickup(settings)
    result.peak_rss_bytes = peak_rss_bytes()
    return result


@asynccontextmanager
async def _app(settings: BenchSettings, **options: Any) -> AsyncIterator[BackgroundJobContainer]:
    """A container on a fresh store namespace, built and published with MasaApp."""
    async with (
        bench_store(settings.store) as store,
        built_app(store, settings.worker_options(**options)) as container,
    ):
        yield container


def run_timeout(jobs: int) -> float:
    return jobs / SLOWEST_CREDIBLE_RATE + TIMEOUT_MARGIN_SECONDS


async def _measure_enqueue(
    settings: BenchSettings, ceiling: CommitCeiling | None
) -> tuple[float, float]:
    """Jobs per second through the static facade, one by one (alternating with
    the commits of the store's ``ceiling``, if it has one), then in bulk."""
    n = settings.jobs
    async with _app(settings, disable_background_job=True) as container:
        manager: JobManager = container.job_manager()
        async with MasaApp.lifespan():
            single = n / await _enqueue_singly(n, ceiling)
            chunks = [min(BULK_CHUNK, n - i) for i in range(0, n, BULK_CHUNK)]
            started = time.perf_counter()
            for size in chunks:
                await manager.enqueue_many([(_NO_OP, None)] * size)
            bulk = n / (time.perf_counter() - started)
    return single, bulk


async def _enqueue_singly(n: int, ceiling: CommitCeiling | None) -> float:
    """Seconds that ``n`` enqueues took, each awaited before the next. With a
    ``ceiling``, they run in chunks, each after as many of its commits: both
    figures then see the same moments of a machine whose load changes."""
    chunk = n if ceiling is None else CEILING_CHUNK
    seconds = 0.0
    for start in range(0, n, chunk):
        size = min(chunk, n - start)
        if ceiling is not None:
            await ceiling.commit(size)
        started = time.perf_counter()
        for _ in range(size):
            await BackgroundJobManager.enqueue(_NO_OP)
        seconds += time.perf_counter() - started
    return seconds


async def _measure_end_to_end(settings: BenchSettings) -> float:
    """Seconds from worker start until the handler ran for every queued job."""
    n = settings.jobs
    async with _app(settings, poll_interval=PICKUP_POLL_INTERVAL) as container:
        manager: JobManager = container.job_manager()
        # The jobs go in before the worker starts.
        await fill(container, n)
        all_ran = PROBE.expect(n)
        started = time.perf_counter()
        async with MasaApp.lifespan():
            with anyio.fail_after(run_timeout(n)):
                await all_ran.wait()
            elapsed = time.perf_counter() - started
            await _verify_succeeded(manager, n)
    return elapsed


async def _verify_succeeded(manager: JobManager, n: int) -> None:
    """Untimed check that every job is recorded as succeeded, not just run.

    A count above EXACT_COUNT_LIMIT may be an estimate: every job succeeded
    when none is in any other state (those counts are exact at zero)."""
    succeeded, elsewhere = 0, n
    with anyio.move_on_after(TIMEOUT_MARGIN_SECONDS):
        while elsewhere:
            counts = await manager.count()
            succeeded = counts[JobState.SUCCEEDED]
            elsewhere = sum(counts.values()) - succeeded
            if elsewhere:
                await anyio.sleep(VERIFY_POLL_SECONDS)
    if elsewhere or succeeded < min(n, EXACT_COUNT_LIMIT):
        raise CliError(f"only {succeeded} of {n} jobs were recorded as succeeded")


async def _measure_pickup(settings: BenchSettings) -> list[float]:
    """Milliseconds from enqueue until the handler runs, one job at a time."""
    async with _app(settings, poll_interval=PICKUP_POLL_INTERVAL), MasaApp.lifespan():
        return await pickup_samples(settings.latency_samples)


async def pickup_samples(count: int, queue: str | None = None) -> list[float]:
    """Time ``count`` single jobs (in ``queue``) on the running idle worker, in milliseconds."""
    samples: list[float] = []
    for _ in range(count):
        ran = PROBE.expect(1)
        started = time.perf_counter()
        await BackgroundJobManager.enqueue(_NO_OP, queue=queue)
        with anyio.fail_after(PICKUP_POLL_INTERVAL + TIMEOUT_MARGIN_SECONDS):
            await ran.wait()
        samples.append((PROBE.last_run_at - started) * 1000)
        await anyio.sleep(PICKUP_GAP_SECONDS)
    return samples


def peak_rss_bytes() -> int | None:
    """The process's peak resident set size, where the platform reports it."""
    if sys.platform == "win32":
        return None
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes.
    return peak if sys.platform == "darwin" else peak * 1024
