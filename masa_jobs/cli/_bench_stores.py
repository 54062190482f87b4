"""A fresh, throw-away namespace in the store under measurement, for each phase.

Each phase of ``masa-jobs bench`` gets its own SQLite file (in a temporary
folder, or in ``MASA_JOBS_BENCH_DIR`` to measure another disk), PostgreSQL
schema or Redis key prefix, removed afterwards, so that runs never see each
other's jobs. Server addresses come from ``MASA_JOBS_STORE__DSN/URL`` when set.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from uuid import uuid4

from masa_jobs.stores import ASYNCIO_ONLY_BACKENDS

from ._bench_settings import StoreChoice

__all__ = ["ASYNCIO_ONLY_STORES", "bench_store"]

DEFAULT_POSTGRES_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
ASYNCIO_ONLY_STORES = frozenset(StoreChoice(name) for name in ASYNCIO_ONLY_BACKENDS)


@asynccontextmanager
async def bench_store(store: StoreChoice) -> AsyncIterator[dict[str, Any]]:
    """The ``store`` configuration section of a fresh namespace; removed on exit."""
    name = f"masa_bench_{uuid4().hex[:10]}"
    if store is StoreChoice.MEMORY:
        yield {"backend": "memory"}
    elif store is StoreChoice.SQLITE:
        given = os.environ.get("MASA_JOBS_BENCH_DIR")
        folder = Path(given) if given else Path(tempfile.mkdtemp(prefix=name))
        path = folder / f"{name}.sqlite3"
        try:
            yield {"backend": "sqlite", "path": str(path)}
        finally:
            if given:
                # Only the files this phase made: the folder is the user's.
                for leftover in folder.glob(f"{name}.sqlite3*"):
                    leftover.unlink(missing_ok=True)
            else:
                shutil.rmtree(folder, ignore_errors=True)
    elif store is StoreChoice.POSTGRES:
        dsn = os.environ.get("MASA_JOBS_STORE__DSN", DEFAULT_POSTGRES_DSN)
        try:
            yield {"backend": "postgres", "dsn": dsn, "schema": name}
        finally:
            await _drop_postgres_schema(dsn, name)
    else:
        url = os.environ.get("MASA_JOBS_STORE__URL", DEFAULT_REDIS_URL)
        try:
            yield {"backend": "redis", "url": url, "prefix": name}
        finally:
            await _delete_redis_prefix(url, name)


async def _drop_postgres_schema(dsn: str, schema: str) -> None:
    import asyncpg

    from ..stores._postgres_settings import PostgresSettings

    # The store's own parsing: a DSN in libpq keyword form becomes a URL asyncpg takes.
    connection = await asyncpg.connect(PostgresSettings.from_mapping({"dsn": dsn}).dsn)
    try:
        # The name is generated above, never taken from input.
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


async def _delete_redis_prefix(url: str, prefix: str) -> None:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{prefix}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()
