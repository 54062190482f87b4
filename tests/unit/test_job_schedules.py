"""Schedules of ordinary jobs, added at run time with their args (memory store).

``add_or_update_job_schedule(schedule_id, args, cron, timezone)`` stores a
schedule whose every tick enqueues the job of ``args``: the job's own
handlers run it, with retries, like any enqueued job. The scheduler is driven
by ``Scheduler.fire_due()`` on schedules whose ``next_fire_at`` the test
sets; tests that run a worker wait on conditions, never on timings.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

import anyio
import pytest
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import (
    BackgroundJobManager,
    BackgroundJobOptions,
    DefaultJobManager,
    JobRecord,
    JobRegistry,
    JobState,
    MasaApp,
    MemoryJobStore,
    Worker,
)
from masa_jobs.exceptions import (
    InvalidJobArgsError,
    InvalidScheduleError,
    PayloadTooLargeError,
    ScheduleNotFoundError,
    UnknownJobError,
)
from masa_jobs.records import ScheduleRecord, utcnow
from masa_jobs.scheduler import Scheduler
from tests.listing import all_jobs

from .schedule_jobs import RecordingTick, on
from .support import (
    Greet,
    GreetJob,
    Strict,
    StrictJob,
    calls_of,
    fast_options,
    running,
    wait_for_record,
    wait_until,
)

pytestmark = pytest.mark.anyio

REGISTRY = JobRegistry([GreetJob, StrictJob], (RecordingTick,))
GREET = REGISTRY.name_of(Greet)
# A yearly tick: far from any test's "now", so that only the test moves it.
NEW_YEAR = "0 0 1 1 *"


class Unregistered(BaseModel):
    key: str


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


async def make_due(store: MemoryJobStore, schedule_id: str) -> datetime:
    """Move the schedule's next tick into the past; returns that tick."""
    due = utcnow().replace(microsecond=0) - timedelta(seconds=1)
    schedule = await stored_schedule(store, schedule_id)
    # Deleted first: an upsert with the same cron keeps the stored next tick.
    await store.delete_schedule(schedule_id)
    await store.upsert_schedule(replace(schedule, next_fire_at=due))
    return due


async def jobs_of(store: MemoryJobStore, name: str | None = GREET) -> list[JobRecord]:
    return [job for job in await all_jobs(store, limit=1000) if job.name == name]


# -- adding, updating, listing ------------------------------------------------------------


