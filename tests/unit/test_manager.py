"""DefaultJobManager: enqueue, look at jobs, and look after them."""

from __future__ import annotations

import dataclasses
import json
from datetime import timedelta

import pytest
from pydantic import BaseModel

from masa_jobs import (
    BackgroundJobOptions,
    DefaultJobManager,
    InvalidDelayError,
    InvalidJobStateError,
    JobInfo,
    JobManager,
    JobNotFoundError,
    JobOutcome,
    JobRegistry,
    JobState,
    MemoryJobStore,
    UnknownJobError,
    get_job_name,
)
from masa_jobs.exceptions import InvalidScheduleError, ScheduleNotFoundError
from masa_jobs.records import WorkerInfo, utcnow

from .schedule_jobs import LEAP_DAY, DeclaredReport, on
from .support import ALL_HANDLERS, Flaky, Greet, ShiftedClock

pytestmark = pytest.mark.anyio

LEASE = timedelta(seconds=30)


class Unregistered(BaseModel):
    key: str


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
def store(clock: ShiftedClock) -> MemoryJobStore:
    return MemoryJobStore(clock=clock)


@pytest.fixture
def manager(store: MemoryJobStore) -> DefaultJobManager:
    return DefaultJobManager(
        store, JobRegistry(ALL_HANDLERS, [DeclaredReport]), BackgroundJobOptions()
    )


async def finish_as(store: MemoryJobStore, job_id: str, state: JobState) -> None:
    """Claim the job and record ``state`` for it, as a worker would."""
    claimed = await store.claim("worker-1", 100, LEASE)
    record = next(r for r in claimed if r.id == job_id)
    others = [r for r in claimed if r.id != job_id]
    outcomes = [
        JobOutcome(
            job_id=job_id,
            state=state,
            attempts=record.attempts,
            next_try_at=record.next_try_at,
            last_error="RuntimeError: boom" if state is JobState.DEAD else None,
            finished_at=utcnow(),
            lease_token=record.lease_token,
        ),
        *(
            JobOutcome(
                job_id=r.id,
                state=JobState.ENQUEUED,
                attempts=0,
                next_try_at=utcnow(),
                lease_token=r.lease_token,
            )
            for r in others
        ),
    ]
    assert await store.finish("worker-1", outcomes) == {o.job_id for o in outcomes}


async def total(manager: DefaultJobManager) -> int:
    return sum((await manager.count()).values())


def test_the_default_manager_implements_the_protocol(manager: DefaultJobManager) -> None:
    assert isinstance(manager, JobManager)


# -- enqueue ---------------------------------------------------------------------


