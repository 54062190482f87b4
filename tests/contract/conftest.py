"""The stores the contract suite runs against.

A store joins the suite with one ``StoreSpec`` line in ``STORES``: a name and a
factory, an async context manager that yields a fresh, empty, *unopened* store
and cleans up after it (drop a schema, delete a key prefix ...). The ``store``
fixture opens it before each test and closes it afterwards. Stores whose
driver does not run under trio say so (``supports_trio=False``): tests/conftest.py
does not generate their trio runs.

A store on a server (``network=True``) keeps time on the server's clock and
rebases the records it is given (``add``) on it; a store on this machine uses
the local clock and stores records as given. The ``store_spec`` fixture tells
a test which kind it runs on; a test that holds for one kind only is marked
``network_store_only`` or ``local_store_only`` and is generated for that kind only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from masa_jobs import JobStore, MemoryJobStore
from masa_jobs.stores.sqlite import SqliteJobStore
from tests.services import POSTGRES_DSN, REDIS_URL, require_service, unique_name

StoreFactory = Callable[[Path], AbstractAsyncContextManager[JobStore]]


@dataclass(frozen=True)
class StoreSpec:
    name: str
    factory: StoreFactory
    supports_trio: bool = True
    network: bool = False


@asynccontextmanager
async def memory_store(tmp_path: Path) -> AsyncIterator[JobStore]:
    yield MemoryJobStore()


@asynccontextmanager
async def sqlite_store(tmp_path: Path) -> AsyncIterator[JobStore]:
    yield SqliteJobStore(tmp_path / "jobs.sqlite3")


@asynccontextmanager
async def postgres_store(tmp_path: Path) -> AsyncIterator[JobStore]:
    import asyncpg

    from masa_jobs.stores.postgres import PostgresJobStore

    require_service("PostgreSQL", POSTGRES_DSN)
    schema = unique_name()
    try:
        yield PostgresJobStore.from_settings({"dsn": POSTGRES_DSN, "schema": schema})
    finally:
        connection = await asyncpg.connect(POSTGRES_DSN)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()


@asynccontextmanager
async def redis_store(tmp_path: Path) -> AsyncIterator[JobStore]:
    import redis.asyncio

    from masa_jobs.stores.redis import RedisJobStore

    require_service("Redis", REDIS_URL)
    prefix = unique_name()
    try:
        yield RedisJobStore.from_settings({"url": REDIS_URL, "prefix": prefix})
    finally:
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            # Every key of the store starts with the hash tag {prefix}.
            keys = [key async for key in client.scan_iter(match=f"{{{prefix}}}:*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


STORES: tuple[StoreSpec, ...] = (
    StoreSpec("memory", memory_store),
    StoreSpec("sqlite", sqlite_store),
    StoreSpec("postgres", postgres_store, supports_trio=False, network=True),
    StoreSpec("redis", redis_store, supports_trio=False, network=True),
)


@pytest.fixture(params=[pytest.param(spec, id=spec.name) for spec in STORES])
def store_spec(request: pytest.FixtureRequest) -> StoreSpec:
    """The store the test runs on; ``store`` is an opened instance of it."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def store(store_spec: StoreSpec, tmp_path: Path) -> AsyncIterator[JobStore]:
    async with store_spec.factory(tmp_path) as job_store:
        await job_store.open()
        try:
            yield job_store
        finally:
            await job_store.aclose()
