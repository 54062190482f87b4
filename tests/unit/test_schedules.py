"""Recurring jobs on the in-memory store: the manager, the scheduler, a running app.

The scheduler is driven by calling ``Scheduler.fire_due()`` on schedules whose
``next_fire_at`` the test sets, not by waiting for the clock; only the
end-to-end tests at the bottom let a real scheduler run, and they wait on
conditions, never on timings.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest
from dependency_injector import providers
from masa_jobs.containers import BackgroundJobContainer

from masa_jobs import (
    BackgroundJobManager,
    BackgroundJobOptions,
    BackgroundScheduleJob,
    DefaultJobManager,
    JobRecord,
    JobRegistry,
    JobState,
    MasaApp,
    MemoryJobStore,
    Worker,
)
from masa_jobs.cron import CronSchedule
from masa_jobs.exceptions import InvalidScheduleError, ScheduleNotFoundError
from masa_jobs.records import ScheduleInfo, ScheduleRecord, utcnow
from masa_jobs.scheduler import MAX_SLEEP_SECONDS, Scheduler
from masa_jobs.schedules import ScheduleTick, tick_job
from tests.listing import all_jobs

from . import schedule_twins
from .schedule_jobs import (
    FAILURES,
    FIRED,
    LEAP_DAY,
    DeclaredInBerlin,
    DeclaredReport,
    FailingTick,
    InjectedTick,
    OtherTick,
    RecordingTick,
    Twin,
    fired,
    on,
)
from .support import GreetJob, fast_options, running, wait_for_record, wait_until

pytestmark = pytest.mark.anyio

SCHEDULE_CLASSES = (RecordingTick, OtherTick, FailingTick, DeclaredReport, DeclaredInBerlin)
REGISTRY = JobRegistry([GreetJob], SCHEDULE_CLASSES)
RECORDING = "tests.unit.schedule_jobs.RecordingTick"
# A yearly tick: far from any test's "now", so that only the test moves it.
NEW_YEAR = "0 0 1 1 *"
# Generous: the end-to-end tests share a loaded machine; the scheduler looks
# at the schedules at least once a second.
E2E_TIMEOUT = 15.0


@pytest.fixture(autouse=True)
def _clean_fired() -> Iterator[None]:
    FIRED.clear()
    FAILURES.clear()
    yield
    FIRED.clear()
    FAILURES.clear()


@pytest.fixture
def store() -> MemoryJobStore:
    return MemoryJobStore()


@pytest.fixture
def manager(store: MemoryJobStore) -> DefaultJobManager:
    return DefaultJobManager(store, REGISTRY, BackgroundJobOptions())


def scheduler_on(
    store: MemoryJobStore, registry: JobRegistry = REGISTRY, **options: Any
) -> Scheduler:
    return Scheduler(store, registry, BackgroundJobOptions(**options))


def a_schedule(
    schedule_id: str = "tick",
    cron_expression: str = NEW_YEAR,
    *,
    next_fire_at: datetime,
    job_class: str = RECORDING,
    timezone: str = "UTC",
) -> ScheduleRecord:
    created = next_fire_at - timedelta(days=1)
    return ScheduleRecord(
        id=schedule_id,
        job_class=job_class,
        cron_expression=cron_expression,
        timezone=timezone,
        next_fire_at=next_fire_at,
        created_at=created,
        updated_at=created,
    )


async def stored_schedule(store: MemoryJobStore, schedule_id: str) -> ScheduleRecord:
    schedule = await store.get_schedule(schedule_id)
    assert schedule is not None
    return schedule


async def tick_jobs(store: MemoryJobStore, schedule_id: str) -> list[JobRecord]:
    """The jobs of ``schedule_id``'s ticks, oldest tick first."""
    jobs = [
        job for job in await all_jobs(store, limit=10_000) if job.name == f"schedule:{schedule_id}"
    ]
    return sorted(jobs, key=lambda job: ScheduleTick.model_validate_json(job.payload).fire_at)


