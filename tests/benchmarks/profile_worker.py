"""Where a worker's time goes: one run of no-op jobs under cProfile.

Run from the repository root::

    .venv/bin/python -m tests.benchmarks.profile_worker [--store postgres] [--jobs 100000]
        [--concurrency 10] [--batch-size 30] [--top 40] [--sort tottime] [--no-profile]
    .venv/bin/python -m tests.benchmarks.profile_worker --commit-ceiling [--jobs 10000]

The first form queues ``--jobs`` no-op jobs in a fresh namespace of the
store (untimed), then starts a worker and profiles this process until every
job ran: the claim loop, the consumers, the outcome flusher and the store's
driver all run on this event loop, so the profile is the worker's. It
prints the jobs per second (lower than ``masa-jobs bench`` says: the
profiler slows every Python call) and the top entries. ``--no-profile``
times the same run without the profiler.

``--commit-ceiling`` measures only what one asyncpg connection commits on
this machine: a loop of single-row INSERTs, each its own transaction
(autocommit), of a job-sized row. ``masa-jobs bench --store postgres``
measures the same (``masa_jobs.cli._bench_ceiling``) beside its single
enqueue, which is one such commit per job: this is its ceiling.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from typing import Any
from uuid import uuid4

import anyio
from masa_jobs.containers import BackgroundJobContainer

from masa_jobs import JobManager, MasaApp
from masa_jobs.cli._bench_ceiling import postgres_commit_ceiling
from masa_jobs.cli._bench_jobs import PROBE, NoOp
from masa_jobs.stores import backend_named

# Jobs per enqueue_many call while queueing (untimed).
QUEUE_CHUNK = 1000
# The worker polls this rarely: the run is woken by its own claims.
POLL_INTERVAL = 5.0
# Give up on a run that does not finish at this slow rate (plus a margin).
SLOWEST_CREDIBLE_RATE = 200.0
TIMEOUT_MARGIN_SECONDS = 30.0


async def profile_run(args: argparse.Namespace) -> None:
    async with backend_named(args.store).scratch(f"masa_prof_{uuid4().hex[:10]}") as store:
        container = BackgroundJobContainer()
        container.config.from_dict(
            {
                "store": store,
                "options": {
                    "concurrency": args.concurrency,
                    "batch_size": args.batch_size,
                    "poll_interval": POLL_INTERVAL,
                },
            }
        )
        MasaApp.build(container, allow_memory_without_worker=True)
        try:
            await _queue_then_run(container, args)
        finally:
            MasaApp.reset()


async def _queue_then_run(container: BackgroundJobContainer, args: argparse.Namespace) -> None:
    n = args.jobs
    manager: JobManager = container.job_manager()
    await container.job_store().open()
    no_op = NoOp()
    for start in range(0, n, QUEUE_CHUNK):
        await manager.enqueue_many([(no_op, None)] * min(QUEUE_CHUNK, n - start))
    all_ran = PROBE.expect(n)
    profiler = None if args.no_profile else cProfile.Profile()
    started = time.perf_counter()
    if profiler is not None:
        profiler.enable()
    async with MasaApp.lifespan():
        with anyio.fail_after(n / SLOWEST_CREDIBLE_RATE + TIMEOUT_MARGIN_SECONDS):
            await all_ran.wait()
        elapsed = time.perf_counter() - started
        if profiler is not None:
            profiler.disable()
    mode = "without the profiler" if profiler is None else "under cProfile"
    print(f"{n:,} jobs in {elapsed:.2f} s: {n / elapsed:,.0f} jobs/s {mode}")
    if profiler is not None:
        stats = pstats.Stats(profiler)
        stats.strip_dirs().sort_stats(args.sort).print_stats(args.top)


async def commit_ceiling(args: argparse.Namespace) -> None:
    """``masa-jobs bench``'s ceiling of a single enqueue, alone."""
    async with postgres_commit_ceiling() as ceiling:
        await ceiling.commit(args.jobs)
    print(
        f"asyncpg commit ceiling: {ceiling.per_s:,.0f} single-row commits/s "
        f"({args.jobs:,} INSERTs, one connection, autocommit)"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="postgres", choices=["memory", "sqlite", "postgres"])
    parser.add_argument("--jobs", "-n", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=30)
    parser.add_argument("--top", type=int, default=40, help="profile entries printed")
    parser.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumtime)")
    parser.add_argument("--no-profile", action="store_true", help="time the run only")
    parser.add_argument(
        "--commit-ceiling", action="store_true", help="measure asyncpg's commit rate instead"
    )
    args: Any = parser.parse_args(argv)
    anyio.run(commit_ceiling if args.commit_ceiling else profile_run, args)


if __name__ == "__main__":
    main()
