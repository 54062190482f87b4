"""Job stores: the ``JobStore`` protocol and its backends.

Each backend lives in its own module and imports its driver only there, so
``import masa_jobs`` never imports a database driver.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from ..exceptions import ConfigurationError
from .base import JobStore
from .memory import MemoryJobStore

__all__ = [
    "ASYNCIO_ONLY_BACKENDS",
    "STORE_BACKENDS",
    "JobStore",
    "MemoryJobStore",
    "check_store_backend",
    "memory_store",
    "postgres_store",
    "redis_store",
    "sqlite_store",
]

# The values ``store.backend`` accepts, in the order the docs present them.
STORE_BACKENDS: tuple[str, ...] = ("memory", "sqlite", "postgres", "redis")
# Their drivers (asyncpg, redis-py) run on asyncio only, not on trio.
ASYNCIO_ONLY_BACKENDS: frozenset[str] = frozenset({"postgres", "redis"})


def check_store_backend(backend: object) -> str:
    """Return ``backend`` if a store of that name exists, else a clear error.

    An unset backend (None: e.g. a container embedded with
    ``config=parent.config.jobs`` whose section has no ``store``) is the default.
    """
    if backend is None:
        return STORE_BACKENDS[0]
    if backend in STORE_BACKENDS:
        return str(backend)
    known = ", ".join(STORE_BACKENDS)
    raise ConfigurationError(
        f"unknown store backend {backend!r}: set store.backend (MASA_JOBS_STORE__BACKEND) "
        f"to one of: {known}"
    )


def memory_store(settings: Mapping[str, Any] | None) -> JobStore:
    """The in-memory store; it has no settings, so any given is a mistake to report."""
    extra = sorted(set(settings or {}) - {"backend"})
    if extra:
        keys = ", ".join(f"store.{key}" for key in extra)
        raise ConfigurationError(
            f"{keys} set, but store.backend is memory, which takes no settings: set "
            "store.backend (MASA_JOBS_STORE__BACKEND) to the store they belong to "
            "(sqlite: path; postgres: dsn; redis: url)"
        )
    return MemoryJobStore()


def sqlite_store(settings: Mapping[str, Any] | None) -> JobStore:
    """The SQLite store from the ``store`` configuration section."""
    from .sqlite import SqliteJobStore

    return SqliteJobStore.from_settings(settings or {})


def postgres_store(settings: Mapping[str, Any] | None) -> JobStore:
    """The PostgreSQL store from the ``store`` configuration section."""
    _require_driver("postgres", "asyncpg")
    from .postgres import PostgresJobStore

    return PostgresJobStore.from_settings(settings or {})


def redis_store(settings: Mapping[str, Any] | None) -> JobStore:
    """The Redis store from the ``store`` configuration section."""
    _require_driver("redis", "redis")
    from .redis import RedisJobStore

    return RedisJobStore.from_settings(settings or {})


def _require_driver(backend: str, module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigurationError(
            f"store backend {backend!r} needs the {module} driver, which is not installed: "
            f"pip install 'masa-jobs[{backend}]'"
        )
