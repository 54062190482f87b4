"""The stores the contract suite runs against.

A store joins the suite with one ``StoreSpec`` line in ``STORES``: a name and a
factory, an async context manager that yields a fresh, empty, *unopened* store
and cleans up after it (drop a schema, delete a key prefix ...). The ``store``
fixture opens it before each test and closes it afterwards. Stores whose
driver does not run under trio say so and are skipped on that backend.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from masa_jobs import JobStore, MemoryJobStore

StoreFactory = Callable[[Path], AbstractAsyncContextManager[JobStore]]


@dataclass(frozen=True)
class StoreSpec:
    name: str
    factory: StoreFactory
    supports_trio: bool = True


@asynccontextmanager
async def memory_store(tmp_path: Path) -> AsyncIterator[JobStore]:
    yield MemoryJobStore()


STORES: tuple[StoreSpec, ...] = (StoreSpec("memory", memory_store),)


@pytest.fixture(params=[pytest.param(spec, id=spec.name) for spec in STORES])
async def store(
    request: pytest.FixtureRequest, anyio_backend: tuple[str, object], tmp_path: Path
) -> AsyncIterator[JobStore]:
    spec: StoreSpec = request.param
    if anyio_backend[0] == "trio" and not spec.supports_trio:
        pytest.skip(f"the {spec.name} store does not run under trio")
    async with spec.factory(tmp_path) as job_store:
        await job_store.open()
        try:
            yield job_store
        finally:
            await job_store.aclose()
