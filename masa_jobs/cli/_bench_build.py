"""A container on a given store namespace, built and published with ``MasaApp``.

Every measurement of ``masa-jobs bench`` goes through the public path:
``MasaApp.build``, ``MasaApp.lifespan()``, the static facade and the
container's ``job_manager``. The in-memory store lives in one process only,
so a scenario that builds several apps on one backlog passes its instance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from dependency_injector import providers

from masa_jobs import MasaApp
from masa_jobs.containers import BackgroundJobContainer
from masa_jobs.stores import Store

__all__ = ["BULK_CHUNK", "built_app", "fill"]

# Jobs per enqueue_many call: what a caller would send in one round trip.
BULK_CHUNK = 1000


@asynccontextmanager
async def built_app(
    store: Mapping[str, Any], options: Mapping[str, Any], instance: Store | None = None
) -> AsyncIterator[BackgroundJobContainer]:
    """A published container on the ``store`` section (or on ``instance``)."""
    container = BackgroundJobContainer()
    container.config.from_dict({"store": dict(store), "options": dict(options)})
    if instance is not None:
        container.job_store.override(providers.Object(instance))
    # Enqueue-only phases run no worker on purpose, also on the memory store.
    MasaApp.build(container, allow_memory_without_worker=True)
    try:
        yield container
    finally:
        MasaApp.reset()


async def fill(container: BackgroundJobContainer, jobs: int, **enqueue: Any) -> None:
    """Queue ``jobs`` no-op jobs in bulk; the store is opened if it is not yet."""
    from ._bench_jobs import NoOp

    # open() is idempotent, and lifespan() closes the store on exit.
    await container.job_store().open()
    manager = container.job_manager()
    batch = [(NoOp(), None)] * min(BULK_CHUNK, jobs)
    for start in range(0, jobs, BULK_CHUNK):
        await manager.enqueue_many(batch[: min(BULK_CHUNK, jobs - start)], **enqueue)