async def test_enqueue_stores_a_job_due_now(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    job_id = await manager.enqueue(Greet(key="Zoë 🚀"))

    record = await store.get(job_id)
    assert record is not None
    assert isinstance(job_id, str)
    assert record.name == get_job_name(Greet)
    assert json.loads(record.payload) == {"key": "Zoë 🚀"}
    assert record.state is JobState.ENQUEUED
    assert record.attempts == 0
    assert record.created_at.utcoffset() == timedelta(0)
    assert record.next_try_at == record.created_at
    assert record.last_error is None


async def test_each_job_gets_its_own_id(manager: DefaultJobManager) -> None:
    ids = {await manager.enqueue(Greet(key="same")) for _ in range(20)}

    assert len(ids) == 20


@pytest.mark.parametrize(
    ("delay", "seconds"),
    [(timedelta(seconds=30), 30), (30, 30), (2.5, 2.5), (timedelta(milliseconds=250), 0.25)],
)
async def test_a_delay_schedules_the_job(
    manager: DefaultJobManager, store: MemoryJobStore, delay: object, seconds: float
) -> None:
    job_id = await manager.enqueue(Greet(key="later"), delay=delay)  # type: ignore[arg-type]

    record = await store.get(job_id)
    assert record is not None
    assert record.state is JobState.SCHEDULED
    assert record.next_try_at - record.created_at == timedelta(seconds=seconds)
    info = await manager.get(job_id)
    assert info is not None
    assert info.state is JobState.SCHEDULED


@pytest.mark.parametrize("delay", [None, 0, 0.0, timedelta(0)])
async def test_no_delay_enqueues_now(
    manager: DefaultJobManager, store: MemoryJobStore, delay: object
) -> None:
    job_id = await manager.enqueue(Greet(key="now"), delay=delay)  # type: ignore[arg-type]

    record = await store.get(job_id)
    assert record is not None
    assert record.state is JobState.ENQUEUED
    assert record.next_try_at == record.created_at


async def test_enqueue_many_stores_every_job_in_order(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    ids = await manager.enqueue_many(
        [(Greet(key="a"), None), (Flaky(key="b"), timedelta(seconds=60)), (Greet(key="c"), 0)]
    )

    assert len(ids) == len(set(ids)) == 3
    records = [await store.get(job_id) for job_id in ids]
    assert [json.loads(r.payload)["key"] for r in records if r is not None] == ["a", "b", "c"]
    counts = await manager.count()
    assert counts[JobState.ENQUEUED] == 2
    assert counts[JobState.SCHEDULED] == 1


async def test_enqueue_many_of_nothing_stores_nothing(manager: DefaultJobManager) -> None:
    assert await manager.enqueue_many([]) == []
    assert await total(manager) == 0


async def test_enqueue_many_is_all_or_nothing(manager: DefaultJobManager) -> None:
    with pytest.raises(UnknownJobError):
        await manager.enqueue_many([(Greet(key="a"), None), (Unregistered(key="b"), None)])
    with pytest.raises(InvalidDelayError):
        await manager.enqueue_many([(Greet(key="a"), None), (Greet(key="b"), -1)])

    assert await total(manager) == 0


# -- get, list, count ----------------------------------------------------------------


async def test_get_returns_what_callers_see(manager: DefaultJobManager) -> None:
    job_id = await manager.enqueue(Greet(key="seen"))

    info = await manager.get(job_id)

    assert isinstance(info, JobInfo)
    assert info.id == job_id
    assert info.name == get_job_name(Greet)
    assert info.state is JobState.ENQUEUED
    assert info.attempts == 0
    assert info.args == {"key": "seen"}
    assert info.last_try_at is None
    assert info.last_error is None
    assert info.next_try_at == info.created_at
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.attempts = 3  # type: ignore[misc]


async def test_get_of_an_unknown_id_is_none(manager: DefaultJobManager) -> None:
    assert await manager.get("no-such-id") is None


async def test_a_scheduled_job_shows_enqueued_once_due(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    job_id = await manager.enqueue(Greet(key="x"), delay=60)
    record = await store.get(job_id)
    assert record is not None

    assert JobInfo.from_record(record, record.created_at).state is JobState.SCHEDULED
    later = record.created_at + timedelta(seconds=61)
    assert JobInfo.from_record(record, later).state is JobState.ENQUEUED


async def test_list_and_count(manager: DefaultJobManager) -> None:
    now_a = await manager.enqueue(Greet(key="a"))
    now_b = await manager.enqueue(Greet(key="b"))
    later = await manager.enqueue(Greet(key="c"), delay=3600)

    assert {info.id for info in await manager.list()} == {now_a, now_b, later}
    assert [info.id for info in await manager.list(JobState.SCHEDULED)] == [later]
    assert {info.id for info in await manager.list(JobState.ENQUEUED)} == {now_a, now_b}
    assert len(await manager.list(JobState.ENQUEUED, limit=1)) == 1
    assert len(await manager.list(JobState.ENQUEUED, limit=5, offset=1)) == 1
    assert len(await manager.list(limit=2, offset=2)) == 1
    assert await manager.list(JobState.DEAD) == []
    assert await manager.count() == {
        JobState.SCHEDULED: 1,
        JobState.ENQUEUED: 2,
        JobState.PROCESSING: 0,
        JobState.SUCCEEDED: 0,
        JobState.DEAD: 0,
        JobState.CANCELLED: 0,
    }


async def test_list_of_finished_jobs(manager: DefaultJobManager, store: MemoryJobStore) -> None:
    dead = await manager.enqueue(Greet(key="dead"))
    await finish_as(store, dead, JobState.DEAD)
    await manager.enqueue(Greet(key="pending"))

    [info] = await manager.list(JobState.DEAD)

    assert info.id == dead
    assert info.state is JobState.DEAD
    assert info.next_try_at is None
    assert info.last_error == "RuntimeError: boom"


async def test_list_of_one_pending_state_is_not_hidden_by_many_of_the_other(
    manager: DefaultJobManager,
) -> None:
    later = await manager.enqueue(Greet(key="later"), delay=3600)
    await manager.enqueue_many([(Greet(key=str(n)), None) for n in range(1001)])

    assert [info.id for info in await manager.list(JobState.SCHEDULED)] == [later]
    assert len(await manager.list(JobState.ENQUEUED, limit=5, offset=999)) == 2
    assert await manager.list(JobState.ENQUEUED, limit=0) == []


async def test_workers_are_the_ones_seen_within_a_lease_timeout(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    now = utcnow()
    fresh = WorkerInfo(
        id="fresh", host="h", pid=1, started_at=now - timedelta(hours=1), last_seen_at=now
    )
    stale = dataclasses.replace(fresh, id="stale", last_seen_at=now - timedelta(seconds=31))
    await store.heartbeat(fresh)
    await store.heartbeat(stale)

    assert await manager.workers() == [fresh]


@pytest.mark.parametrize(("limit", "offset"), [(-1, 0), (10, -1)])
async def test_list_refuses_negative_windows(
    manager: DefaultJobManager, limit: int, offset: int
) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        await manager.list(limit=limit, offset=offset)


# -- retry, cancel, delete, purge ------------------------------------------------------


async def test_retry_a_dead_job(manager: DefaultJobManager, store: MemoryJobStore) -> None:
    job_id = await manager.enqueue(Greet(key="x"))
    await finish_as(store, job_id, JobState.DEAD)

    info = await manager.retry(job_id)

    assert info.state is JobState.ENQUEUED
    assert info.id == job_id
    claimed = await store.claim("worker-2", 10, LEASE)
    assert [r.id for r in claimed] == [job_id]


@pytest.mark.parametrize("delay", [None, 3600])
async def test_retry_of_a_job_that_is_not_dead_is_refused(
    manager: DefaultJobManager, delay: int | None
) -> None:
    job_id = await manager.enqueue(Greet(key="x"), delay=delay)
    state = "enqueued" if delay is None else "scheduled"

    with pytest.raises(InvalidJobStateError) as caught:
        await manager.retry(job_id)

    assert str(caught.value) == (
        f"job {job_id!r} is {state}; only a job that is dead can be retried"
    )


async def test_retry_of_a_succeeded_job_is_refused(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    job_id = await manager.enqueue(Greet(key="x"))
    await finish_as(store, job_id, JobState.SUCCEEDED)

    with pytest.raises(InvalidJobStateError, match="is succeeded; only a job that is dead"):
        await manager.retry(job_id)


@pytest.mark.parametrize("delay", [None, 3600])
async def test_cancel_a_pending_job(
    manager: DefaultJobManager, store: MemoryJobStore, clock: ShiftedClock, delay: int | None
) -> None:
    job_id = await manager.enqueue(Greet(key="x"), delay=delay)

    info = await manager.cancel(job_id)

    assert info.state is JobState.CANCELLED
    record = await store.get(job_id)
    assert record is not None
    assert record.state is JobState.CANCELLED
    assert record.finished_at is not None
    clock.offset = timedelta(hours=2)
    assert await store.claim("worker-1", 10, LEASE) == []


async def test_cancel_refuses_finished_jobs_and_takes_running_ones(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    cancelled = await manager.enqueue(Greet(key="a"))
    await manager.cancel(cancelled)
    running = await manager.enqueue(Greet(key="b"))
    [held] = await store.claim("worker-1", 10, LEASE)

    with pytest.raises(InvalidJobStateError, match="is cancelled; only a job that is enqueued"):
        await manager.cancel(cancelled)
    stopped = await manager.cancel(running)

    assert stopped.state is JobState.CANCELLED
    assert held.lease_token is not None
    # Its worker's next renewal is refused: that is how it learns to stop.
    assert await store.extend_leases("worker-1", {running: held.lease_token}, LEASE) == set()


async def test_delete(manager: DefaultJobManager) -> None:
    job_id = await manager.enqueue(Greet(key="x"))

    await manager.delete(job_id)

    assert await manager.get(job_id) is None
    assert await total(manager) == 0


@pytest.mark.parametrize("operation", ["retry", "cancel", "delete"])
async def test_operations_on_an_unknown_id(manager: DefaultJobManager, operation: str) -> None:
    with pytest.raises(JobNotFoundError, match="no job with id 'nope'") as caught:
        await getattr(manager, operation)("nope")

    assert isinstance(caught.value, LookupError)


async def test_purge_removes_finished_jobs_past_their_age(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    done = await manager.enqueue(Greet(key="done"))
    await finish_as(store, done, JobState.SUCCEEDED)
    dead = await manager.enqueue(Greet(key="dead"))
    await finish_as(store, dead, JobState.DEAD)
    cancelled = await manager.enqueue(Greet(key="cancelled"))
    await manager.cancel(cancelled)
    pending = await manager.enqueue(Greet(key="pending"))

    # Within the retention (a week by default): kept.
    assert await manager.purge() == 0
    assert await manager.purge(older_than=timedelta(hours=1)) == 0

    assert await manager.purge(older_than=timedelta(0)) == 3
    assert [info.id for info in await manager.list()] == [pending]


async def test_schedules_are_added_listed_triggered_and_removed(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    await manager.add_or_update_schedule(DeclaredReport)

    [info] = await manager.list_schedules()
    assert (info.id, info.cron_expression, info.timezone) == (DeclaredReport.id, LEAP_DAY, "UTC")
    assert info.next_fire_at > utcnow()
    assert info.last_fire_at is None
    assert info.known is True

    job_id = await manager.trigger_schedule(DeclaredReport.id)
    job = await manager.get(job_id)
    assert job is not None
    assert (job.name, job.state) == (f"schedule:{DeclaredReport.id}", JobState.ENQUEUED)

    await manager.remove_schedule(DeclaredReport.id)
    assert await manager.list_schedules() == []
    with pytest.raises(ScheduleNotFoundError, match="no recurring job with id"):
        await manager.remove_schedule(DeclaredReport.id)


async def test_a_schedule_class_the_registry_does_not_know_is_refused(
    store: MemoryJobStore,
) -> None:
    handlers_only = DefaultJobManager(store, JobRegistry(ALL_HANDLERS), BackgroundJobOptions())
    with pytest.raises(InvalidScheduleError, match="is not registered: import its module"):
        await handlers_only.add_or_update_schedule(DeclaredReport)
    assert await handlers_only.list_schedules() == []


async def test_a_bad_schedule_is_refused_and_nothing_is_stored(
    manager: DefaultJobManager, store: MemoryJobStore
) -> None:
    with pytest.raises(InvalidScheduleError, match="unknown time zone 'Nowhere/Land'"):
        await manager.add_or_update_schedule(
            on(DeclaredReport(), "nightly", "0 3 * * *", "Nowhere/Land")
        )

    assert await store.list_schedules() == []
