"""Fencing on every store: only a new claim ends a lease.

A lease that expired is still its holder's until another claim takes that
very job; a claim that takes other jobs leaves it alone, so a whole fleet
that was paused or cut off together runs nothing twice.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import anyio
import pytest

from masa_jobs import JobOutcome, JobRecord, JobState, JobStore

pytestmark = pytest.mark.anyio

SHORT = timedelta(seconds=0.2)
LEASE = timedelta(seconds=30)


async def new_job(store: JobStore, age: timedelta) -> JobRecord:
    now = await store.now()
    record = JobRecord(
        id=uuid4().hex,
        name="fencing",
        payload="{}",
        state=JobState.ENQUEUED,
        created_at=now - age,
        next_try_at=now - age,
    )
    await store.add([record])
    return record


async def expired(store: JobStore, record: JobRecord) -> None:
    assert record.lease_expires_at is not None
    with anyio.fail_after(5):
        while await store.now() <= record.lease_expires_at:  # noqa: ASYNC110
            await anyio.sleep(0.02)


async def test_a_claim_ends_only_the_leases_it_takes(store: JobStore) -> None:
    await new_job(store, timedelta(seconds=2))
    await new_job(store, timedelta(seconds=1))
    held = await store.claim("worker-1", 10, SHORT)
    assert len(held) == 2
    for record in held:
        await expired(store, record)

    [taken] = await store.claim("worker-2", 1, LEASE)

    [kept] = [record for record in held if record.id != taken.id]
    assert kept.lease_token is not None
    assert await store.extend_leases("worker-1", {kept.id: kept.lease_token}, LEASE) == {kept.id}
    outcome = JobOutcome(
        job_id=kept.id,
        state=JobState.SUCCEEDED,
        attempts=kept.attempts,
        next_try_at=kept.next_try_at,
        finished_at=await store.now(),
        lease_token=kept.lease_token,
    )
    assert await store.finish("worker-1", [outcome]) == {kept.id}
    stored = await store.get(kept.id)
    assert stored is not None
    assert stored.state is JobState.SUCCEEDED
    assert stored.attempts == 1
