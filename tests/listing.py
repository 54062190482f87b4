"""Every job a store holds, for tests that look at all of it: a walk over
``list_jobs`` pages (newest first)."""

from __future__ import annotations

from collections.abc import Collection
from contextlib import aclosing

from masa_jobs import JobQuery, JobRecord, JobState, Page
from masa_jobs.queries import MAX_PAGE_SIZE, pages
from masa_jobs.stores.base import OperatorStore


async def all_jobs(
    store: OperatorStore,
    states: Collection[JobState] | None = None,
    *,
    limit: int | None = None,
) -> list[JobRecord]:
    """The jobs in ``states`` (every state when None), newest first, at most ``limit``."""
    found: list[JobRecord] = []

    async def fetch(query: JobQuery) -> Page[JobRecord]:
        return await store.list_jobs(query, await store.now())

    async with aclosing(pages(fetch, JobQuery.of(states, limit=MAX_PAGE_SIZE))) as walk:
        async for page in walk:
            found.extend(page.items)
            if limit is not None and len(found) >= limit:
                return found[:limit]
    return found
