"""What one asyncpg connection commits per second: the ceiling of a single enqueue.

``masa-jobs bench --store postgres`` measures it around the single enqueue
phase, on the same server in the same run: a loop of single-row INSERTs of a
job-sized row (an id like masa-jobs' and a small payload), each its own
transaction (autocommit), over one connection, into a scratch table of a
fresh schema. The phase runs in chunks of ``CEILING_CHUNK`` enqueues, each
after as many commits, so that both figures see the same load of a shared
machine (one measured after the other could differ by half). A single
enqueue is one such commit per job, plus the job's index entries, its
``NOTIFY`` and the Python around the call, so its rate over this one says
how much of the server's commit rate the store uses.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

from masa_jobs.stores import backend_named

from ._bench_settings import StoreChoice

__all__ = [
    "CEILING_CHUNK",
    "CEILING_STORES",
    "CommitCeiling",
    "commit_ceiling",
    "postgres_commit_ceiling",
]

# Stores whose single enqueue is one commit of one server connection.
CEILING_STORES = frozenset({"postgres"})
# A job-sized row: an id like masa's (uuid4 hex) and an empty args object.
CEILING_PAYLOAD = "{}"
# Commits, then enqueues, per turn when both are measured: half a second or
# less each, short against the changes of a shared machine's load, and long
# enough that the pause between turns (which slows the first statements after
# it) weighs little: turns of 250 cost both figures about a tenth.
CEILING_CHUNK = 1000


class CommitCeiling:
    """Single-row commits over one connection, timed in as many runs as asked."""

    def __init__(self, connection: Any, insert: str) -> None:
        self._connection = connection
        self._insert = insert
        self._commits = 0
        self._seconds = 0.0

    async def commit(self, count: int) -> None:
        """Time ``count`` more INSERTs, each its own transaction."""
        ids = [uuid4().hex for _ in range(count)]
        started = time.perf_counter()
        for job_id in ids:
            await self._connection.execute(self._insert, job_id, CEILING_PAYLOAD)
        self._seconds += time.perf_counter() - started
        self._commits += count

    @property
    def per_s(self) -> float:
        """Commits per second over every run so far."""
        return self._commits / self._seconds


@asynccontextmanager
async def commit_ceiling(store: StoreChoice) -> AsyncIterator[CommitCeiling | None]:
    """The ceiling of ``store``'s single enqueue, ready to measure; None for a
    store without one (its enqueue is no commit of a server connection)."""
    if store.value not in CEILING_STORES:
        yield None
        return
    async with postgres_commit_ceiling() as ceiling:
        yield ceiling


@asynccontextmanager
async def postgres_commit_ceiling() -> AsyncIterator[CommitCeiling]:
    """One asyncpg connection to the bench's PostgreSQL server and a scratch
    table in a fresh schema, both removed on exit."""
    import asyncpg

    from masa_jobs.stores._postgres_settings import PostgresSettings

    async with backend_named("postgres").scratch(f"masa_ceil_{uuid4().hex[:10]}") as store:
        schema = store["schema"]
        # The store's own parsing: a libpq keyword DSN becomes a URL asyncpg takes.
        connection = await asyncpg.connect(PostgresSettings.from_mapping(store).dsn)
        try:
            # The schema name is generated above, never taken from input.
            await connection.execute(
                f'CREATE SCHEMA "{schema}"; '
                f'CREATE TABLE "{schema}".ceiling (id text PRIMARY KEY, payload text NOT NULL)'
            )
            yield CommitCeiling(
                connection, f'INSERT INTO "{schema}".ceiling (id, payload) VALUES ($1, $2)'
            )
        finally:
            await connection.close()
