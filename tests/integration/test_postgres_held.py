"""The PostgreSQL store's single adds keep one pool connection while they come
back to back, and give it back as soon as anything else runs: the pool is
never short of it, whatever the pool's size, and a cancelled or failed add
leaks no connection."""

from __future__ import annotations

import anyio
import pytest

from masa_jobs.exceptions import DuplicateJobError
from tests.integration.test_postgres import PROMPTLY, job, opened

pytestmark = pytest.mark.anyio

# Adds in a row, enough for every path of the held connection to repeat.
ROUNDS = 30
# Cancel the n-th of those adds after n times this: from at once to mid-statement.
CANCEL_STEP_SECONDS = 0.0001


async def test_back_to_back_adds_leave_the_only_pool_connection_to_others(schema: str) -> None:
    async with opened(schema, pool_max_size=1) as store:
        records = [job() for _ in range(ROUNDS)]
        with anyio.fail_after(PROMPTLY):
            for record in records:
                await store.add([record])
                # Another call right after an add, on the pool's only connection.
                assert await store.get(record.id) is not None


async def test_concurrent_adds_on_one_pool_connection_all_store(schema: str) -> None:
    async with opened(schema, pool_max_size=1) as store:
        records = [job() for _ in range(ROUNDS)]
        with anyio.fail_after(PROMPTLY):
            async with anyio.create_task_group() as group:
                for record in records:
                    group.start_soon(store.add, [record])
            for record in records:
                assert await store.get(record.id) is not None


async def test_a_failed_or_cancelled_add_gives_its_connection_back(schema: str) -> None:
    async with opened(schema, pool_max_size=1) as store:
        stored = job()
        await store.add([stored])
        with anyio.fail_after(PROMPTLY):
            for _ in range(ROUNDS):
                with pytest.raises(DuplicateJobError):
                    await store.add([stored])
            for step in range(ROUNDS):
                # Cancelled at once or at points of the statement: nothing is held.
                with anyio.move_on_after(step * CANCEL_STEP_SECONDS):
                    await store.add([job()])
            later = job()
            await store.add([later])
            assert await store.get(later.id) is not None
