"""The worker under store faults: fenced leases, refused outcomes, outages, quiet logs."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import anyio
import pytest

from masa_jobs import (
    DefaultJobManager,
    JobOutcome,
    JobRecord,
    JobRegistry,
    JobState,
    MemoryJobStore,
    StoreRejectedError,
    StoreUnavailableError,
    Worker,
    get_job_name,
)
from masa_jobs._outage import OutageLog
from masa_jobs._text import clean_error
from masa_jobs.records import utcnow

from .support import (
    ALL_HANDLERS,
    Blocking,
    Doomed,
    Greet,
    ShiftedClock,
    calls_of,
    fast_options,
    gate,
    running,
    signal,
    wait_for_record,
    wait_until,
)

pytestmark = pytest.mark.anyio

LEASE = timedelta(seconds=30)


class FaultyStore:
    """A memory store whose calls can be made to fail, as a real store's would."""

    def __init__(self, inner: MemoryJobStore) -> None:
        self.inner = inner
        self.fail_renewals = False
        self.fail_heartbeats = False
        self.finish_failures = 0
        self.refuse_marker: str | None = None
        self.finish_calls: list[int] = []

        self.down = False

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self.inner, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute

        async def call(*args: Any, **kwargs: Any) -> Any:
            if self.down:
                raise StoreUnavailableError("test store: connection refused")
            return await attribute(*args, **kwargs)

        return call

    async def extend_leases(self, worker_id: str, leases: Any, lease: timedelta) -> set[str]:
        if self.fail_renewals or self.down:
            raise StoreUnavailableError("test store: renewals cut off")
        return await self.inner.extend_leases(worker_id, leases, lease)

    async def heartbeat(self, worker: Any) -> None:
        if self.fail_heartbeats or self.down:
            raise StoreUnavailableError("test store: heartbeat refused")
        await self.inner.heartbeat(worker)

    async def finish(self, worker_id: str, outcomes: Sequence[JobOutcome]) -> set[str]:
        self.finish_calls.append(len(outcomes))
        if self.down:
            raise StoreUnavailableError("test store: connection refused")
        if self.finish_failures > 0:
            self.finish_failures -= 1
            raise StoreUnavailableError("test store: connection lost")
        marker = self.refuse_marker
        if marker and any(marker in (o.last_error or "") for o in outcomes):
            raise StoreRejectedError("test store: invalid byte sequence in a text value")
        return await self.inner.finish(worker_id, outcomes)


@pytest.fixture
def inner() -> MemoryJobStore:
    return MemoryJobStore()


@pytest.fixture
def store(inner: MemoryJobStore) -> FaultyStore:
    return FaultyStore(inner)


@pytest.fixture
def manager(inner: MemoryJobStore) -> DefaultJobManager:
    return DefaultJobManager(inner, JobRegistry(ALL_HANDLERS), fast_options())


def make_worker(store: Any, **options: Any) -> Worker:
    return Worker(store, JobRegistry(ALL_HANDLERS), fast_options(**options), worker_id="w1")


def in_state(state: JobState) -> Any:
    return lambda record: record.state is state


async def lease_lapsed(store: MemoryJobStore, job_id: str) -> JobRecord:
    record = await store.get(job_id)
    assert record is not None
    assert record.lease_expires_at is not None
    expiry = record.lease_expires_at
    await wait_until(lambda: utcnow() > expiry + timedelta(seconds=0.02))
    return record


def messages(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level and text in r.getMessage()]


# -- error text ----------------------------------------------------------------------


def test_clean_error_escapes_nul_and_lone_surrogates() -> None:
    assert clean_error("a\x00b", 100) == "a\\x00b"
    assert clean_error("x\ud800y", 100) == "x\\ud800y"
    text = "plain"
    assert clean_error(text, 100) is text


def test_clean_error_keeps_the_head_and_the_tail_of_a_long_text() -> None:
    text = "HEAD" + "x" * 100_000 + "TAIL"

    cleaned = clean_error(text, 1000)

    assert cleaned.startswith("HEAD")
    assert cleaned.endswith("TAIL")
    assert len(cleaned) < 1100
    assert "characters cut" in cleaned


# -- outage logs ---------------------------------------------------------------------


