"""Every job a store holds, for tests that look at all of it: a walk over
``list_jobs`` pages (newest first)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import replace

from masa_jobs import JobQuery, JobRecord, JobState
from masa_jobs.queries import MAX_PAGE_SIZE
from masa_jobs.stores.base import OperatorStore


async def all_jobs(
    store: OperatorStore,
    states: Collection[JobState] | None = None,
    *,
    limit: int | None = None,
) -> list[JobRecord]:
    """The jobs in ``states`` (every state when None), newest first, at most ``limit``."""
    query = JobQuery.of(states, limit=MAX_PAGE_SIZE)
    found: list[JobRecord] = []
    while True:
        page = await store.list_jobs(query, await store.now())
        found.extend(page.items)
        if page.next_cursor is None or (limit is not None and len(found) >= limit):
            return found if limit is None else found[:limit]
        query = replace(query, cursor=page.next_cursor)
