"""Schedules of ordinary jobs on every store: the ``payload`` of a schedule.

A schedule added with ``add_or_update_job_schedule`` is a ``ScheduleRecord``
whose ``job_class`` is ``job:<job name>`` and whose ``payload`` holds the
job's args as JSON. A store keeps the payload like any other field, an update
replaces it (and a class schedule has none), and each tick stores the job
itself (its real name, the payload), once, by the same ``fire_schedule``
compare-and-set as class schedules.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import anyio
import pytest

from masa_jobs import JobRecord, JobState, JobStore
from masa_jobs.records import ScheduleRecord
from masa_jobs.schedules import tick_job
from masa_jobs.stores.base import Store
from tests.listing import all_jobs

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC)
TICK = datetime(2024, 5, 1, 12, 5, 0, tzinfo=UTC)
NEXT_TICK = TICK + timedelta(minutes=5)
LEASE = timedelta(seconds=30)
PAYLOAD = '{"tenant":"acme","to":["ops@example.com"],"note":"\\u00e9t\\u00e9 \\u2713"}'


@pytest.fixture
def schedules(store: JobStore) -> Store:
    assert isinstance(store, Store)
    return store


def a_job_schedule(schedule_id: str = "tenant-acme.report", **fields: object) -> ScheduleRecord:
    values: dict[str, object] = {
        "id": schedule_id,
        "job_class": "job:send_report",
        "cron_expression": "*/5 * * * *",
        "timezone": "Europe/Berlin",
        "next_fire_at": TICK,
        "created_at": T0,
        "updated_at": T0,
        "payload": PAYLOAD,
    }
    values.update(fields)
    return ScheduleRecord(**values)  # type: ignore[arg-type]


def a_tick(schedule: ScheduleRecord, fire_at: datetime = TICK) -> JobRecord:
    return tick_job(schedule, fire_at, fire_at + timedelta(milliseconds=250))


async def stored(store: Store, schedule_id: str) -> ScheduleRecord:
    schedule = await store.get_schedule(schedule_id)
    assert schedule is not None
    return schedule


async def test_the_payload_round_trips(schedules: Store) -> None:
    schedule = a_job_schedule(last_fire_at=TICK - timedelta(minutes=5))
    await schedules.upsert_schedule(schedule)

    assert await stored(schedules, schedule.id) == schedule
    assert await schedules.list_schedules() == [schedule]


async def test_a_class_schedule_has_no_payload(schedules: Store) -> None:
    await schedules.upsert_schedule(
        a_job_schedule("a-class", job_class="app.Nightly", payload=None)
    )

    assert (await stored(schedules, "a-class")).payload is None


async def test_an_update_replaces_the_payload_and_keeps_the_tick(schedules: Store) -> None:
    await schedules.upsert_schedule(a_job_schedule())
    changed = a_job_schedule(payload='{"tenant":"acme","to":[]}', next_fire_at=NEXT_TICK)

    await schedules.upsert_schedule(changed)

    got = await stored(schedules, changed.id)
    assert got.payload == changed.payload
    # Same cron and time zone: the stored next tick stays.
    assert got.next_fire_at == TICK


async def test_a_class_schedule_replacing_a_job_schedule_drops_the_payload(
    schedules: Store,
) -> None:
    await schedules.upsert_schedule(a_job_schedule())

    await schedules.upsert_schedule(a_job_schedule(job_class="app.Nightly", payload=None))

    got = await stored(schedules, "tenant-acme.report")
    assert (got.job_class, got.payload) == ("app.Nightly", None)


async def test_a_tick_stores_the_job_itself_with_the_payload(schedules: Store) -> None:
    schedule = a_job_schedule()
    await schedules.upsert_schedule(schedule)
    job = a_tick(await stored(schedules, schedule.id))

    assert await schedules.fire_schedule(schedule.id, TICK, NEXT_TICK, job) is True

    got = await schedules.get(job.id)
    assert got is not None
    assert (got.name, got.payload, got.state, got.attempts) == (
        "send_report",
        PAYLOAD,
        JobState.ENQUEUED,
        0,
    )
    fired = await stored(schedules, schedule.id)
    assert (fired.next_fire_at, fired.last_fire_at, fired.payload) == (NEXT_TICK, TICK, PAYLOAD)
    claimed = await schedules.claim("worker-1", 10, LEASE)
    assert [record.id for record in claimed] == [job.id]
    # The tick moved on: a scheduler that saw the old one stores nothing.
    late = a_tick(schedule)
    assert await schedules.fire_schedule(schedule.id, TICK, NEXT_TICK, late) is False
    assert await schedules.get(late.id) is None


async def test_successive_ticks_each_store_one_job(schedules: Store) -> None:
    schedule = a_job_schedule()
    await schedules.upsert_schedule(schedule)
    ticks = [TICK + timedelta(minutes=5 * n) for n in range(4)]

    for tick, following in pairwise(ticks):
        assert await schedules.fire_schedule(schedule.id, tick, following, a_tick(schedule, tick))

    jobs = await all_jobs(schedules, limit=100)
    assert [(job.name, job.payload) for job in jobs] == [("send_report", PAYLOAD)] * 3


@pytest.mark.parametrize("schedulers", [2, 8])
async def test_concurrent_fires_of_one_tick_store_one_job(
    schedules: Store, schedulers: int
) -> None:
    schedule = a_job_schedule()
    await schedules.upsert_schedule(schedule)
    results: list[bool] = []

    async def fire() -> None:
        job = a_tick(await stored(schedules, schedule.id))
        results.append(await schedules.fire_schedule(schedule.id, TICK, NEXT_TICK, job))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(schedulers):
                tg.start_soon(fire)

    assert sorted(results) == [False] * (schedulers - 1) + [True]
    [job] = await all_jobs(schedules, limit=100)
    assert (job.name, job.payload) == ("send_report", PAYLOAD)