def test_an_outage_logs_one_error_then_one_line_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    log = OutageLog(logging.getLogger("test.outage"), "claiming")

    for _ in range(500):
        log.failed(StoreUnavailableError("gone"))
    log.succeeded()
    log.succeeded()

    records = [r for r in caplog.records if r.name == "test.outage"]
    assert [r.levelname for r in records] == ["ERROR", "INFO"]
    assert "StoreUnavailableError: gone" in records[0].getMessage()  # with its traceback
    assert "reachable again" in records[1].getMessage()
    assert "500 failures" in records[1].getMessage()


async def test_an_outage_is_a_few_log_lines_not_a_flood(
    store: FaultyStore,
    inner: MemoryJobStore,
    manager: DefaultJobManager,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="masa_jobs")
    release = gate("long")
    started = signal("long")
    job_id = await manager.enqueue(Blocking(key="long"))
    worker = make_worker(store, lease_timeout=0.3, poll_interval=0.05)

    async with running(worker):
        with anyio.fail_after(2):
            await started.wait()
        caplog.clear()
        store.down = True
        await anyio.sleep(1.0)  # the outage itself: every loop fails many times
        store.down = False
        release.set()
        done = await wait_for_record(inner, job_id, in_state(JobState.SUCCEEDED))
        await wait_until(lambda: any("reachable again" in r.getMessage() for r in caplog.records))

    assert done.attempts == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    # One traceback per failing loop (claiming, renewing, heartbeat, at most a few more).
    assert 1 <= len(errors) <= 6, [r.getMessage() for r in errors]
    assert len(caplog.records) <= 20, [r.getMessage() for r in caplog.records]


# -- outcomes the store refuses or cannot take ----------------------------------------


async def test_a_refused_outcome_sends_only_its_job_dead(
    store: FaultyStore, inner: MemoryJobStore, manager: DefaultJobManager
) -> None:
    store.refuse_marker = "POISON"
    async with running(make_worker(store, max_retry_times=0)):
        greets = [await manager.enqueue(Greet(key=str(n))) for n in range(5)]
        poisoned = await manager.enqueue(Doomed(key="POISON"))
        dead = await wait_for_record(inner, poisoned, in_state(JobState.DEAD))
        for job_id in greets:
            await wait_for_record(inner, job_id, in_state(JobState.SUCCEEDED))

    assert dead.last_error is not None
    assert dead.last_error.startswith("the store refused this job's outcome")
    assert "invalid byte sequence" in dead.last_error
    assert dead.lease_owner is None