async def test_a_job_schedule_is_stored_with_its_args(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    before = utcnow()
    await manager.add_or_update_job_schedule(
        "tenant-1.greet", Greet(key="tenant-1"), "0 8 * * *", timezone="Europe/Berlin"
    )

    schedule = await stored_schedule(store, "tenant-1.greet")
    assert (schedule.job_class, schedule.cron_expression, schedule.timezone) == (
        f"job:{GREET}",
        "0 8 * * *",
        "Europe/Berlin",
    )
    assert schedule.payload == Greet(key="tenant-1").model_dump_json()
    assert schedule.next_fire_at > before
    assert schedule.last_fire_at is None
    [info] = await manager.list_schedules()
    assert (info.id, info.job_class, info.known, info.args) == (
        "tenant-1.greet",
        f"job:{GREET}",
        True,
        {"key": "tenant-1"},
    )


async def test_the_time_zone_defaults_to_utc(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    await manager.add_or_update_job_schedule("utc", Greet(key="k"), NEW_YEAR)

    assert (await stored_schedule(store, "utc")).timezone == "UTC"


async def test_an_update_replaces_the_args_and_keeps_the_next_tick(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    await manager.add_or_update_job_schedule("s", Greet(key="old"), NEW_YEAR)
    first = await stored_schedule(store, "s")

    await manager.add_or_update_job_schedule("s", Greet(key="old"), NEW_YEAR)
    assert await stored_schedule(store, "s") == first  # unchanged: nothing written

    await manager.add_or_update_job_schedule("s", Greet(key="new"), NEW_YEAR)
    updated = await stored_schedule(store, "s")
    assert updated.payload == Greet(key="new").model_dump_json()
    assert (updated.next_fire_at, updated.created_at) == (first.next_fire_at, first.created_at)

    await manager.add_or_update_job_schedule("s", Greet(key="new"), "0 0 1 7 *")
    retimed = await stored_schedule(store, "s")
    assert retimed.cron_expression == "0 0 1 7 *"
    assert retimed.next_fire_at != first.next_fire_at


async def test_a_class_schedule_with_the_same_id_replaces_a_job_schedule(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    await manager.add_or_update_job_schedule("shared", Greet(key="k"), NEW_YEAR)

    await manager.add_or_update_schedule(on(RecordingTick(), "shared", NEW_YEAR))

    schedule = await stored_schedule(store, "shared")
    assert schedule.job_class == "tests.unit.schedule_jobs.RecordingTick"
    assert schedule.payload is None
    [info] = await manager.list_schedules()
    assert (info.known, info.args) == (True, None)


async def test_a_job_without_a_handler_here_is_listed_as_unknown(store: MemoryJobStore) -> None:
    await DefaultJobManager(store, REGISTRY, BackgroundJobOptions()).add_or_update_job_schedule(
        "elsewhere", Greet(key="k"), NEW_YEAR
    )
    other = DefaultJobManager(store, JobRegistry([StrictJob], ()), BackgroundJobOptions())

    [info] = await other.list_schedules()

    assert (info.id, info.known, info.args) == ("elsewhere", False, {"key": "k"})


# -- bad input stores nothing ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule_id", "args", "cron", "timezone", "error", "message"),
    [
        ("s", Unregistered(key="k"), NEW_YEAR, "UTC", UnknownJobError, "no handler"),
        ("s", {"key": "k"}, NEW_YEAR, "UTC", InvalidJobArgsError, "pydantic model"),
        ("s", Greet, NEW_YEAR, "UTC", InvalidJobArgsError, "not an instance"),
        (
            "s",
            Strict.model_construct(count="many"),
            NEW_YEAR,
            "UTC",
            InvalidJobArgsError,
            "count",
        ),
        ("s", Greet(key="k"), "every day", "UTC", InvalidScheduleError, "every day"),
        ("s", Greet(key="k"), NEW_YEAR, "Mars/Olympus", InvalidScheduleError, "Mars/Olympus"),
        ("", Greet(key="k"), NEW_YEAR, "UTC", InvalidScheduleError, "needs an id of 1-200"),
        ("a b", Greet(key="k"), NEW_YEAR, "UTC", InvalidScheduleError, "needs an id of 1-200"),
    ],
    ids=[
        "unregistered",
        "not-a-model",
        "a-class",
        "invalid-args",
        "bad-cron",
        "bad-zone",
        "empty-id",
        "bad-id",
    ],
)
async def test_bad_input_is_refused_and_stores_nothing(
    manager: DefaultJobManager,
    store: MemoryJobStore,
    schedule_id: str,
    args: object,
    cron: str,
    timezone: str,
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        await manager.add_or_update_job_schedule(
            schedule_id,
            args,  # type: ignore[arg-type]
            cron,
            timezone,
        )

    assert await store.list_schedules() == []
    assert await all_jobs(store) == []


async def test_args_over_the_size_limit_are_refused(store: MemoryJobStore) -> None:
    manager = DefaultJobManager(store, REGISTRY, BackgroundJobOptions(max_payload_bytes=100))

    with pytest.raises(PayloadTooLargeError, match="100-byte limit"):
        await manager.add_or_update_job_schedule("big", Greet(key="x" * 200), NEW_YEAR)

    assert await store.list_schedules() == []


# -- ticks ------------------------------------------------------------------------------------


async def test_a_tick_enqueues_the_job_with_its_args_once(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    await manager.add_or_update_job_schedule("tick", Greet(key="ticked"), NEW_YEAR)
    due = await make_due(store, "tick")
    scheduler = Scheduler(store, REGISTRY, BackgroundJobOptions())

    await scheduler.fire_due()
    await scheduler.fire_due()

    [job] = await jobs_of(store)
    assert (job.payload, job.state) == (Greet(key="ticked").model_dump_json(), JobState.ENQUEUED)
    assert await jobs_of(store, "schedule:tick") == []
    fired = await stored_schedule(store, "tick")
    assert fired.last_fire_at == due
    assert fired.next_fire_at > utcnow()
    async with running(Worker(store, REGISTRY, fast_options())):
        await wait_for_record(store, job.id, lambda r: r.state is JobState.SUCCEEDED)
    assert calls_of("greet") == ["ticked"]


@pytest.mark.parametrize("schedulers", [3])
async def test_concurrent_schedulers_fire_one_tick_once(
    manager: DefaultJobManager, store: MemoryJobStore, schedulers: int
) -> None:
    await manager.add_or_update_job_schedule("shared-tick", Greet(key="once"), NEW_YEAR)
    await make_due(store, "shared-tick")

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for _ in range(schedulers):
                tg.start_soon(Scheduler(store, REGISTRY, BackgroundJobOptions()).fire_due)

    assert len(await jobs_of(store)) == 1


async def test_a_failing_job_of_a_tick_is_retried_like_any_job(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    await manager.add_or_update_job_schedule("strict", Strict(count=3), NEW_YEAR)
    await make_due(store, "strict")
    await Scheduler(store, REGISTRY, BackgroundJobOptions()).fire_due()

    [job] = await jobs_of(store, REGISTRY.name_of(Strict))
    async with running(Worker(store, REGISTRY, fast_options())):
        await wait_for_record(store, job.id, lambda r: r.state is JobState.SUCCEEDED)
    assert calls_of("strict") == ["3"]


# -- trigger and remove -------------------------------------------------------------------------


async def test_trigger_enqueues_the_args_now_and_keeps_the_schedule(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    await manager.add_or_update_job_schedule("by-hand", Greet(key="now"), NEW_YEAR)
    schedule = await stored_schedule(store, "by-hand")

    job_id = await manager.trigger_schedule("by-hand")

    job = await store.get(job_id)
    assert job is not None
    assert (job.name, job.payload, job.state) == (
        GREET,
        Greet(key="now").model_dump_json(),
        JobState.ENQUEUED,
    )
    assert await stored_schedule(store, "by-hand") == schedule
    async with running(Worker(store, REGISTRY, fast_options())):
        await wait_until(lambda: calls_of("greet") == ["now"])


async def test_remove_deletes_a_job_schedule(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    await manager.add_or_update_job_schedule("gone", Greet(key="k"), NEW_YEAR)

    await manager.remove_schedule("gone")

    assert await manager.list_schedules() == []
    with pytest.raises(ScheduleNotFoundError, match="'gone'"):
        await manager.remove_schedule("gone")
    with pytest.raises(ScheduleNotFoundError, match="'gone'"):
        await manager.trigger_schedule("gone")


# -- the static facade ----------------------------------------------------------------------


async def test_the_static_facade_adds_job_schedules_after_build() -> None:
    container = BackgroundJobContainer()
    MasaApp.build(container)

    await BackgroundJobManager.add_or_update_job_schedule("facade", Greet(key="k"), NEW_YEAR)

    [info] = await container.job_manager().list_schedules()
    assert (info.id, info.args) == ("facade", {"key": "k"})
