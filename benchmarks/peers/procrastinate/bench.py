"""Procrastinate on PostgreSQL, through its task API and its own worker command,
``procrastinate worker``."""

from __future__ import annotations

import os
import sys
from contextlib import AsyncExitStack
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import WorkerSpec, main, pg_dsn  # noqa: E402

DATABASE = "peers_bench_procrastinate"
os.environ["PEERS_PROCRASTINATE_DSN"] = pg_dsn(DATABASE)

import psycopg  # noqa: E402
from bench_tasks import app, no_op  # noqa: E402

# Jobs per batch_defer_async call: what a caller would send in one round trip.
BULK_CHUNK = 1000
TUNED_CONCURRENCY = 50


class Procrastinate:
    name = "procrastinate"
    store = "postgres"
    version = version("procrastinate")
    bulk_method = f"Task.batch_defer_async, {BULK_CHUNK} a call"

    def __init__(self) -> None:
        self._stack: AsyncExitStack | None = None

    async def reset(self) -> None:
        await self.close()
        async with await psycopg.AsyncConnection.connect(
            pg_dsn("postgres"), autocommit=True
        ) as conn:
            # The name is a constant of this script, never input.
            await conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
        self._stack = AsyncExitStack()
        await self._stack.enter_async_context(app.open_async())
        await app.schema_manager.apply_schema_async()

    async def close(self) -> None:
        if self._stack is not None:
            await self._stack.aclose()
            self._stack = None

    async def enqueue_one(self) -> None:
        await no_op.defer_async()

    async def enqueue_bulk(self, n: int) -> None:
        for start in range(0, n, BULK_CHUNK):
            await no_op.batch_defer_async(*([{}] * min(BULK_CHUNK, n - start)))

    def worker(self, tuned: bool) -> WorkerSpec:
        argv = [
            str(Path(sys.executable).parent / "procrastinate"),
            "--app=bench_tasks.app",
            "worker",
        ]
        env = {
            "PEERS_PROCRASTINATE_DSN": os.environ["PEERS_PROCRASTINATE_DSN"],
            "PYTHONPATH": str(HERE),
        }
        settings: dict[str, Any] = {
            "command": "procrastinate worker",
            "options": "defaults (concurrency 1)",
        }
        if tuned:
            argv += ["--concurrency", str(TUNED_CONCURRENCY)]
            settings["options"] = {"concurrency": TUNED_CONCURRENCY}
        return WorkerSpec(argv=argv, cwd=HERE, env=env, settings=settings)


if __name__ == "__main__":
    main(lambda args: Procrastinate())