async def test_an_unreachable_store_delays_outcomes_without_losing_them(
    store: FaultyStore,
    inner: MemoryJobStore,
    manager: DefaultJobManager,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    store.finish_failures = 3
    async with running(make_worker(store)):
        job_id = await manager.enqueue(Greet(key="a"))
        done = await wait_for_record(inner, job_id, in_state(JobState.SUCCEEDED))

    assert done.attempts == 1
    assert calls_of("greet") == ["a"]
    assert len(messages(caplog, logging.ERROR, "recording outcomes failed")) == 1
    assert len(messages(caplog, logging.INFO, "reachable again")) == 1


async def test_error_text_is_cleaned_before_it_is_written(
    store: FaultyStore, inner: MemoryJobStore, manager: DefaultJobManager
) -> None:
    async with running(make_worker(store, max_retry_times=0, max_error_length=300)):
        job_id = await manager.enqueue(Doomed(key="nul\x00" + "y" * 5000))
        dead = await wait_for_record(inner, job_id, in_state(JobState.DEAD))

    assert dead.last_error is not None
    assert "\x00" not in dead.last_error
    assert len(dead.last_error) < 400


# -- leases ----------------------------------------------------------------------------


async def test_a_failing_heartbeat_does_not_cost_the_lease(
    store: FaultyStore, inner: MemoryJobStore, manager: DefaultJobManager
) -> None:
    store.fail_heartbeats = True
    release = gate("long")
    started = signal("long")
    job_id = await manager.enqueue(Blocking(key="long"))
    worker = make_worker(store, lease_timeout=0.15)

    async with running(worker):
        with anyio.fail_after(2):
            await started.wait()
        await lease_lapsed(inner, job_id)
        assert await inner.claim("intruder", 10, LEASE) == []
        release.set()
        done = await wait_for_record(inner, job_id, in_state(JobState.SUCCEEDED))

    assert done.attempts == 1
    assert worker.leases_lost == 0


async def test_a_worker_never_claims_back_a_job_it_still_runs(
    store: FaultyStore, inner: MemoryJobStore, manager: DefaultJobManager
) -> None:
    release = gate("long")
    started = signal("long")
    job_id = await manager.enqueue(Blocking(key="long"))
    worker = make_worker(store, lease_timeout=0.15)

    async with running(worker):
        with anyio.fail_after(2):
            await started.wait()
        store.fail_renewals = True  # cut off: the lease lapses while the job runs
        await lease_lapsed(inner, job_id)
        # A new job wakes the claim loop, which must pass over the running one.
        other = await manager.enqueue(Greet(key="b"))
        await wait_for_record(inner, other, in_state(JobState.SUCCEEDED))
        store.fail_renewals = False
        release.set()
        done = await wait_for_record(inner, job_id, in_state(JobState.SUCCEEDED))

    assert calls_of("blocking") == ["long"]
    assert done.attempts == 1
    assert worker.leases_lost == 0


async def test_a_lost_lease_is_logged_counted_and_cannot_overwrite_the_new_owner(
    store: FaultyStore,
    inner: MemoryJobStore,
    manager: DefaultJobManager,
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = gate("long")
    started = signal("long")
    job_id = await manager.enqueue(Blocking(key="long"))
    worker = make_worker(store, lease_timeout=0.15)

    async with running(worker):
        with anyio.fail_after(2):
            await started.wait()
        store.fail_renewals = True
        await lease_lapsed(inner, job_id)
        [taken] = await inner.claim("intruder", 10, LEASE)
        assert taken.attempts == 2
        outcome = JobOutcome(
            job_id=job_id,
            state=JobState.SUCCEEDED,
            attempts=taken.attempts,
            next_try_at=taken.next_try_at,
            finished_at=utcnow(),
            lease_token=taken.lease_token,
        )
        assert await inner.finish("intruder", [outcome]) == {job_id}
        store.fail_renewals = False
        release.set()
        await wait_until(lambda: worker.leases_lost == 1)

    record = await inner.get(job_id)
    assert record is not None
    assert record.state is JobState.SUCCEEDED
    assert record.attempts == 2
    [warning] = messages(caplog, logging.WARNING, "lease lost")
    assert job_id in warning
    assert get_job_name(Blocking) in warning
    assert "refused" in warning


async def test_a_prefetched_job_whose_lease_lapsed_is_dropped_unrun(
    store: FaultyStore, inner: MemoryJobStore, manager: DefaultJobManager
) -> None:
    release = gate("first")
    started = signal("first")
    first = await manager.enqueue(Blocking(key="first"))
    second = await manager.enqueue(Greet(key="second"))
    worker = make_worker(store, lease_timeout=0.2, concurrency=1, prefetch=1)

    async with running(worker):
        with anyio.fail_after(2):
            await started.wait()
        held = await inner.get(second)
        assert held is not None
        assert held.lease_owner == "w1"  # prefetched
        store.fail_renewals = True
        await lease_lapsed(inner, second)
        stolen = await inner.claim("intruder", 10, LEASE)
        assert {r.id for r in stolen} == {first, second}
        store.fail_renewals = False
        release.set()
        await wait_until(lambda: worker.leases_lost == 2)

    assert calls_of("greet") == []


async def test_a_skewed_worker_clock_steals_nothing_and_runs_nothing_early(
    inner: MemoryJobStore, manager: DefaultJobManager
) -> None:
    release = gate("long")
    started = signal("long")
    long_job = await manager.enqueue(Blocking(key="long"))
    healthy = make_worker(inner, lease_timeout=0.3)
    ahead = Worker(
        inner,
        JobRegistry(ALL_HANDLERS),
        fast_options(lease_timeout=0.3),
        worker_id="ahead",
        clock=ShiftedClock(timedelta(hours=2)),
    )

    async with running(healthy):
        with anyio.fail_after(2):
            await started.wait()
        async with running(ahead):
            enqueued_at = utcnow()
            delayed = await manager.enqueue(Greet(key="later"), delay=timedelta(seconds=0.5))
            done = await wait_for_record(inner, delayed, in_state(JobState.SUCCEEDED))
            release.set()
            await wait_for_record(inner, long_job, in_state(JobState.SUCCEEDED))

    assert done.last_try_at is not None
    assert done.last_try_at >= enqueued_at + timedelta(seconds=0.5)
    assert calls_of("blocking") == ["long"]
