"""What ``enqueue_sync`` costs per call, next to ``await enqueue``.

Run from the repository root::

    .venv/bin/python -m tests.benchmarks.sync_enqueue [--jobs 5000] [--threads 16]

For the in-memory and SQLite stores it times, per call: ``await
BackgroundJobManager.enqueue`` on the caller's own event loop; ``enqueue_sync``
from one thread (each call a round trip to the sync side's event loop
thread); and ``enqueue_sync`` from many threads at once (their calls share
that loop). No worker runs: only the enqueue is timed.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJob, BackgroundJobManager, MasaApp, job_name


@job_name("bench.sync-noop")
class Noop(BaseModel):
    n: int


class NoopJob(BackgroundJob[Noop]):
    async def execute(self, args: Noop) -> None:
        return None


def build(store: dict[str, Any]) -> BackgroundJobContainer:
    MasaApp.reset()
    container = BackgroundJobContainer()
    container.config.from_dict({"store": store})
    MasaApp.build(container)
    return container


def async_enqueue(jobs: int) -> float:
    """Seconds for ``jobs`` awaited enqueues on this thread's own event loop."""

    async def run() -> float:
        store = MasaApp.root().job_store()
        await store.open()  # on this loop, and no worker: only the enqueue is timed
        try:
            started = time.perf_counter()
            for n in range(jobs):
                await BackgroundJobManager.enqueue(Noop(n=n))
            return time.perf_counter() - started
        finally:
            await store.aclose()

    return anyio.run(run)


def sync_enqueue(jobs: int, threads: int) -> float:
    """Seconds for ``jobs`` enqueue_sync calls spread over ``threads`` threads."""
    BackgroundJobManager.enqueue_sync(Noop(n=-1))  # start the loop, open the store: not timed
    per_thread = jobs // threads

    def run(_: int) -> None:
        for n in range(per_thread):
            BackgroundJobManager.enqueue_sync(Noop(n=n))

    started = time.perf_counter()
    if threads == 1:
        run(0)
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(run, range(threads)))
    return time.perf_counter() - started


def measure(name: str, store: dict[str, Any], jobs: int, threads: int) -> list[str]:
    rows = []
    cases: list[tuple[str, Callable[[], float], int]] = [
        ("await enqueue", lambda: async_enqueue(jobs), jobs),
        ("enqueue_sync, 1 thread", lambda: sync_enqueue(jobs, 1), jobs),
        (
            f"enqueue_sync, {threads} threads",
            lambda: sync_enqueue(jobs, threads),
            jobs // threads * threads,
        ),
    ]
    for label, run, calls in cases:
        build(store)
        seconds = run()
        MasaApp.reset()  # closes the store the sync side opened
        rows.append(
            f"| {name} | {label} | {seconds / calls * 1e6:,.0f} µs | {calls / seconds:,.0f}/s |"
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=16)
    options = parser.parse_args()
    print("| store | call | per call | calls/s |")
    print("|---|---|---|---|")
    for row in measure("memory", {"backend": "memory"}, options.jobs, options.threads):
        print(row)
    with tempfile.TemporaryDirectory() as folder:
        store = {"backend": "sqlite", "path": str(Path(folder) / "bench.sqlite3")}
        for row in measure("sqlite", store, options.jobs, options.threads):
            print(row)


if __name__ == "__main__":
    main()