async def tick_times(store: MemoryJobStore, schedule_id: str) -> list[datetime]:
    return [
        ScheduleTick.model_validate_json(job.payload).fire_at
        for job in await tick_jobs(store, schedule_id)
    ]


def assert_next_tick(schedule: ScheduleRecord, computed_after: datetime) -> None:
    """``next_fire_at`` is the schedule's next tick after a time between
    ``computed_after`` and now (the clock may pass a tick in between)."""
    cron = CronSchedule(schedule.cron_expression, schedule.timezone)
    assert cron.next_after(computed_after) <= schedule.next_fire_at <= cron.next_after(utcnow())
    assert schedule.next_fire_at > computed_after


def whole_seconds_ago(seconds: int) -> datetime:
    return utcnow().replace(microsecond=0) - timedelta(seconds=seconds)


# -- add_or_update_schedule -------------------------------------------------------------


async def test_add_a_class_that_declares_its_schedule(manager: DefaultJobManager) -> None:
    before = utcnow()
    await manager.add_or_update_schedule(DeclaredInBerlin)

    [info] = await manager.list_schedules()
    assert info == ScheduleInfo(
        id="unit-schedules.declared-berlin",
        job_class="tests.unit.schedule_jobs.DeclaredInBerlin",
        cron_expression=LEAP_DAY,
        timezone="Europe/Berlin",
        next_fire_at=CronSchedule(LEAP_DAY, "Europe/Berlin").next_after(before),
        last_fire_at=None,
        known=True,
    )


