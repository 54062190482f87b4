"""A fresh, throw-away namespace in the store under measurement, for each phase.

Each phase of ``masa-jobs bench`` gets its own SQLite file (in a temporary
folder, or in ``MASA_JOBS_BENCH_DIR`` to measure another disk), PostgreSQL
schema or Redis key prefix, removed afterwards, so that runs never see each
other's jobs. Server addresses come from ``MASA_JOBS_STORE__DSN/URL`` when set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from uuid import uuid4

from masa_jobs.stores import ASYNCIO_ONLY_BACKENDS, backend_named

from ._bench_settings import StoreChoice

__all__ = ["ASYNCIO_ONLY_STORES", "bench_store"]

ASYNCIO_ONLY_STORES = frozenset(StoreChoice(name) for name in ASYNCIO_ONLY_BACKENDS)


@asynccontextmanager
async def bench_store(store: StoreChoice) -> AsyncIterator[dict[str, Any]]:
    """The ``store`` configuration section of a fresh namespace; removed on exit."""
    async with backend_named(store.value).scratch(f"masa_bench_{uuid4().hex[:10]}") as settings:
        yield settings
