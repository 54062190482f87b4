"""Pausing and resuming recurring jobs (memory store).

``pause_schedule`` stops a schedule's ticks without removing it;
``resume_schedule`` starts them again, and the ticks missed while paused
follow the missed-ticks rule (``misfire_grace``, ``missed_ticks``). The
scheduler is driven by ``Scheduler.fire_due()`` on schedules whose
``next_fire_at`` the test sets.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import pytest

from masa_jobs import (
    BackgroundJobOptions,
    DefaultJobManager,
    JobRecord,
    JobRegistry,
    MemoryJobStore,
)
from masa_jobs.exceptions import ScheduleNotFoundError
from masa_jobs.records import ScheduleRecord, utcnow
from masa_jobs.scheduler import MAX_SLEEP_SECONDS, Scheduler
from tests.listing import all_jobs

from .schedule_jobs import RecordingTick, on
from .support import Greet, GreetJob

pytestmark = pytest.mark.anyio

REGISTRY = JobRegistry([GreetJob], (RecordingTick,))
GREET = REGISTRY.name_of(Greet)
# A yearly tick: far from any test's "now", so that only the test moves it.
NEW_YEAR = "0 0 1 1 *"


@pytest.fixture
def store() -> MemoryJobStore:
    return MemoryJobStore()


@pytest.fixture
def manager(store: MemoryJobStore) -> DefaultJobManager:
    return DefaultJobManager(store, REGISTRY, BackgroundJobOptions())


async def stored_schedule(store: MemoryJobStore, schedule_id: str) -> ScheduleRecord:
    schedule = await store.get_schedule(schedule_id)
    assert schedule is not None
    return schedule


async def make_due(store: MemoryJobStore, schedule_id: str, late: timedelta) -> datetime:
    """Move the schedule's next tick ``late`` into the past; returns that tick."""
    due = utcnow().replace(microsecond=0) - late
    schedule = await stored_schedule(store, schedule_id)
    # Deleted first: an upsert with the same cron keeps the stored next tick.
    await store.delete_schedule(schedule_id)
    await store.upsert_schedule(replace(schedule, next_fire_at=due))
    return due


async def greets(store: MemoryJobStore) -> list[JobRecord]:
    return [job for job in await all_jobs(store, limit=1000) if job.name == GREET]


async def paused_greet(manager: DefaultJobManager, store: MemoryJobStore, late: float) -> datetime:
    """A schedule of Greet, paused, whose tick fell due ``late`` seconds ago."""
    await manager.add_or_update_job_schedule("greet", Greet(key="tick"), NEW_YEAR)
    await manager.pause_schedule("greet")
    return await make_due(store, "greet", timedelta(seconds=late))


async def test_a_paused_schedule_does_not_fire(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    due = await paused_greet(manager, store, late=1)
    scheduler = Scheduler(store, REGISTRY, BackgroundJobOptions())

    wait = await scheduler.fire_due()
    await scheduler.fire_due()

    assert await greets(store) == []
    schedule = await stored_schedule(store, "greet")
    assert (schedule.next_fire_at, schedule.last_fire_at, schedule.paused) == (due, None, True)
    # A paused schedule's overdue tick does not make the scheduler spin.
    assert wait == MAX_SLEEP_SECONDS


async def test_a_resumed_schedule_fires_its_tick_within_the_grace(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    due = await paused_greet(manager, store, late=1)
    scheduler = Scheduler(store, REGISTRY, BackgroundJobOptions())
    await scheduler.fire_due()

    await manager.resume_schedule("greet")
    await scheduler.fire_due()

    [job] = await greets(store)
    assert job.payload == Greet(key="tick").model_dump_json()
    schedule = await stored_schedule(store, "greet")
    assert (schedule.last_fire_at, schedule.paused) == (due, False)
    assert schedule.next_fire_at > utcnow()


@pytest.mark.parametrize(("missed_ticks", "runs"), [("coalesce", 1), ("skip", 0)])
async def test_ticks_missed_while_paused_follow_missed_ticks(
    manager: DefaultJobManager, store: MemoryJobStore, missed_ticks: str, runs: int
) -> None:
    options = BackgroundJobOptions(missed_ticks=missed_ticks, misfire_grace=60)  # type: ignore[arg-type]
    await paused_greet(manager, store, late=3600)

    await manager.resume_schedule("greet")
    await Scheduler(store, REGISTRY, options).fire_due()

    assert len(await greets(store)) == runs
    assert (await stored_schedule(store, "greet")).next_fire_at > utcnow()


async def test_list_schedules_shows_paused(manager: DefaultJobManager) -> None:
    await manager.add_or_update_job_schedule("a", Greet(key="a"), NEW_YEAR)
    await manager.add_or_update_job_schedule("b", Greet(key="b"), NEW_YEAR)

    await manager.pause_schedule("b")

    assert [(info.id, info.paused) for info in await manager.list_schedules()] == [
        ("a", False),
        ("b", True),
    ]
    await manager.resume_schedule("b")
    assert [info.paused for info in await manager.list_schedules()] == [False, False]


async def test_updating_a_paused_schedule_keeps_it_paused(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    await manager.add_or_update_job_schedule("job", Greet(key="a"), NEW_YEAR)
    await manager.add_or_update_schedule(on(RecordingTick(), "class", NEW_YEAR))
    await manager.pause_schedule("job")
    await manager.pause_schedule("class")

    await manager.add_or_update_job_schedule("job", Greet(key="b"), "0 0 2 1 *")
    await manager.add_or_update_schedule(on(RecordingTick(), "class", "0 0 2 1 *"))

    for schedule_id in ("job", "class"):
        schedule = await stored_schedule(store, schedule_id)
        assert (schedule.cron_expression, schedule.paused) == ("0 0 2 1 *", True)


async def test_trigger_runs_a_paused_schedule(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    await paused_greet(manager, store, late=1)

    job_id = await manager.trigger_schedule("greet")

    assert [job.id for job in await greets(store)] == [job_id]
    assert (await stored_schedule(store, "greet")).paused is True


@pytest.mark.parametrize("operation", ["pause_schedule", "resume_schedule"])
async def test_an_unknown_id_raises(manager: DefaultJobManager, operation: str) -> None:
    with pytest.raises(ScheduleNotFoundError, match=r"'nope'.*list_schedules"):
        await getattr(manager, operation)("nope")
