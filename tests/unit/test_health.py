"""check_health: the store answers, a worker lives, due jobs move, no lease is abandoned."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import anyio
import pytest

from masa_jobs import (
    DefaultJobManager,
    JobRecord,
    JobRegistry,
    JobState,
    MemoryJobStore,
    Worker,
    WorkerInfo,
    get_job_name,
)
from masa_jobs.health import HealthCheck, HealthReport, check_health, store_unreachable
from masa_jobs.records import utcnow

from .support import (
    ALL_HANDLERS,
    Blocking,
    Greet,
    ShiftedClock,
    fast_options,
    gate,
    running,
    signal,
    wait_for,
)

pytestmark = pytest.mark.anyio

CHECKS = ["store", "workers", "oldest_due", "leases"]


@pytest.fixture
def clock() -> ShiftedClock:
    return ShiftedClock()


@pytest.fixture
def store(clock: ShiftedClock) -> MemoryJobStore:
    return MemoryJobStore(clock=clock)


def make_manager(store: MemoryJobStore, **overrides: Any) -> DefaultJobManager:
    return DefaultJobManager(store, JobRegistry(ALL_HANDLERS), fast_options(**overrides))


def make_worker(store: MemoryJobStore, **overrides: Any) -> Worker:
    return Worker(store, JobRegistry(ALL_HANDLERS), fast_options(**overrides), worker_id="w1")


def check(report: HealthReport, name: str) -> HealthCheck:
    [found] = [c for c in report.checks if c.name == name]
    return found


def failing(report: HealthReport) -> list[str]:
    return [c.name for c in report.checks if not c.ok]


def due_record(due: datetime) -> JobRecord:
    return JobRecord(
        id=uuid4().hex,
        name=get_job_name(Greet),
        payload='{"key": "x"}',
        state=JobState.ENQUEUED,
        created_at=due,
        next_try_at=due,
    )


async def has_a_worker(manager: DefaultJobManager) -> None:
    await wait_for(manager.workers, bool)


async def test_a_working_queue_is_healthy(store: MemoryJobStore) -> None:
    manager = make_manager(store)

    async with running(make_worker(store)):
        await has_a_worker(manager)
        report = await check_health(manager)

    assert report.healthy, report
    assert [c.name for c in report.checks] == CHECKS
    assert check(report, "workers").detail == "1 live worker, 0 jobs running"
    assert check(report, "oldest_due").detail == "no job is waiting past its due time"


async def test_no_live_worker_is_unhealthy(store: MemoryJobStore) -> None:
    report = await check_health(make_manager(store, lease_timeout=30))

    assert not report.healthy
    assert failing(report) == ["workers"]
    assert "no live worker" in check(report, "workers").detail
    assert "30 s" in check(report, "workers").detail


async def test_a_job_due_for_longer_than_the_limit_is_unhealthy(store: MemoryJobStore) -> None:
    manager = make_manager(store, health_max_due_age=300)
    await store.add([due_record(utcnow() - timedelta(seconds=400))])
    await store.heartbeat(_alive("w1"))

    report = await check_health(manager)
    patient = await check_health(manager, max_due_age=1000)

    assert failing(report) == ["oldest_due"]
    assert "limit 300 s" in check(report, "oldest_due").detail
    assert patient.healthy


async def test_a_job_due_later_is_not_late(store: MemoryJobStore) -> None:
    await store.add([due_record(utcnow() + timedelta(hours=1))])
    await store.heartbeat(_alive("w1"))

    assert (await check_health(make_manager(store), max_due_age=0.001)).healthy


async def test_a_job_held_past_its_lease_is_unhealthy(
    store: MemoryJobStore, clock: ShiftedClock
) -> None:
    manager = make_manager(store, poll_interval=5)
    record = due_record(utcnow())
    await store.add([record])
    await store.claim("frozen-worker", 1, timedelta(seconds=1))
    await store.heartbeat(_alive("w1"))
    held = await check_health(manager)

    # The store's time passes: the lease lapsed 59 s ago, past the 10 s grace.
    clock.offset = timedelta(seconds=60)
    await store.heartbeat(_alive("w1"))
    report = await check_health(manager, max_due_age=3600)

    assert held.healthy, held
    assert check(held, "leases").detail == (
        "1 processing jobs, none past its lease by more than 10 s"
    )
    assert failing(report) == ["leases"]
    detail = check(report, "leases").detail
    assert f"{record.id} ({record.name}) held by frozen-worker" in detail
    assert detail.startswith("1 jobs held past their lease by more than 10 s")


async def test_a_live_worker_that_makes_no_progress_is_unhealthy(store: MemoryJobStore) -> None:
    manager = make_manager(store)
    stuck = signal("stuck")
    release = gate("stuck")

    async with running(make_worker(store, concurrency=1, prefetch=0)):
        await manager.enqueue(Blocking(key="stuck"))
        await stuck.wait()
        await manager.enqueue(Greet(key="waiting"))
        report = await wait_for(
            lambda: check_health(manager, max_due_age=0.05), lambda r: not r.healthy
        )
        release.set()

    assert failing(report) == ["oldest_due"]
    assert check(report, "workers").ok


class BrokenStore(MemoryJobStore):
    async def now(self) -> datetime:
        raise ConnectionError("cannot reach postgresql://jobs:s3cret@db.internal/jobs")


class HangingStore(MemoryJobStore):
    async def now(self) -> datetime:
        await anyio.sleep_forever()
        raise AssertionError


async def test_a_store_that_fails_is_unhealthy_and_its_password_stays_out() -> None:
    report = await check_health(make_manager(BrokenStore()))

    assert failing(report) == CHECKS
    detail = check(report, "store").detail
    assert detail.startswith("failed: ConnectionError: cannot reach postgresql://")
    assert "s3cret" not in detail
    assert check(report, "workers").detail == "not checked: the store did not answer"


async def test_a_store_that_does_not_answer_is_unhealthy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("masa_jobs.health.CHECK_TIMEOUT_SECONDS", 0.05)

    report = await check_health(make_manager(HangingStore()))

    assert check(report, "store").detail == "no answer within 0.05 s"
    assert not report.healthy


def test_the_report_as_json() -> None:
    report = store_unreachable("down")

    assert report.to_dict() == {
        "healthy": False,
        "checks": [
            {"name": "store", "ok": False, "detail": "down"},
            {"name": "workers", "ok": False, "detail": "not checked: the store did not answer"},
            {"name": "oldest_due", "ok": False, "detail": "not checked: the store did not answer"},
            {"name": "leases", "ok": False, "detail": "not checked: the store did not answer"},
        ],
    }
    assert HealthReport((HealthCheck("store", True, "fine"),)).healthy


async def test_a_manager_without_a_store_is_refused() -> None:
    with pytest.raises(TypeError, match="needs a manager with an operator store"):
        await check_health(object())  # type: ignore[arg-type]


def _alive(worker_id: str) -> WorkerInfo:
    now = utcnow()
    return WorkerInfo(id=worker_id, host="h", pid=1, started_at=now, last_seen_at=now)
