"""What the Redis store's scripts cost the server: microseconds of its one thread per job.

Run from the repository root::

    .venv/bin/python -m tests.benchmarks.redis_scripts [--jobs 20000] [--batch-size 30]

In a fresh key prefix of the Redis store (``MASA_JOBS_STORE__URL``, as for
``masa-jobs bench``), it reads the server's own accounting of script calls
(``INFO commandstats``, ``EVALSHA``) around each step, calling the store
directly with no worker running:

- ``--jobs`` single enqueues (one add script each);
- the same jobs claimed ``--batch-size`` at a time, then finished as
  succeeded in the same batches;
- single jobs claimed and finished one by one (one job a script call).

It prints the server's microseconds per job of each step, and the most jobs
per second one server could run if the claim and the finish were all it did.
The statistics are reset at each step: run it on a server nothing else uses.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import redis.asyncio

from masa_jobs import BackgroundJobManager, MasaApp
from masa_jobs.cli._bench_build import built_app
from masa_jobs.cli._bench_jobs import NoOp
from masa_jobs.cli._bench_settings import StoreChoice
from masa_jobs.cli._bench_stores import bench_store
from masa_jobs.records import JobOutcome, JobRecord, JobState
from masa_jobs.stores.base import JobStore

# A lease far longer than the run: nothing expires while it measures.
LEASE = timedelta(minutes=10)
WORKER_ID = "bench-scripts"
_NO_OP = NoOp()


async def measure(jobs: int, batch_size: int) -> dict[str, float]:
    """Server microseconds per job of each step."""
    async with (
        bench_store(StoreChoice("redis")) as section,
        built_app(section, {"disable_background_job": True}) as container,
        MasaApp.lifespan(),
    ):
        store = container.job_store()
        server = redis.asyncio.Redis.from_url(section["url"])
        try:
            return await _steps(store, server, jobs, batch_size)
        finally:
            await server.aclose()


async def _steps(
    store: JobStore, server: redis.asyncio.Redis, jobs: int, batch_size: int
) -> dict[str, float]:
    await server.config_resetstat()
    for _ in range(jobs):
        await BackgroundJobManager.enqueue(_NO_OP)
    costs = {"add, one job a call": await _script_usec(server) / jobs}
    claim, finish = await _claim_and_finish(store, server, batch_size, jobs)
    costs[f"claim, {batch_size} jobs a call"] = claim
    costs[f"finish, {batch_size} jobs a call"] = finish

    singles = min(jobs, 2000)
    for _ in range(singles):
        await BackgroundJobManager.enqueue(_NO_OP)
    costs["claim, one job a call"], costs["finish, one job a call"] = await _claim_and_finish(
        store, server, 1, singles
    )
    return costs


async def _claim_and_finish(
    store: JobStore, server: redis.asyncio.Redis, batch_size: int, jobs: int
) -> tuple[float, float]:
    """Server microseconds per job of claiming the ``jobs`` due, ``batch_size``
    at a time, then of finishing them as succeeded in the same batches."""
    await server.config_resetstat()
    claimed = [got async for got in _claims(store, batch_size)]
    claim = await _script_usec(server) / jobs
    await server.config_resetstat()
    for batch in claimed:
        await store.finish(WORKER_ID, [_succeeded(record) for record in batch])
    return claim, await _script_usec(server) / jobs


async def _claims(store: JobStore, batch_size: int) -> Any:
    while batch := await store.claim(WORKER_ID, batch_size, LEASE):
        yield batch


async def _script_usec(server: redis.asyncio.Redis) -> int:
    stats = await server.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("usec", 0))


def _succeeded(record: JobRecord) -> JobOutcome:
    return JobOutcome(
        job_id=record.id,
        state=JobState.SUCCEEDED,
        attempts=record.attempts,
        next_try_at=record.next_try_at,
        last_error=None,
        finished_at=datetime.now(UTC),
        lease_token=record.lease_token,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", "-n", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=30, help="jobs a claim and a finish")
    args = parser.parse_args(argv)
    costs = anyio.run(measure, args.jobs, args.batch_size)
    for name, usec in costs.items():
        print(f"{name:24s} {usec:6.1f} us of the server per job")
    batch = args.batch_size
    per_job = costs[f"claim, {batch} jobs a call"] + costs[f"finish, {batch} jobs a call"]
    print(
        f"claim and finish, {batch} a call: {per_job:.1f} us a job, at most "
        f"{1e6 / per_job:,.0f} jobs/s on one server"
    )


if __name__ == "__main__":
    main()
