"""Time worker processes through a queued batch, counting in the store.

The jobs run in other processes, so the only witness is the store: its
counts by state are polled until no job is pending or processing. The queue
is paused while the jobs go in and the processes start, so the time runs
from the resume, with every process up and idle, to the poll that finds the
batch done.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import anyio

from masa_jobs import JobManager, JobState, MasaApp
from masa_jobs.queries import EXACT_COUNT_LIMIT
from masa_jobs.records import DEFAULT_QUEUE

from ._bench_build import built_app, fill
from ._bench_fleet import WorkerFleet, worker_fleet
from ._bench_settings import StoreChoice
from ._bench_stores import bench_store

__all__ = ["Disturbance", "Drained", "drain", "fleet_run", "paused_batch"]

# Counting competes with the workers for the store (on PostgreSQL a count
# reads up to 10,000 index entries per state), so the counts are polled at a
# quarter of the time the batch seems to need still, within these bounds:
# every 20 ms near the end, for a sharp finish, at most every half second.
MIN_POLL_SECONDS = 0.02
MAX_POLL_SECONDS = 0.5
POLL_FRACTION_OF_REMAINING = 0.25
# States a job can still leave: the batch is done when none is in them.
ACTIVE_STATES = (JobState.SCHEDULED, JobState.ENQUEUED, JobState.PROCESSING)
# No run should be slower than its jobs at this rate, plus a margin.
SLOWEST_CREDIBLE_RATE = 100.0
TIMEOUT_MARGIN_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Drained:
    """How long the batch took, and how many of its jobs did not succeed."""

    jobs: int
    seconds: float
    lost: int

    @property
    def jobs_per_s(self) -> float:
        return self.jobs / self.seconds


async def drain(manager: JobManager, jobs: int) -> Drained:
    """Resume the default queue and wait until none of its ``jobs`` is active."""
    started = time.perf_counter()
    await manager.resume_queue(DEFAULT_QUEUE)
    counts = await manager.count()
    # A job still active at the deadline is stuck: it counts as lost.
    with anyio.move_on_after(jobs / SLOWEST_CREDIBLE_RATE + TIMEOUT_MARGIN_SECONDS):
        while active := sum(counts[state] for state in ACTIVE_STATES):
            await anyio.sleep(_poll_delay(jobs, active, time.perf_counter() - started))
            counts = await manager.count()
    seconds = time.perf_counter() - started
    return Drained(jobs, seconds, _lost(counts, jobs))


def _poll_delay(jobs: int, active: int, elapsed: float) -> float:
    """A fraction of the time the ``active`` jobs need at the rate so far."""
    done = jobs - active
    if done <= 0:
        return MIN_POLL_SECONDS
    remaining = active * elapsed / done
    return min(max(remaining * POLL_FRACTION_OF_REMAINING, MIN_POLL_SECONDS), MAX_POLL_SECONDS)


def _lost(counts: dict[JobState, int], jobs: int) -> int:
    """Jobs of the batch that did not end succeeded.

    A count up to EXACT_COUNT_LIMIT is exact on every store, so below it a
    missing job shows as ``jobs - succeeded``; above it PostgreSQL may give an
    estimate of the succeeded ones, and only the other states (exact while
    small) can tell."""
    succeeded = counts[JobState.SUCCEEDED]
    others = sum(counts.values()) - succeeded
    if succeeded <= EXACT_COUNT_LIMIT:
        return max(jobs - succeeded, others)
    return others


@asynccontextmanager
async def paused_batch(
    store: StoreChoice, jobs: int
) -> AsyncIterator[tuple[dict[str, Any], JobManager]]:
    """A fresh namespace holding ``jobs`` no-op jobs in the paused default queue,
    and an enqueue-only manager on it (its store open) to count them."""
    async with (
        bench_store(store) as section,
        built_app(section, {"disable_background_job": True}) as container,
        MasaApp.lifespan(),
    ):
        manager: JobManager = container.job_manager()
        await manager.pause_queue(DEFAULT_QUEUE)
        await fill(container, jobs)
        yield section, manager


Disturbance = Callable[[WorkerFleet], Coroutine[Any, Any, None]]


async def fleet_run(
    store: StoreChoice,
    jobs: int,
    processes: int,
    options: Mapping[str, Any],
    backend: str,
    disturb: Disturbance | None = None,
) -> Drained:
    """``jobs`` through ``processes`` worker processes, ``disturb`` running alongside."""
    async with paused_batch(store, jobs) as (section, manager):
        with worker_fleet(section, options, backend) as fleet:
            fleet.start(processes)
            try:
                await fleet.wait_ready()
                async with anyio.create_task_group() as tg:
                    if disturb is not None:
                        tg.start_soon(disturb, fleet)
                    drained = await drain(manager, jobs)
                    tg.cancel_scope.cancel()
            finally:
                await fleet.stop()
    return drained
