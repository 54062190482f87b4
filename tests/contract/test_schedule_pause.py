"""Pausing a schedule on every store: ``set_schedule_paused`` and ``paused``.

A paused schedule stays stored as it was; ``fire_schedule`` does not fire it
(even when the caller read it before the pause), and ``upsert_schedule``
never changes whether it is paused, so a worker that declares the class
again does not resume it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from masa_jobs import JobStore
from masa_jobs.records import ScheduleRecord
from masa_jobs.schedules import tick_job
from masa_jobs.stores.base import Store

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
TICK = datetime(2024, 5, 1, 12, 5, 0, tzinfo=UTC)
NEXT_TICK = TICK + timedelta(minutes=5)


@pytest.fixture
def schedules(store: JobStore) -> Store:
    assert isinstance(store, Store)
    return store


def a_schedule(schedule_id: str = "nightly", **fields: object) -> ScheduleRecord:
    values: dict[str, object] = {
        "id": schedule_id,
        "job_class": "job:send_report",
        "cron_expression": "*/5 * * * *",
        "timezone": "UTC",
        "next_fire_at": TICK,
        "created_at": T0,
        "updated_at": T0,
        "payload": '{"tenant":"acme"}',
    }
    values.update(fields)
    return ScheduleRecord(**values)  # type: ignore[arg-type]


async def stored(store: Store, schedule_id: str) -> ScheduleRecord:
    schedule = await store.get_schedule(schedule_id)
    assert schedule is not None
    return schedule


async def test_a_new_schedule_is_not_paused(schedules: Store) -> None:
    await schedules.upsert_schedule(a_schedule())

    assert (await stored(schedules, "nightly")).paused is False


async def test_pause_and_resume_round_trip(schedules: Store) -> None:
    schedule = a_schedule(last_fire_at=TICK - timedelta(minutes=5))
    await schedules.upsert_schedule(schedule)

    assert await schedules.set_schedule_paused("nightly", True)
    assert await stored(schedules, "nightly") == replace(schedule, paused=True)
    assert [s.paused for s in await schedules.list_schedules()] == [True]

    assert await schedules.set_schedule_paused("nightly", False)
    assert await stored(schedules, "nightly") == schedule


async def test_pausing_twice_is_harmless(schedules: Store) -> None:
    await schedules.upsert_schedule(a_schedule())

    assert await schedules.set_schedule_paused("nightly", True)
    assert await schedules.set_schedule_paused("nightly", True)
    assert (await stored(schedules, "nightly")).paused is True


async def test_an_unknown_id_is_false(schedules: Store) -> None:
    await schedules.upsert_schedule(a_schedule())

    assert await schedules.set_schedule_paused("nope", True) is False
    assert await schedules.set_schedule_paused("nope", False) is False
    assert await schedules.get_schedule("nope") is None


async def test_upsert_keeps_a_paused_schedule_paused(schedules: Store) -> None:
    await schedules.upsert_schedule(a_schedule())
    await schedules.set_schedule_paused("nightly", True)

    # The record given says "not paused" (its default), and the timing changes.
    await schedules.upsert_schedule(
        a_schedule(cron_expression="0 * * * *", next_fire_at=NEXT_TICK, updated_at=TICK)
    )

    updated = await stored(schedules, "nightly")
    assert updated.paused is True
    assert (updated.cron_expression, updated.next_fire_at) == ("0 * * * *", NEXT_TICK)


async def test_upsert_keeps_a_running_schedule_running(schedules: Store) -> None:
    await schedules.upsert_schedule(a_schedule())

    await schedules.upsert_schedule(a_schedule(paused=True, updated_at=TICK))

    assert (await stored(schedules, "nightly")).paused is False


async def test_a_paused_schedule_does_not_fire(schedules: Store) -> None:
    schedule = a_schedule()
    await schedules.upsert_schedule(schedule)
    # The scheduler read the schedule before the pause landed.
    await schedules.set_schedule_paused("nightly", True)

    job = tick_job(schedule, TICK, TICK)
    assert await schedules.fire_schedule("nightly", TICK, NEXT_TICK, job) is False
    assert await schedules.fire_schedule("nightly", TICK, NEXT_TICK, None) is False

    after = await stored(schedules, "nightly")
    assert (after.next_fire_at, after.last_fire_at) == (TICK, None)
    assert await schedules.get(job.id) is None


async def test_a_resumed_schedule_fires_its_tick(schedules: Store) -> None:
    schedule = a_schedule()
    await schedules.upsert_schedule(schedule)
    await schedules.set_schedule_paused("nightly", True)
    await schedules.set_schedule_paused("nightly", False)

    job = tick_job(schedule, TICK, TICK)
    assert await schedules.fire_schedule("nightly", TICK, NEXT_TICK, job) is True

    after = await stored(schedules, "nightly")
    assert (after.next_fire_at, after.last_fire_at) == (NEXT_TICK, TICK)
    assert await schedules.get(job.id) is not None