async def test_add_an_instance_that_carries_its_schedule(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    before = utcnow()
    await manager.add_or_update_schedule(
        on(RecordingTick(), "reports.hourly", "0 * * * *", "Asia/Tokyo")
    )

    schedule = await stored_schedule(store, "reports.hourly")
    assert (schedule.job_class, schedule.cron_expression, schedule.timezone) == (
        RECORDING,
        "0 * * * *",
        "Asia/Tokyo",
    )
    assert before < schedule.next_fire_at <= before + timedelta(hours=1)
    assert (schedule.next_fire_at.minute, schedule.next_fire_at.second) == (0, 0)
    assert schedule.next_fire_at.tzinfo is UTC
    assert schedule.created_at == schedule.updated_at
    assert schedule.last_fire_at is None


async def test_instances_of_one_class_are_separate_schedules(manager: DefaultJobManager) -> None:
    await manager.add_or_update_schedule(on(DeclaredReport(), "report.copy", "*/5 * * * *"))
    await manager.add_or_update_schedule(DeclaredReport)

    schedules = await manager.list_schedules()
    assert [(s.id, s.cron_expression) for s in schedules] == [
        ("report.copy", "*/5 * * * *"),
        ("unit-schedules.declared-report", LEAP_DAY),
    ]
    assert {s.job_class for s in schedules} == {"tests.unit.schedule_jobs.DeclaredReport"}


def _local_class() -> type[BackgroundScheduleJob]:
    class Local(BackgroundScheduleJob):
        id = "local"
        cron_expression = "0 2 * * *"

        async def execute(self) -> None:
            return None

    return Local


BAD_SCHEDULES: list[tuple[str, Callable[[], Any], str]] = [
    ("empty id", lambda: on(RecordingTick(), "", "0 2 * * *"), "needs an id of 1-200 letters"),
    (
        "id with a space",
        lambda: on(RecordingTick(), "daily report", "0 2 * * *"),
        "got 'daily report'",
    ),
    ("id too long", lambda: on(RecordingTick(), "x" * 201, "0 2 * * *"), "needs an id"),
    ("no id", RecordingTick, "RecordingTick needs an id.*got None"),
    (
        "invalid cron",
        lambda: on(RecordingTick(), "ok", "every day"),
        "invalid cron expression 'every day'",
    ),
    ("no cron", lambda: on(RecordingTick(), "ok", ""), "a cron expression is required"),
    ("never fires", lambda: on(RecordingTick(), "ok", "0 0 31 2 *"), "never fires"),
    (
        "unknown time zone",
        lambda: on(RecordingTick(), "ok", "0 2 * * *", "Mars/Base"),
        "unknown time zone 'Mars/Base'",
    ),
    (
        "class inside a function",
        _local_class,
        "defined inside a function: define it at module level",
    ),
    ("a job handler", lambda: GreetJob, "takes a BackgroundScheduleJob"),
    ("not a job", object, "takes a BackgroundScheduleJob"),
]


@pytest.mark.parametrize(
    ("make", "message"),
    [pytest.param(make, message, id=name) for name, make, message in BAD_SCHEDULES],
)
async def test_bad_schedules_are_refused_and_nothing_is_stored(
    manager: DefaultJobManager, store: MemoryJobStore, make: Callable[[], Any], message: str
) -> None:
    with pytest.raises(InvalidScheduleError, match=message):
        await manager.add_or_update_schedule(make())

    assert await manager.list_schedules() == []
    assert await all_jobs(store) == []


async def test_adding_the_same_schedule_again_keeps_it(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    await manager.add_or_update_schedule(on(RecordingTick(), "same", "*/5 * * * *"))
    # A tick fires since: the next tick and the last one are the store's.
    first = await stored_schedule(store, "same")
    tick = tick_job(first, first.next_fire_at, utcnow())
    moved = first.next_fire_at + timedelta(minutes=5)
    assert await store.fire_schedule("same", first.next_fire_at, moved, tick)
    schedule = await stored_schedule(store, "same")
    assert schedule.last_fire_at == first.next_fire_at

    await manager.add_or_update_schedule(on(RecordingTick(), "same", "*/5 * * * *"))

    assert await stored_schedule(store, "same") == schedule


@pytest.mark.parametrize(
    ("change", "check"),
    [
        pytest.param(
            {"cron_expression": "0 * * * *"},
            lambda s: (s.next_fire_at.minute, s.next_fire_at.second) == (0, 0),
            id="cron",
        ),
        pytest.param(
            {"cron_expression": "0 9 * * *", "timezone": "Asia/Tokyo"},
            lambda s: (s.next_fire_at.hour, s.next_fire_at.minute) == (0, 0),
            id="time zone",
        ),
    ],
)
async def test_updating_the_cron_or_time_zone_moves_the_next_tick(
    manager: DefaultJobManager,
    store: MemoryJobStore,
    change: dict[str, str],
    check: Callable[[ScheduleRecord], bool],
) -> None:
    await manager.add_or_update_schedule(on(RecordingTick(), "moving", "0 9 * * *"))
    first = await stored_schedule(store, "moving")
    assert await store.fire_schedule("moving", first.next_fire_at, first.next_fire_at, None)
    before = utcnow()

    update = {"cron_expression": "0 9 * * *", **change}
    await manager.add_or_update_schedule(on(RecordingTick(), "moving", **update))

    updated = await stored_schedule(store, "moving")
    assert (updated.cron_expression, updated.timezone) == (
        update["cron_expression"],
        update.get("timezone", "UTC"),
    )
    assert_next_tick(updated, before)
    assert check(updated)
    assert updated.created_at == first.created_at
    assert updated.updated_at >= before
    assert updated.last_fire_at == first.last_fire_at


async def test_updating_the_class_keeps_the_id(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    await manager.add_or_update_schedule(on(RecordingTick(), "swapped", "0 9 * * *"))
    await manager.add_or_update_schedule(on(OtherTick(), "swapped", "0 9 * * *"))

    [schedule] = await store.list_schedules()
    assert (schedule.id, schedule.job_class) == ("swapped", "tests.unit.schedule_jobs.OtherTick")


# -- remove, list, trigger -----------------------------------------------------------------


async def test_remove_schedule(manager: DefaultJobManager, store: MemoryJobStore) -> None:
    await manager.add_or_update_schedule(on(RecordingTick(), "gone", "0 9 * * *"))
    await manager.add_or_update_schedule(on(RecordingTick(), "kept", "0 9 * * *"))
    pending = await manager.trigger_schedule("gone")

    await manager.remove_schedule("gone")

    assert [s.id for s in await manager.list_schedules()] == ["kept"]
    # A tick already stored is an ordinary job: removing its schedule leaves it.
    assert await store.get(pending) is not None


async def test_removing_an_unknown_schedule_is_an_error(manager: DefaultJobManager) -> None:
    with pytest.raises(ScheduleNotFoundError, match="no recurring job with id 'nope'") as caught:
        await manager.remove_schedule("nope")

    assert isinstance(caught.value, LookupError)


async def test_list_schedules_says_which_classes_are_known(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    await manager.add_or_update_schedule(on(RecordingTick(), "b-known", "0 9 * * *"))
    await store.upsert_schedule(
        a_schedule(
            "a-vanished",
            next_fire_at=utcnow() + timedelta(hours=1),
            job_class="tests.unit.gone.Vanished",
        )
    )

    schedules = await manager.list_schedules()

    assert [(s.id, s.job_class, s.known) for s in schedules] == [
        ("a-vanished", "tests.unit.gone.Vanished", False),
        ("b-known", RECORDING, True),
    ]


async def test_a_tick_of_an_unknown_class_ends_dead_naming_it(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    await store.upsert_schedule(
        a_schedule(
            "vanished",
            next_fire_at=utcnow() + timedelta(hours=1),
            job_class="tests.unit.gone.Vanished",
        )
    )
    job_id = await manager.trigger_schedule("vanished")

    async with running(Worker(store, REGISTRY, fast_options(unknown_job_timeout=0.2))):
        record = await wait_for_record(store, job_id, lambda r: r.state is JobState.DEAD)

    assert record.attempts == 1
    assert record.last_error is not None
    assert "no such recurring job class: 'tests.unit.gone.Vanished'" in record.last_error
    # The schedule is reported, not dropped.
    assert [s.id for s in await manager.list_schedules()] == ["vanished"]


async def test_trigger_runs_the_job_once_now_and_keeps_the_schedule(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    await manager.add_or_update_schedule(on(RecordingTick(), "by-hand", NEW_YEAR))
    schedule = await stored_schedule(store, "by-hand")
    before = utcnow()

    job_id = await manager.trigger_schedule("by-hand")

    job = await store.get(job_id)
    assert job is not None
    assert (job.name, job.state) == ("schedule:by-hand", JobState.ENQUEUED)
    async with running(Worker(store, REGISTRY, fast_options())):
        await wait_for_record(store, job_id, lambda r: r.state is JobState.SUCCEEDED)
    [fire_at] = fired("recording")
    assert fire_at is not None
    assert before <= fire_at <= utcnow()
    assert await stored_schedule(store, "by-hand") == schedule


async def test_triggering_an_unknown_schedule_is_an_error(manager: DefaultJobManager) -> None:
    with pytest.raises(ScheduleNotFoundError, match="'nope'"):
        await manager.trigger_schedule("nope")


async def test_the_static_facade_adds_schedules_after_build() -> None:
    container = BackgroundJobContainer()
    MasaApp.build(container)

    await BackgroundJobManager.add_or_update_schedule(DeclaredReport)
    await BackgroundJobManager.add_or_update_schedule(on(RecordingTick(), "facade", NEW_YEAR))

    schedules = await container.job_manager().list_schedules()
    assert [s.id for s in schedules] == ["facade", "unit-schedules.declared-report"]


# -- the scheduler: firing ticks -----------------------------------------------------------


async def test_a_due_tick_fires_once(store: MemoryJobStore) -> None:
    due = whole_seconds_ago(1)
    await store.upsert_schedule(a_schedule(next_fire_at=due))
    scheduler = scheduler_on(store)
    before = utcnow()

    await scheduler.fire_due()
    await scheduler.fire_due()

    [job] = await tick_jobs(store, "tick")
    assert job.state is JobState.ENQUEUED
    assert ScheduleTick.model_validate_json(job.payload) == ScheduleTick(
        schedule_id="tick", job_class=RECORDING, fire_at=due
    )
    schedule = await stored_schedule(store, "tick")
    assert schedule.last_fire_at == due
    assert_next_tick(schedule, before)


async def test_a_tick_not_yet_due_does_not_fire(store: MemoryJobStore) -> None:
    later = utcnow() + timedelta(minutes=10)
    await store.upsert_schedule(a_schedule(next_fire_at=later))

    wait = await scheduler_on(store).fire_due()

    assert wait == MAX_SLEEP_SECONDS
    assert await all_jobs(store) == []
    assert (await stored_schedule(store, "tick")).next_fire_at == later


async def test_the_scheduler_wakes_up_for_the_next_tick(store: MemoryJobStore) -> None:
    await store.upsert_schedule(a_schedule(next_fire_at=utcnow() + timedelta(seconds=0.5)))

    wait = await scheduler_on(store).fire_due()

    assert 0 <= wait <= 0.5


async def test_without_schedules_the_scheduler_checks_once_a_second(store: MemoryJobStore) -> None:
    assert await scheduler_on(store).fire_due() == MAX_SLEEP_SECONDS


class BarrierStore(MemoryJobStore):
    """Lets no reader of the schedules go on until ``readers`` have read them, so
    that every scheduler sees the same due tick before any of them fires it."""

    def __init__(self, readers: int) -> None:
        super().__init__()
        self._readers = readers
        self._read = 0
        self._all_read = anyio.Event()

    async def list_schedules(self) -> list[ScheduleRecord]:
        schedules = await super().list_schedules()
        self._read += 1
        if self._read >= self._readers:
            self._all_read.set()
        await self._all_read.wait()
        return schedules


@pytest.mark.parametrize("processes", [2, 5])
async def test_a_due_tick_fires_once_across_schedulers(processes: int) -> None:
    store = BarrierStore(readers=processes)
    due = whole_seconds_ago(1)
    await store.upsert_schedule(a_schedule(next_fire_at=due))
    schedulers = [scheduler_on(store) for _ in range(processes)]

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for scheduler in schedulers:
                tg.start_soon(scheduler.fire_due)

    assert await tick_times(store, "tick") == [due]
    assert (await stored_schedule(store, "tick")).last_fire_at == due


@pytest.mark.parametrize("missed_ticks", ["coalesce", "skip"])
async def test_a_tick_late_within_the_grace_fires(store: MemoryJobStore, missed_ticks: str) -> None:
    due = whole_seconds_ago(5)
    await store.upsert_schedule(a_schedule(next_fire_at=due))

    await scheduler_on(store, missed_ticks=missed_ticks, misfire_grace=60).fire_due()

    assert await tick_times(store, "tick") == [due]


async def test_missed_ticks_coalesce_into_one_catch_up_run(store: MemoryJobStore) -> None:
    # Every five minutes, and nothing ran for an hour: twelve ticks missed.
    first_missed = whole_seconds_ago(3600).replace(second=0)
    first_missed -= timedelta(minutes=first_missed.minute % 5)
    await store.upsert_schedule(
        a_schedule(cron_expression="*/5 * * * *", next_fire_at=first_missed)
    )

    before = utcnow()

    await scheduler_on(store).fire_due()

    assert await tick_times(store, "tick") == [first_missed]
    schedule = await stored_schedule(store, "tick")
    assert schedule.last_fire_at == first_missed
    assert_next_tick(schedule, before)


async def test_coalesce_fires_however_late_the_tick_is(store: MemoryJobStore) -> None:
    due = whole_seconds_ago(86_400)
    await store.upsert_schedule(a_schedule(next_fire_at=due))

    await scheduler_on(store, missed_ticks="coalesce", misfire_grace=1).fire_due()

    assert await tick_times(store, "tick") == [due]


@pytest.mark.parametrize(
    ("cron_expression", "late", "grace"),
    [
        pytest.param("*/5 * * * *", 3600, 60, id="later ticks due too"),
        pytest.param(NEW_YEAR, 5, 1, id="later than the grace"),
    ],
)
async def test_skip_fires_no_missed_tick_and_moves_on(
    store: MemoryJobStore, cron_expression: str, late: int, grace: float
) -> None:
    missed = whole_seconds_ago(late).replace(second=0)
    await store.upsert_schedule(a_schedule(cron_expression=cron_expression, next_fire_at=missed))
    before = utcnow()

    await scheduler_on(store, missed_ticks="skip", misfire_grace=grace).fire_due()

    assert await all_jobs(store) == []
    schedule = await stored_schedule(store, "tick")
    assert schedule.last_fire_at is None
    assert_next_tick(schedule, before)


async def test_a_schedule_that_cannot_fire_is_retried_after_a_pause(
    store: MemoryJobStore, caplog: pytest.LogCaptureFixture
) -> None:
    # Written by another version, or with a time zone this machine does not know.
    broken = a_schedule("broken", next_fire_at=whole_seconds_ago(1), timezone="Mars/Base")
    await store.upsert_schedule(broken)

    with caplog.at_level(logging.ERROR, logger="masa_jobs.scheduler"):
        wait = await scheduler_on(store).fire_due()

    assert wait >= 0.5  # not a busy loop
    assert "recurring job broken cannot fire: unknown time zone 'Mars/Base'" in caplog.text
    assert await all_jobs(store) == []
    assert await stored_schedule(store, "broken") == broken


class FailingFireStore(MemoryJobStore):
    async def fire_schedule(self, *args: Any) -> bool:
        raise ConnectionError("store unreachable")


async def test_a_schedule_that_cannot_fire_is_logged_once(
    store: MemoryJobStore, caplog: pytest.LogCaptureFixture
) -> None:
    broken = a_schedule("broken", next_fire_at=whole_seconds_ago(1), timezone="Mars/Base")
    await store.upsert_schedule(broken)
    scheduler = scheduler_on(store)

    with caplog.at_level(logging.ERROR, logger="masa_jobs.scheduler"):
        for _ in range(5):
            await scheduler.fire_due()

    assert caplog.text.count("recurring job broken cannot fire") == 1


async def test_a_store_error_while_firing_is_retried_after_a_pause(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FailingFireStore()
    await store.upsert_schedule(a_schedule(next_fire_at=whole_seconds_ago(1)))

    with caplog.at_level(logging.WARNING, logger="masa_jobs.scheduler"):
        wait = await scheduler_on(store).fire_due()

    assert wait >= 0.5
    assert "recurring job tick could not fire" in caplog.text


# -- the scheduler: declaring the classes' schedules ------------------------------------------

DECLARED_IDS = ["unit-schedules.declared-berlin", "unit-schedules.declared-report"]


async def test_declare_stores_the_schedules_classes_declare(store: MemoryJobStore) -> None:
    before = utcnow()
    await scheduler_on(store).declare()

    schedules = await store.list_schedules()
    assert [s.id for s in schedules] == DECLARED_IDS  # RecordingTick declares none
    berlin = schedules[0]
    assert (berlin.job_class, berlin.cron_expression, berlin.timezone) == (
        "tests.unit.schedule_jobs.DeclaredInBerlin",
        LEAP_DAY,
        "Europe/Berlin",
    )
    assert berlin.next_fire_at == CronSchedule(LEAP_DAY, "Europe/Berlin").next_after(before)


async def test_declare_is_idempotent(store: MemoryJobStore) -> None:
    await scheduler_on(store).declare()
    report = await stored_schedule(store, "unit-schedules.declared-report")
    # A tick fired, so next_fire_at is no longer what a fresh declaration computes.
    fired_at = whole_seconds_ago(10)
    assert await store.fire_schedule(
        report.id, report.next_fire_at, fired_at + timedelta(days=1), None
    )
    before_restarts = await store.list_schedules()

    for _ in range(5):  # five workers restart
        await scheduler_on(store).declare()

    assert await store.list_schedules() == before_restarts


async def test_declare_takes_up_a_changed_declaration(
    store: MemoryJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    await scheduler_on(store).declare()
    old = await stored_schedule(store, "unit-schedules.declared-report")
    monkeypatch.setattr(DeclaredReport, "cron_expression", "0 * * * *")
    before = utcnow()

    await scheduler_on(store).declare()

    new = await stored_schedule(store, "unit-schedules.declared-report")
    assert new.cron_expression == "0 * * * *"
    assert_next_tick(new, before)
    assert new.created_at == old.created_at


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(schedule_twins.Twin, id="same class name, other module"),
        pytest.param(OtherTick, id="other class name"),
    ],
)
async def test_two_classes_declaring_one_id_is_an_error(
    store: MemoryJobStore, monkeypatch: pytest.MonkeyPatch, other: type[BackgroundScheduleJob]
) -> None:
    for job_class in (Twin, other):
        monkeypatch.setattr(job_class, "id", "unit-schedules.twin", raising=False)
        monkeypatch.setattr(job_class, "cron_expression", LEAP_DAY, raising=False)
    # Refused when the registry is built, that is at MasaApp.build(...).
    with pytest.raises(InvalidScheduleError) as caught:
        JobRegistry((), (*SCHEDULE_CLASSES, Twin, other))

    message = str(caught.value)
    assert "tests.unit.schedule_jobs.Twin" in message
    assert f"{other.__module__}.{other.__qualname__}" in message
    assert "both declare id 'unit-schedules.twin': give each its own id" in message
    assert await store.list_schedules() == []


async def test_a_bad_declaration_is_an_error_and_stores_nothing(
    store: MemoryJobStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DeclaredReport, "cron_expression", "every night")

    with pytest.raises(InvalidScheduleError, match="invalid cron expression 'every night'"):
        await scheduler_on(store).declare()

    assert await store.list_schedules() == []


# -- end to end: MasaApp.lifespan runs the scheduler beside the worker --------------------------


class CountingStore(MemoryJobStore):
    """Counts how often the schedules are read: one read per scheduler pass."""

    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    async def list_schedules(self) -> list[ScheduleRecord]:
        self.reads += 1
        return await super().list_schedules()


class AppContainer(BackgroundJobContainer):
    greeting = providers.Object("hello")


def build_app(**options: Any) -> tuple[AppContainer, CountingStore]:
    container = AppContainer()
    container.config.from_dict(
        {
            "options": {
                "first_wait_duration": 0.05,
                "wait_duration": 1,
                "shutdown_timeout": 1,
                **options,
            }
        }
    )
    store = CountingStore()
    container.job_store.override(providers.Object(store))
    # The enqueue-only test looks into this in-memory store itself.
    MasaApp.build(container, allow_memory_without_worker=True)
    return container, store


async def scheduler_passes(store: CountingStore, count: int) -> None:
    """Wait until the scheduler has read the schedules ``count`` more times."""
    target = store.reads + count
    await wait_until(lambda: store.reads >= target, timeout=E2E_TIMEOUT)


async def all_finished(store: CountingStore, schedule_id: str) -> list[JobRecord]:
    with anyio.fail_after(E2E_TIMEOUT):
        while True:
            jobs = await tick_jobs(store, schedule_id)
            if all(job.state.is_finished for job in jobs):
                return jobs
            await anyio.sleep(0.01)


async def test_an_app_declares_the_classes_schedules_at_start_and_restart() -> None:
    container, _ = build_app()
    manager = container.job_manager()

    async with MasaApp.lifespan():
        first = {s.id: s for s in await manager.list_schedules() if s.id in DECLARED_IDS}
    async with MasaApp.lifespan():
        again = {s.id: s for s in await manager.list_schedules() if s.id in DECLARED_IDS}

    assert sorted(first) == DECLARED_IDS
    assert again == first
    assert all(info.known for info in first.values())


async def test_an_enqueue_only_app_runs_no_scheduler() -> None:
    container, store = build_app(disable_background_job=True)

    async with MasaApp.lifespan():
        await container.job_manager().add_or_update_schedule(
            on(RecordingTick(), "enqueue-only", "* * * * * *")
        )

    assert store.reads == 0
    assert [s.id for s in await store.list_schedules()] == ["enqueue-only"]
    assert await all_jobs(store) == []


async def test_a_schedule_runs_every_second_and_follows_updates_and_removal() -> None:
    container, store = build_app()
    manager = container.job_manager()

    async with MasaApp.lifespan():
        await manager.add_or_update_schedule(on(RecordingTick(), "every-second", NEW_YEAR))
        updated_at = utcnow()
        await manager.add_or_update_schedule(on(RecordingTick(), "every-second", "* * * * * *"))
        await wait_until(lambda: len(fired("recording")) >= 2, timeout=E2E_TIMEOUT)

        await manager.remove_schedule("every-second")
        removed_at = utcnow()
        await scheduler_passes(store, 1)
        jobs = await all_finished(store, "every-second")

    ticks = [ScheduleTick.model_validate_json(job.payload).fire_at for job in jobs]
    assert all(job.state is JobState.SUCCEEDED for job in jobs)
    # Each tick ran once, with fire_at set to it; ticks are whole seconds, in order.
    assert sorted(fired("recording"), key=lambda t: t or updated_at) == ticks
    assert len(set(ticks)) == len(ticks) >= 2
    assert all(t.utcoffset() == timedelta(0) and t.microsecond == 0 for t in ticks)
    assert all(updated_at < t <= removed_at for t in ticks)


async def test_a_failing_tick_is_retried_and_later_ticks_still_fire() -> None:
    container, store = build_app()
    manager = container.job_manager()

    async with MasaApp.lifespan():
        await manager.add_or_update_schedule(on(FailingTick(), "failing", "* * * * * *"))
        # Every tick fails once, then succeeds on its retry.
        await wait_until(lambda: len(set(fired("failing"))) >= 2, timeout=E2E_TIMEOUT)
        await manager.remove_schedule("failing")
        jobs = await all_finished(store, "failing")

    assert len(jobs) >= 2
    for job in jobs:
        assert (job.state, job.attempts) == (JobState.SUCCEEDED, 2)
        fire_at = ScheduleTick.model_validate_json(job.payload).fire_at
        assert fired("failing").count(fire_at) == 2


async def test_recurring_jobs_get_their_dependencies_injected() -> None:
    container, store = build_app()
    manager = container.job_manager()
    assert "tests.unit.schedule_jobs" in container.job_registry().handler_modules()

    async with MasaApp.lifespan():
        await manager.add_or_update_schedule(on(InjectedTick(), "injected", NEW_YEAR))
        job_id = await manager.trigger_schedule("injected")
        record = await wait_for_record(
            store, job_id, lambda r: r.state.is_finished, timeout=E2E_TIMEOUT
        )

    assert record.state is JobState.SUCCEEDED
    assert [key for key, _ in FIRED] == ["injected:hello"]
