"""The ``ScheduleStore`` contract: every store keeps recurring jobs the same way.

``fire_schedule`` is the primitive that makes a tick fire once across any
number of schedulers: a compare-and-set of ``next_fire_at`` that stores the
tick's job in the same transaction. ``upsert_schedule`` is atomic too, and an
update never undoes what a fire did. Timestamps use whole milliseconds: a store
must keep at least that precision.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from uuid import uuid4

import anyio
import pytest

from masa_jobs import JobRecord, JobState, JobStore
from masa_jobs.records import ScheduleRecord
from masa_jobs.schedules import ScheduleTick, tick_job
from masa_jobs.stores.base import Store
from tests.listing import all_jobs

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
TICK = datetime(2024, 5, 1, 12, 5, 0, tzinfo=UTC)
NEXT_TICK = TICK + timedelta(minutes=5)
LEASE = timedelta(seconds=30)


@pytest.fixture
def schedules(store: JobStore) -> Store:
    """The contract ``store``: every store keeps recurring jobs too."""
    assert isinstance(store, Store)
    return store


def a_schedule(schedule_id: str = "reports.nightly", **fields: object) -> ScheduleRecord:
    values: dict[str, object] = {
        "id": schedule_id,
        "job_class": "app.reports.NightlyReport",
        "cron_expression": "*/5 * * * *",
        "timezone": "Europe/Berlin",
        "next_fire_at": TICK,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(fields)
    return ScheduleRecord(**values)  # type: ignore[arg-type]


def a_tick(schedule: ScheduleRecord, fire_at: datetime = TICK) -> JobRecord:
    return tick_job(schedule, fire_at, fire_at + timedelta(milliseconds=250))


def assert_utc(*stamps: datetime | None) -> None:
    for stamp in stamps:
        if stamp is not None:
            assert stamp.tzinfo is not None
            assert stamp.utcoffset() == timedelta(0)


async def stored(store: Store, schedule_id: str) -> ScheduleRecord:
    schedule = await store.get_schedule(schedule_id)
    assert schedule is not None
    return schedule


# -- upsert, get, list, delete ----------------------------------------------------------------


async def test_upsert_then_get_round_trips_every_field(schedules: Store) -> None:
    schedule = a_schedule(
        "billing:invoices.monthly-v2",
        job_class="app.billing.jobs.SendInvoices",
        cron_expression="30 0 9 1 * *",
        timezone="America/New_York",
        next_fire_at=datetime(2024, 6, 1, 13, 0, 30, 0, tzinfo=UTC),
        created_at=datetime(2024, 4, 30, 8, 1, 2, 345000, tzinfo=UTC),
        updated_at=datetime(2024, 5, 1, 9, 10, 11, 678000, tzinfo=UTC),
        last_fire_at=datetime(2024, 5, 1, 13, 0, 30, 901000, tzinfo=UTC),
    )
    await schedules.upsert_schedule(schedule)

    got = await stored(schedules, schedule.id)

    assert got == schedule
    assert_utc(got.next_fire_at, got.created_at, got.updated_at, got.last_fire_at)


async def test_a_schedule_that_never_fired_has_no_last_fire_at(schedules: Store) -> None:
    await schedules.upsert_schedule(a_schedule())

    assert (await stored(schedules, "reports.nightly")).last_fire_at is None


async def test_get_of_an_unknown_schedule_is_none(schedules: Store) -> None:
    assert await schedules.get_schedule("nope") is None


async def test_list_schedules_by_id(schedules: Store) -> None:
    assert await schedules.list_schedules() == []
    for schedule_id in ("c", "a", "b"):
        await schedules.upsert_schedule(a_schedule(schedule_id))

    assert [s.id for s in await schedules.list_schedules()] == ["a", "b", "c"]
    assert await schedules.list_schedules() == [a_schedule(i) for i in ("a", "b", "c")]


async def test_upsert_updates_the_schedule_with_the_same_id(schedules: Store) -> None:
    earlier = TICK - timedelta(minutes=5)
    await schedules.upsert_schedule(a_schedule(last_fire_at=earlier))
    changed = a_schedule(
        job_class="app.reports.OtherReport",
        cron_expression="0 3 * * *",
        timezone="UTC",
        next_fire_at=TICK + timedelta(hours=15),
        created_at=T0 + timedelta(seconds=1),
        updated_at=T0 + timedelta(seconds=1),
        last_fire_at=TICK,
    )

    await schedules.upsert_schedule(changed)

    # Created once, and fired only by fire_schedule: an update keeps both stamps.
    assert await schedules.list_schedules() == [
        replace(changed, created_at=T0, last_fire_at=earlier)
    ]


async def test_an_update_of_an_unchanged_cron_keeps_the_tick_a_fire_moved(
    schedules: Store,
) -> None:
    schedule = a_schedule()
    await schedules.upsert_schedule(schedule)
    # A scheduler fires the tick while an operator, who read the schedule
    # before, saves it with the same cron and time zone.
    assert await schedules.fire_schedule(schedule.id, TICK, NEXT_TICK, a_tick(schedule))
    saved = a_schedule(
        job_class="app.reports.RenamedReport",
        next_fire_at=TICK,
        created_at=T0 + timedelta(days=1),
        updated_at=T0 + timedelta(seconds=5),
    )

    await schedules.upsert_schedule(saved)

    after = await stored(schedules, schedule.id)
    assert after == replace(saved, next_fire_at=NEXT_TICK, created_at=T0, last_fire_at=TICK)
    # The tick cannot fire twice.
    assert await schedules.fire_schedule(schedule.id, TICK, NEXT_TICK, a_tick(schedule)) is False
    assert len(await all_jobs(schedules)) == 1


@pytest.mark.parametrize(
    "change",
    [{"cron_expression": "0 * * * *"}, {"timezone": "Asia/Tokyo"}],
    ids=["cron", "timezone"],
)
async def test_an_update_of_the_timing_replaces_the_next_tick(
    schedules: Store, change: dict[str, str]
) -> None:
    schedule = a_schedule()
    await schedules.upsert_schedule(schedule)
    assert await schedules.fire_schedule(schedule.id, TICK, NEXT_TICK, a_tick(schedule))
    retimed_tick = TICK + timedelta(hours=1)
    saved = a_schedule(next_fire_at=retimed_tick, updated_at=T0 + timedelta(seconds=5), **change)

    await schedules.upsert_schedule(saved)

    after = await stored(schedules, schedule.id)
    assert after == replace(saved, created_at=T0, last_fire_at=TICK)
    assert after.next_fire_at == retimed_tick


async def test_delete_schedule(schedules: Store) -> None:
    await schedules.upsert_schedule(a_schedule("gone"))
    await schedules.upsert_schedule(a_schedule("kept"))

    assert await schedules.delete_schedule("gone") is True
    assert await schedules.delete_schedule("gone") is False
    assert await schedules.get_schedule("gone") is None
    assert [s.id for s in await schedules.list_schedules()] == ["kept"]


async def test_schedules_and_jobs_are_apart(schedules: Store) -> None:
    schedule = a_schedule()
    await schedules.upsert_schedule(schedule)
    assert await all_jobs(schedules) == []

    await schedules.add([a_tick(schedule)])
    assert await schedules.delete_schedule(schedule.id)

    assert len(await all_jobs(schedules)) == 1


# -- fire_schedule: the compare-and-set -----------------------------------------------------------


async def test_fire_schedule_applies_once(schedules: Store) -> None:
    schedule = a_schedule()
    await schedules.upsert_schedule(schedule)
    job = a_tick(schedule)

    assert await schedules.fire_schedule(schedule.id, TICK, NEXT_TICK, job) is True

    fired = await stored(schedules, schedule.id)
    assert (fired.next_fire_at, fired.last_fire_at) == (NEXT_TICK, TICK)
    assert (fired.job_class, fired.cron_expression, fired.timezone, fired.created_at) == (
        schedule.job_class,
        schedule.cron_expression,
        schedule.timezone,
        schedule.created_at,
    )
    assert_utc(fired.next_fire_at, fired.last_fire_at)
    # The schedule already moved on: a scheduler that saw the old tick loses.
    late = a_tick(schedule)
    assert await schedules.fire_schedule(schedule.id, TICK, NEXT_TICK, late) is False
    assert await schedules.get(late.id) is None
    assert await stored(schedules, schedule.id) == fired


async def test_the_tick_job_is_stored_with_the_schedule_and_claimable(schedules: Store) -> None:
    schedule = a_schedule()
    await schedules.upsert_schedule(schedule)
    job = a_tick(schedule)

    assert await schedules.fire_schedule(schedule.id, TICK, NEXT_TICK, job)

    got = await schedules.get(job.id)
    assert got is not None
    assert (got.name, got.payload, got.state, got.attempts) == (
        "schedule:reports.nightly",
        job.payload,
        JobState.ENQUEUED,
        0,
    )
    # Due as the tick says; a network store rebases it on its clock.
    assert got.next_try_at - got.created_at == job.next_try_at - job.created_at
    tick = ScheduleTick.model_validate_json(got.payload)
    assert (tick.schedule_id, tick.job_class, tick.fire_at) == (
        schedule.id,
        schedule.job_class,
        TICK,
    )
    claimed = await schedules.claim("worker-1", 10, LEASE)
    assert [record.id for record in claimed] == [job.id]


async def test_fire_schedule_without_a_job_skips_the_tick(schedules: Store) -> None:
    earlier = TICK - timedelta(minutes=5)
    schedule = a_schedule(last_fire_at=earlier)
    await schedules.upsert_schedule(schedule)

    assert await schedules.fire_schedule(schedule.id, TICK, NEXT_TICK, None) is True

    skipped = await stored(schedules, schedule.id)
    assert (skipped.next_fire_at, skipped.last_fire_at) == (NEXT_TICK, earlier)
    assert await all_jobs(schedules) == []


async def test_fire_schedule_compares_the_expected_tick(schedules: Store) -> None:
    schedule = a_schedule()
    await schedules.upsert_schedule(schedule)
    job = a_tick(schedule)

    other_tick = TICK - timedelta(milliseconds=1)
    assert await schedules.fire_schedule(schedule.id, other_tick, NEXT_TICK, job) is False

    assert await stored(schedules, schedule.id) == schedule
    assert await all_jobs(schedules) == []


async def test_fire_schedule_of_an_unknown_schedule_stores_nothing(schedules: Store) -> None:
    job = a_tick(a_schedule("missing"))

    assert await schedules.fire_schedule("missing", TICK, NEXT_TICK, job) is False

    assert await schedules.get(job.id) is None
    assert await schedules.get_schedule("missing") is None


async def test_a_replaced_schedule_does_not_fire_its_old_tick(schedules: Store) -> None:
    schedule = a_schedule()
    await schedules.upsert_schedule(schedule)
    # Updated (new cron) after a scheduler read it, before that scheduler fired.
    await schedules.upsert_schedule(a_schedule(cron_expression="0 * * * *", next_fire_at=NEXT_TICK))

    assert await schedules.fire_schedule(schedule.id, TICK, NEXT_TICK, a_tick(schedule)) is False
    assert await all_jobs(schedules) == []


async def test_successive_ticks_fire_in_turn(schedules: Store) -> None:
    schedule = a_schedule()
    await schedules.upsert_schedule(schedule)
    ticks = [TICK + timedelta(minutes=5 * n) for n in range(4)]

    for tick, following in pairwise(ticks):
        assert await schedules.fire_schedule(schedule.id, tick, following, a_tick(schedule, tick))

    fire_times = sorted(
        ScheduleTick.model_validate_json(job.payload).fire_at for job in await all_jobs(schedules)
    )
    assert fire_times == ticks[:-1]
    assert (await stored(schedules, schedule.id)).last_fire_at == ticks[-2]


@pytest.mark.parametrize("schedulers", [2, 8])
async def test_concurrent_fires_of_one_tick_apply_once(schedules: Store, schedulers: int) -> None:
    schedule = a_schedule()
    await schedules.upsert_schedule(schedule)
    results: list[bool] = []

    async def fire() -> None:
        job = a_tick(schedule)
        results.append(await schedules.fire_schedule(schedule.id, TICK, NEXT_TICK, job))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(schedulers):
                tg.start_soon(fire)

    assert sorted(results) == [False] * (schedulers - 1) + [True]
    [job] = await all_jobs(schedules)
    assert job.name == f"schedule:{schedule.id}"
    assert (await stored(schedules, schedule.id)).next_fire_at == NEXT_TICK


async def test_fires_of_different_schedules_do_not_interfere(schedules: Store) -> None:
    ids = [f"s-{n}-{uuid4().hex[:6]}" for n in range(5)]
    for schedule_id in ids:
        await schedules.upsert_schedule(a_schedule(schedule_id))

    async def fire(schedule_id: str) -> None:
        job = a_tick(a_schedule(schedule_id))
        assert await schedules.fire_schedule(schedule_id, TICK, NEXT_TICK, job)

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for schedule_id in ids:
                tg.start_soon(fire, schedule_id)

    assert sorted(job.name for job in await all_jobs(schedules)) == sorted(
        f"schedule:{schedule_id}" for schedule_id in ids
    )
    assert all(s.next_fire_at == NEXT_TICK for s in await schedules.list_schedules())
