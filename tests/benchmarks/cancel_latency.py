"""How long a cancel takes to stop a running job, on every store.

Run from the repository root::

    .venv/bin/python -m tests.benchmarks.cancel_latency [--samples 50] [--store postgres]

On PostgreSQL and Redis a worker runs on one store instance and the
operator cancels through a second instance of the same store (another
connection, as from another process), while the job's handler waits
forever. The figure is the time from the moment ``cancel`` is called until
the handler's cancellation runs its ``finally`` block, with leases renewed
every 10 s (``lease_timeout`` 30 s), so that only the store's cancel notice
can stop the job sooner. The memory and SQLite stores tell workers in the
cancelling process only: there the operator shares the worker's store (a
SQLite worker in another process learns at its next renewal, within a third
of ``lease_timeout``). One cancel before the figures warms the notices up.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import AsyncExitStack
from typing import Any

import anyio
from pydantic import BaseModel

from masa_jobs import (
    BackgroundJob,
    DefaultJobManager,
    JobRegistry,
    JobState,
    Worker,
    job_name,
)
from masa_jobs.options import BackgroundJobOptions
from masa_jobs.stores._backends import BACKENDS, build_store

# Far beyond any figure: a cancel that never arrives shows as this.
GIVE_UP_SECONDS = 20.0
STOPPED: dict[str, float] = {}
STARTED: dict[str, anyio.Event] = {}


@job_name("bench.endless")
class Endless(BaseModel):
    key: str


class EndlessJob(BackgroundJob[Endless]):
    async def execute(self, args: Endless) -> None:
        STARTED[args.key].set()
        try:
            await anyio.sleep_forever()
        finally:
            STOPPED[args.key] = time.perf_counter()


async def measure(backend: str, samples: int) -> list[float]:
    registry = JobRegistry([EndlessJob])
    options = BackgroundJobOptions(lease_timeout=30, shutdown_timeout=1)
    figures: list[float] = []
    async with AsyncExitStack() as stack:
        settings = await stack.enter_async_context(BACKENDS[backend].scratch("masa_cancel_bench"))
        worker_store = build_store(settings)
        await worker_store.open()
        stack.push_async_callback(worker_store.aclose)
        # Notices within one process only: the operator shares the worker's store.
        in_process = backend in ("memory", "sqlite")
        operator_store = worker_store if in_process else build_store(settings)
        if operator_store is not worker_store:
            await operator_store.open()
            stack.push_async_callback(operator_store.aclose)
        manager = DefaultJobManager(operator_store, registry, options)
        worker = Worker(worker_store, registry, options)
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(worker.run)
            # Not counted: the network stores subscribe to notices in the
            # background, a few milliseconds after the worker starts, and a
            # cancel before that is caught by the next renewal instead.
            await _one(manager, f"{backend}-warm-up")
            for n in range(samples):
                figures.append(await _one(manager, f"{backend}-{n}"))
            worker.stop()
    return figures


async def _one(manager: DefaultJobManager, key: str) -> float:
    STARTED[key] = anyio.Event()
    job_id = await manager.enqueue(Endless(key=key))
    with anyio.fail_after(GIVE_UP_SECONDS):
        await STARTED[key].wait()
    started = time.perf_counter()
    info = await manager.cancel(job_id)
    assert info.state is JobState.CANCELLED
    with anyio.move_on_after(GIVE_UP_SECONDS):
        while key not in STOPPED:  # noqa: ASYNC110 - a benchmark polls, it does not wait
            await anyio.sleep(0.0005)
    return STOPPED.get(key, started + GIVE_UP_SECONDS) - started


def _report(backend: str, figures: list[float]) -> str:
    ms = sorted(f * 1000 for f in figures)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return (
        f"{backend:<10} n={len(ms):<4} median {statistics.median(ms):8.1f} ms   "
        f"p99 {p99:8.1f} ms   max {ms[-1]:8.1f} ms"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--store", action="append", choices=list(BACKENDS))
    args = parser.parse_args(argv)
    stores: list[Any] = args.store or list(BACKENDS)
    for backend in stores:
        print(_report(backend, anyio.run(measure, backend, args.samples)), flush=True)


if __name__ == "__main__":
    main()
