"""Job ids: random version 4 UUIDs as 32 lowercase hex digits, as ``uuid4().hex`` gives."""

from __future__ import annotations

import uuid

import pytest

from masa_jobs import DefaultJobManager, JobRegistry, MemoryJobStore
from masa_jobs.records import new_job_id

from .support import ALL_HANDLERS, Greet, fast_options

pytestmark = pytest.mark.anyio

SAMPLES = 20_000


def test_an_id_is_the_hex_of_a_version_4_uuid() -> None:
    for _ in range(1_000):
        job_id = new_job_id()
        parsed = uuid.UUID(hex=job_id)
        assert parsed.hex == job_id  # 32 lowercase hex digits, leading zeros kept
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122


def test_ids_do_not_repeat_and_use_every_random_bit() -> None:
    ids = [int(new_job_id(), 16) for _ in range(SAMPLES)]

    assert len(set(ids)) == SAMPLES
    fixed = (0xF000 << 64) | (0xC000 << 48)
    varying = 0
    for value in ids:
        varying |= value ^ ids[0]
    # Every bit but the six that name the version and variant takes both values.
    assert varying == ((1 << 128) - 1) & ~fixed


async def test_enqueue_gives_each_job_such_an_id() -> None:
    store = MemoryJobStore()
    manager = DefaultJobManager(store, JobRegistry(ALL_HANDLERS), fast_options())

    one = await manager.enqueue(Greet(key="a"))
    many = await manager.enqueue_many([(Greet(key="b"), None), (Greet(key="c"), None)])

    for job_id in (one, *many):
        assert uuid.UUID(hex=job_id).version == 4
        assert await store.get(job_id) is not None
