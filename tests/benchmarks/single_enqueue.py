"""Where a single PostgreSQL enqueue's time goes: the commit, the job's row, the Python.

Run from the repository root::

    .venv/bin/python -m tests.benchmarks.single_enqueue [--calls 500] [--rounds 12]

In a fresh schema of the PostgreSQL store (``MASA_JOBS_STORE__DSN``, as for
``masa-jobs bench``), it times rounds of ``calls`` awaited calls of three
kinds, interleaved so that a slower moment of the machine hits all three:

- the **ceiling**: ``masa-jobs bench``'s own (``postgres_commit_ceiling``):
  single-row INSERTs of a two-column row, each its own transaction, over a
  connection of its own;
- the **statement**: the store's own insert of a new job, with the
  arguments the store sends for one, over another connection: the job's
  row, its index entries and its ``NOTIFY``, with no masa-jobs code around;
- the **enqueue**: ``BackgroundJobManager.enqueue`` of a no-op job, the
  whole path (the facade, the manager's validation and record, the store's
  checks, its pool and the statement's timeout).

It prints the median microseconds per call of each, the rates of the
statement and the enqueue against the ceiling's, and what the enqueue adds
to the statement. No worker runs.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Awaitable, Callable
from uuid import uuid4

import anyio
import asyncpg

from masa_jobs import BackgroundJobManager, MasaApp
from masa_jobs.cli._bench_build import built_app
from masa_jobs.cli._bench_ceiling import postgres_commit_ceiling
from masa_jobs.cli._bench_jobs import NoOp
from masa_jobs.cli._bench_settings import StoreChoice
from masa_jobs.cli._bench_stores import bench_store
from masa_jobs.records import utcnow
from masa_jobs.stores.postgres import PostgresJobStore, _new_job_values

_NO_OP = NoOp()


async def measure(calls: int, rounds: int) -> dict[str, float]:
    """Median seconds per call of each kind."""
    async with (
        bench_store(StoreChoice("postgres")) as section,
        built_app(section, {"disable_background_job": True}) as container,
        MasaApp.lifespan(),
        postgres_commit_ceiling() as ceiling,
    ):
        store = container.job_store()
        assert isinstance(store, PostgresJobStore)
        # The record an enqueue of the no-op job gives the store.
        record = container.job_manager()._new_record(_NO_OP, None, utcnow())
        values = list(_new_job_values(record))
        statement_sql, channel = store._sql.add_one, store._sql.channel
        connection = await asyncpg.connect(store._settings.dsn)
        try:

            async def statements(count: int) -> None:
                for _ in range(count):
                    values[0] = uuid4().hex
                    await connection.execute(statement_sql, *values, channel)

            async def enqueues(count: int) -> None:
                for _ in range(count):
                    await BackgroundJobManager.enqueue(_NO_OP)

            kinds = {"ceiling": ceiling.commit, "statement": statements, "enqueue": enqueues}
            times: dict[str, list[float]] = {name: [] for name in kinds}
            for _ in range(rounds):
                for name, run in kinds.items():
                    times[name].append(await _round(run, calls))
        finally:
            await connection.close()
    return {name: statistics.median(seconds) for name, seconds in times.items()}


async def _round(run: Callable[[int], Awaitable[None]], calls: int) -> float:
    """Seconds per call of one round of ``calls``."""
    started = time.perf_counter()
    await run(calls)
    return (time.perf_counter() - started) / calls


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500, help="calls of each kind per round")
    parser.add_argument("--rounds", type=int, default=12, help="rounds of each kind")
    args = parser.parse_args(argv)
    medians = anyio.run(measure, args.calls, args.rounds)
    ceiling, statement, enqueue = (medians[k] for k in ("ceiling", "statement", "enqueue"))
    for name, seconds in medians.items():
        print(f"{name:9s} {seconds * 1e6:7.1f} us a call  {1 / seconds:8,.0f} /s")
    print(
        f"statement at {ceiling / statement:.0%} of the ceiling's rate, enqueue at "
        f"{ceiling / enqueue:.0%}; the enqueue adds {(enqueue - statement) * 1e6:.1f} us "
        "to the statement"
    )


if __name__ == "__main__":
    main()
