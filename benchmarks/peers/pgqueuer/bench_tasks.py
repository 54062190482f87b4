"""The no-op entrypoint, for ``pgq run bench_tasks:create_pgqueuer`` (DSN from PGDSN)."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from pgqueuer import AsyncpgDriver, Job, PgQueuer

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import task_ran

ENTRYPOINT = "peers_no_op"


@asynccontextmanager
async def create_pgqueuer() -> AsyncIterator[PgQueuer]:
    connection = await asyncpg.connect(os.environ["PGDSN"])
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint(ENTRYPOINT)
    async def no_op(job: Job) -> None:
        task_ran()

    try:
        yield pgq
    finally:
        await connection.close()
