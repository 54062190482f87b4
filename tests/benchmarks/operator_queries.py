"""What operator reads cost as the queue grows: one page of a list, and counts.

Run from the repository root::

    .venv/bin/python -m tests.benchmarks.operator_queries [--stores memory,sqlite,postgres,redis]
        [--sizes 10000,100000,1000000] [--repeat 20]

For each store and size it fills a fresh namespace (a temporary SQLite file,
a PostgreSQL schema, a Redis key prefix, removed afterwards) with that many
jobs: 90% succeeded-looking history is not needed to test the indexes, so the
fill is pending jobs of four job names, half due now and half scheduled an
hour ahead, then 1% of them run to ``dead`` and 1% cancelled. It then times,
as the median of ``--repeat`` calls: the first page (50 jobs) of every job;
a page deep in the list (a cursor from the middle); a page of dead jobs; a
page of enqueued jobs of one name; a page of scheduled jobs; and
``count_by_state``. Flat figures across sizes mean each read costs the same
whatever the queue holds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any
from uuid import uuid4

import anyio

from masa_jobs import JobOutcome, JobQuery, JobRecord, JobState
from masa_jobs.queries import encode_cursor
from masa_jobs.records import utcnow
from masa_jobs.stores import BACKENDS, Store, build_store

NAMES = ("mail.send", "report.build", "image.resize", "invoice.charge")
FILL_BATCH = 1000
PAGE = 50
LEASE = timedelta(minutes=5)


def record(n: int, scheduled: bool) -> JobRecord:
    now = utcnow()
    return JobRecord(
        id=f"{n:09d}-{uuid4().hex[:8]}",
        name=NAMES[n % len(NAMES)],
        payload=f'{{"n": {n}}}',
        state=JobState.SCHEDULED if scheduled else JobState.ENQUEUED,
        created_at=now,
        next_try_at=now + timedelta(hours=1) if scheduled else now - timedelta(seconds=1),
    )


async def fill(store: Store, size: int) -> None:
    for start in range(0, size, FILL_BATCH):
        batch = [
            record(n, scheduled=n % 2 == 1) for n in range(start, min(start + FILL_BATCH, size))
        ]
        await store.add(batch)
    finished = max(size // 100, 1)
    for state in (JobState.DEAD, JobState.CANCELLED):
        left = finished
        while left > 0:
            claimed = await store.claim("bench", min(left, 500), LEASE)
            if not claimed:
                break
            if state is JobState.DEAD:
                outcomes = [
                    JobOutcome(
                        r.id, state, r.attempts, r.next_try_at, "boom", (), utcnow(), r.lease_token
                    )
                    for r in claimed
                ]
                await store.finish("bench", outcomes)
            else:
                for r in claimed:
                    await store.transition(r.id, [JobState.PROCESSING], state, utcnow())
            left -= len(claimed)


async def median_ms(call: Callable[[], Awaitable[Any]], repeat: int) -> float:
    await call()  # warm caches and prepared statements
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def measure(store: Store, repeat: int) -> dict[str, float]:
    now = await store.now()
    first = await store.list_jobs(JobQuery(limit=PAGE), now)
    # A cursor from the middle of the list: walk there with large pages once.
    query = JobQuery(limit=500)
    deep_cursor = first.next_cursor
    for _ in range(20):
        page = await store.list_jobs(query, now)
        if page.next_cursor is None:
            break
        deep_cursor = encode_cursor(page.items[-1])
        query = replace(query, cursor=page.next_cursor)
    queries = {
        "first page": JobQuery(limit=PAGE),
        "deep page": JobQuery(limit=PAGE, cursor=deep_cursor),
        "dead page": JobQuery.of(JobState.DEAD, limit=PAGE),
        "enqueued of one name": JobQuery.of(JobState.ENQUEUED, name=NAMES[0], limit=PAGE),
        "scheduled page": JobQuery.of(JobState.SCHEDULED, limit=PAGE),
    }
    figures = {}
    for label, q in queries.items():
        figures[label] = await median_ms(lambda q=q: store.list_jobs(q, now), repeat)
    figures["count_by_state"] = await median_ms(lambda: store.count_by_state(now), repeat)
    return figures


async def run_one(backend: str, size: int, repeat: int) -> dict[str, float]:
    async with BACKENDS[backend].scratch(f"masa_opbench_{uuid4().hex[:8]}") as settings:
        store = build_store(settings)
        await store.open()
        try:
            started = time.perf_counter()
            await fill(store, size)
            fill_s = time.perf_counter() - started
            figures = await measure(store, repeat)
            figures["fill s"] = fill_s
            return figures
        finally:
            await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stores", default="memory,sqlite,postgres,redis")
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    for backend in args.stores.split(","):
        for size in sizes:
            figures = anyio.run(run_one, backend, size, args.repeat)
            cells = "  ".join(
                f"{k}: {v:.1f}" if k == "fill s" else f"{k}: {v:.2f} ms" for k, v in figures.items()
            )
            print(f"{backend:8} {size:>9,}  {cells}", flush=True)


if __name__ == "__main__":
    main()
