"""The stores a fault scenario runs on, and the faults a test can cause in them.

Each test gets a namespace of its own (a PostgreSQL schema, a Redis key
prefix, an SQLite file) and tags its workers' connections with a name of its
own (PostgreSQL ``application_name``, Redis ``CLIENT SETNAME``), so that
killing connections touches this test's workers only: not the test's own
observer, and not another suite running against the same server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from masa_jobs.containers import BackgroundJobContainer

from masa_jobs import JobManager, MasaApp
from masa_jobs.stores.base import Store
from tests.services import POSTGRES_DSN, REDIS_URL, unique_name
from tests.tcp_proxy import FaultProxy, in_front_of, through

__all__ = ["FaultStore", "Observer", "new_namespace", "observer"]

OBSERVER_NAME = "masa-faults-observer"


def _with_query(url: str, **params: str) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update(params)
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass(frozen=True)
class FaultStore:
    """One store for one test: its settings for workers and for the observer."""

    backend: str
    namespace: str
    path: Path | None = None

    @property
    def network(self) -> bool:
        return self.backend in ("postgres", "redis")

    @property
    def connection_name(self) -> str:
        """What this test's worker connections are called on the server."""
        return f"masa-jobs-faults-{self.namespace}"

    @property
    def _server_url(self) -> str:
        return POSTGRES_DSN if self.backend == "postgres" else REDIS_URL

    def _settings(self, url: str | None, name: str) -> dict[str, Any]:
        if self.backend == "sqlite":
            return {"backend": "sqlite", "path": str(self.path)}
        server = url or self._server_url
        if self.backend == "postgres":
            dsn = _with_query(server, application_name=name)
            return {"backend": "postgres", "dsn": dsn, "schema": self.namespace}
        return {
            "backend": "redis",
            "url": _with_query(server, client_name=name),
            "prefix": self.namespace,
        }

    def worker_env(self, proxy: FaultProxy | None = None) -> dict[str, str]:
        """``MASA_JOBS_STORE__...`` for a worker, through ``proxy`` when given."""
        url = None if proxy is None else through(self._server_url, proxy)
        settings = self._settings(url, self.connection_name)
        return {f"MASA_JOBS_STORE__{k.upper()}": str(v) for k, v in settings.items()}

    def observer_config(self) -> dict[str, Any]:
        return self._settings(None, OBSERVER_NAME)

    def proxy(self) -> FaultProxy:
        """A proxy in front of this store's server (network stores only)."""
        return in_front_of(self._server_url)

    async def kill_connections(self) -> int:
        """Kill every server connection of this test's workers; how many there were."""
        if self.backend == "postgres":
            return await self._terminate_postgres_backends()
        if self.backend == "redis":
            return await self._kill_redis_clients()
        raise AssertionError("SQLite has no connection to kill")

    async def _terminate_postgres_backends(self) -> int:
        import asyncpg

        connection = await asyncpg.connect(POSTGRES_DSN)
        try:
            killed: int = await connection.fetchval(
                "SELECT count(*) FROM ("
                "  SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                "  WHERE application_name = $1 AND datname = current_database()"
                "    AND pid <> pg_backend_pid()"
                ") AS terminated",
                self.connection_name,
            )
        finally:
            await connection.close()
        return killed

    async def _kill_redis_clients(self) -> int:
        import redis.asyncio

        client = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            # CLIENT KILL has no filter by name: list, then kill by id
            # (SKIPME is the default: this connection survives).
            clients = await client.client_list()
            ids = [c["id"] for c in clients if c.get("name") == self.connection_name]
            for client_id in ids:
                await client.client_kill_filter(_id=client_id)
        finally:
            await client.aclose()
        return len(ids)


@dataclass(frozen=True)
class Observer:
    """The test's own view of the store: a manager (no worker) and its store."""

    manager: JobManager
    store: Store


@asynccontextmanager
async def observer(store: FaultStore) -> AsyncIterator[Observer]:
    """An enqueue-only app on the store the workers share, connected directly."""
    container = BackgroundJobContainer()
    container.config.from_dict(
        {"store": store.observer_config(), "options": {"disable_background_job": True}}
    )
    MasaApp.build(container)
    async with MasaApp.lifespan():
        yield Observer(MasaApp.job_manager(), container.job_store())


def new_namespace() -> str:
    return unique_name("masa_faults")
