"""The worker: claim due jobs, run their handlers, record what happened."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any
from uuid import uuid4

import anyio
import pytest

from masa_jobs import (
    BackgroundJobOptions,
    DefaultJobManager,
    JobRecord,
    JobRegistry,
    JobState,
    MemoryJobStore,
    Worker,
    get_job_name,
)
from masa_jobs.jobs import handler_name
from masa_jobs.records import utcnow
from masa_jobs.worker import SHORT_RUN_SECONDS, _Prefetch
from tests.listing import all_jobs

from .support import (
    ALL_HANDLERS,
    FAILURES,
    Blocking,
    Doomed,
    DoomedJob,
    Flaky,
    FlakyFailing,
    FlakySteady,
    Greet,
    GreetJob,
    Strict,
    calls_of,
    fast_options,
    gate,
    running,
    signal,
    wait_for,
    wait_for_record,
    wait_until,
)

pytestmark = pytest.mark.anyio

WORKER_ID = "test-worker"


@pytest.fixture
def store() -> MemoryJobStore:
    return MemoryJobStore()


@pytest.fixture
def manager(store: MemoryJobStore) -> DefaultJobManager:
    return DefaultJobManager(store, JobRegistry(ALL_HANDLERS), fast_options())


def make_worker(store: MemoryJobStore, **options: Any) -> Worker:
    return Worker(store, JobRegistry(ALL_HANDLERS), fast_options(**options), worker_id=WORKER_ID)


def in_state(*states: JobState) -> Callable[[JobRecord], bool]:
    return lambda record: record.state in states


def raw_record(name: str, payload: str) -> JobRecord:
    now = utcnow()
    return JobRecord(
        id=uuid4().hex,
        name=name,
        payload=payload,
        state=JobState.ENQUEUED,
        created_at=now,
        next_try_at=now,
    )


# -- outcomes ----------------------------------------------------------------------


async def test_a_job_that_succeeds(store: MemoryJobStore, manager: DefaultJobManager) -> None:
    async with running(make_worker(store)):
        job_id = await manager.enqueue(Greet(key="a"))
        record = await wait_for_record(store, job_id, in_state(JobState.SUCCEEDED))

    assert record.attempts == 1
    assert record.finished_at is not None
    assert record.last_error is None
    assert record.lease_owner is None
    assert record.done_handlers == (handler_name(GreetJob),)
    assert calls_of("greet") == ["a"]


async def test_a_failure_is_retried_per_the_formula(
    store: MemoryJobStore, manager: DefaultJobManager
) -> None:
    async with running(make_worker(store, first_wait_duration=60, wait_duration=2)):
        job_id = await manager.enqueue(Doomed(key="x"))
        record = await wait_for_record(store, job_id, lambda r: r.last_error is not None)

    assert record.state is JobState.SCHEDULED
    assert record.attempts == 1
    assert record.last_try_at is not None
    assert record.next_try_at == record.last_try_at + timedelta(seconds=60)
    assert record.finished_at is None
    assert record.last_error is not None
    assert "Traceback (most recent call last)" in record.last_error
    assert "RuntimeError: doomed x" in record.last_error
    assert f"{handler_name(DoomedJob)} failed" in record.last_error
    assert calls_of("doomed") == ["x"]


async def test_each_retry_waits_longer(store: MemoryJobStore, manager: DefaultJobManager) -> None:
    async with running(make_worker(store, first_wait_duration=0.01, wait_duration=1000)):
        job_id = await manager.enqueue(Doomed(key="x"))
        record = await wait_for_record(
            store, job_id, lambda r: r.attempts == 2 and r.state is JobState.SCHEDULED
        )

    assert record.state is JobState.SCHEDULED
    assert record.last_try_at is not None
    assert record.next_try_at == record.last_try_at + timedelta(seconds=10)


async def test_a_job_is_dead_after_max_retry_times(
    store: MemoryJobStore, manager: DefaultJobManager
) -> None:
    async with running(make_worker(store, max_retry_times=2)):
        job_id = await manager.enqueue(Doomed(key="x"))
        record = await wait_for_record(store, job_id, in_state(JobState.DEAD))

    assert record.attempts == 3
    assert record.finished_at is not None
    assert record.last_error is not None
    assert "RuntimeError: doomed x" in record.last_error
    assert calls_of("doomed") == ["x", "x", "x"]
    info = await manager.get(job_id)
    assert info is not None
    assert info.state is JobState.DEAD
    assert info.attempts == 3


async def test_no_retries_means_dead_after_one_attempt(
    store: MemoryJobStore, manager: DefaultJobManager
) -> None:
    async with running(make_worker(store, max_retry_times=0)):
        job_id = await manager.enqueue(Doomed(key="x"))
        record = await wait_for_record(store, job_id, in_state(JobState.DEAD))

    assert record.attempts == 1
    assert calls_of("doomed") == ["x"]


async def test_on_a_retry_only_the_handlers_that_failed_run_again(
    store: MemoryJobStore, manager: DefaultJobManager
) -> None:
    FAILURES["k"] = 2

    async with running(make_worker(store)):
        job_id = await manager.enqueue(Flaky(key="k"))
        record = await wait_for_record(store, job_id, in_state(JobState.SUCCEEDED))

    assert record.attempts == 3
    assert calls_of("steady") == ["k"]
    assert calls_of("failing") == ["k", "k", "k"]
    assert set(record.done_handlers) == {handler_name(FlakySteady), handler_name(FlakyFailing)}


async def test_a_retry_records_which_handlers_are_done(
    store: MemoryJobStore, manager: DefaultJobManager
) -> None:
    FAILURES["k"] = 1

    async with running(make_worker(store, first_wait_duration=60)):
        job_id = await manager.enqueue(Flaky(key="k"))
        record = await wait_for_record(store, job_id, lambda r: r.last_error is not None)

    assert record.state is JobState.SCHEDULED
    assert record.done_handlers == (handler_name(FlakySteady),)
    assert record.last_error is not None
    assert handler_name(FlakyFailing) in record.last_error
    assert "flaky failure for k" in record.last_error


async def test_a_dead_job_retried_by_hand_runs_only_the_handlers_that_failed(
    store: MemoryJobStore, manager: DefaultJobManager
) -> None:
    FAILURES["k"] = 1

    async with running(make_worker(store, max_retry_times=0)):
        job_id = await manager.enqueue(Flaky(key="k"))
        dead = await wait_for_record(store, job_id, in_state(JobState.DEAD))
        assert dead.done_handlers == (handler_name(FlakySteady),)
        await manager.retry(job_id)
        record = await wait_for_record(store, job_id, in_state(JobState.SUCCEEDED))

    assert record.attempts == 2
    assert calls_of("steady") == ["k"]
    assert calls_of("failing") == ["k", "k"]


@pytest.mark.parametrize(
    ("payload", "detail"),
    [('{"count": "many"}', "count"), ("{not json", "json"), ("[1, 2]", "Strict")],
    ids=["wrong-field", "not-json", "not-an-object"],
)
async def test_args_that_no_longer_validate_are_dead_at_once(
    store: MemoryJobStore, manager: DefaultJobManager, payload: str, detail: str
) -> None:
    broken = raw_record(get_job_name(Strict), payload)

    worker = make_worker(store)
    async with running(worker):
        await store.add([broken])
        fine = await manager.enqueue(Strict(count=3))
        greet = await manager.enqueue(Greet(key="after"))
        dead = await wait_for_record(store, broken.id, in_state(JobState.DEAD))
        for job_id in (fine, greet):
            await wait_for_record(store, job_id, in_state(JobState.SUCCEEDED))
        assert worker.running

    assert dead.attempts == 1
    assert dead.finished_at is not None
    assert dead.last_error is not None
    assert f"the stored args of job {broken.name!r} no longer validate as Strict" in (
        dead.last_error
    )
    assert detail.lower() in dead.last_error.lower()
    assert calls_of("strict") == ["3"]
    assert calls_of("greet") == ["after"]


async def test_a_name_without_a_handler_waits_without_using_attempts(
    store: MemoryJobStore, manager: DefaultJobManager, caplog: pytest.LogCaptureFixture
) -> None:
    orphan = raw_record("moved.away.OldArgs", '{"key": "a"}')

    async with running(make_worker(store)):
        await store.add([orphan])
        greet = await manager.enqueue(Greet(key="after"))
        await wait_for_record(store, greet, in_state(JobState.SUCCEEDED))
        waiting = await wait_for_record(store, orphan.id, lambda r: r.last_try_at is not None)
        waiting = await wait_for_record(store, orphan.id, in_state(JobState.SCHEDULED))

    assert waiting.attempts == 0
    assert waiting.last_error is not None
    assert "no handler for this job name: 'moved.away.OldArgs'; waiting since" in waiting.last_error
    assert waiting.last_try_at is not None
    assert waiting.next_try_at > waiting.last_try_at
    warnings = [r for r in caplog.records if "moved.away.OldArgs" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].levelname == "WARNING"
    assert "put back for a worker that has it" in warnings[0].getMessage()


async def test_a_long_delayed_job_without_a_handler_waits_from_its_first_claim(
    store: MemoryJobStore,
) -> None:
    orphan = raw_record("moved.away.OldArgs", '{"key": "a"}')
    orphan = replace(orphan, created_at=orphan.created_at - timedelta(days=2))

    async with running(make_worker(store, unknown_job_timeout=3600)):
        await store.add([orphan])
        waiting = await wait_for_record(store, orphan.id, lambda r: r.last_error is not None)

    assert waiting.state is JobState.SCHEDULED
    assert waiting.attempts == 0


async def test_a_name_without_a_handler_is_dead_after_the_unknown_job_timeout(
    store: MemoryJobStore, manager: DefaultJobManager, caplog: pytest.LogCaptureFixture
) -> None:
    orphan = raw_record("moved.away.OldArgs", '{"key": "a"}')

    async with running(make_worker(store, unknown_job_timeout=0.2)):
        await store.add([orphan])
        dead = await wait_for_record(store, orphan.id, in_state(JobState.DEAD), timeout=15)

    assert dead.attempts == 1
    assert dead.last_error is not None
    assert "no handler for this job name: 'moved.away.OldArgs'" in dead.last_error
    assert "unknown_job_timeout" in dead.last_error
    assert "retry the job" in dead.last_error
    [logged] = [r for r in caplog.records if "is dead" in r.getMessage()]
    assert logged.levelname == "ERROR"
    assert orphan.id in logged.getMessage()
    assert "moved.away.OldArgs" in logged.getMessage()


# -- scheduling ----------------------------------------------------------------------


async def test_an_enqueued_job_wakes_an_idle_worker(
    store: MemoryJobStore, manager: DefaultJobManager
) -> None:
    ran = signal("wake")

    async with running(make_worker(store, poll_interval=5)):
        await anyio.wait_all_tasks_blocked()
        await manager.enqueue(Greet(key="wake"))
        with anyio.fail_after(2):
            await ran.wait()


async def test_a_delayed_job_runs_when_due_and_not_before(
    store: MemoryJobStore, manager: DefaultJobManager
) -> None:
    ran = signal("later")

    async with running(make_worker(store, poll_interval=5)):
        await anyio.wait_all_tasks_blocked()
        job_id = await manager.enqueue(Greet(key="later"), delay=0.2)
        with anyio.fail_after(3):
            await ran.wait()

    record = await store.get(job_id)
    assert record is not None
    assert record.last_try_at is not None
    assert record.last_try_at >= record.next_try_at


async def test_no_more_than_concurrency_jobs_run_at_once(
    store: MemoryJobStore, manager: DefaultJobManager
) -> None:
    keys = [f"job-{n}" for n in range(5)]
    gates = [gate(key) for key in keys]
    job_ids = [await manager.enqueue(Blocking(key=key)) for key in keys]

    async with running(make_worker(store, concurrency=2)):
        await wait_until(lambda: len(calls_of("blocking")) == 2)
        await anyio.wait_all_tasks_blocked()
        assert len(calls_of("blocking")) == 2
        for opened in gates:
            opened.set()
        for job_id in job_ids:
            await wait_for_record(store, job_id, in_state(JobState.SUCCEEDED))

    assert sorted(calls_of("unblocked")) == keys


@pytest.mark.parametrize(
    ("prefetch", "most_held"),
    [(0, 1), (3, 4), (None, 2)],
    ids=["prefetch-0", "prefetch-3", "default-long-runs-as-many-as-concurrency"],
)
async def test_prefetch_bounds_the_jobs_a_worker_holds(
    store: MemoryJobStore, manager: DefaultJobManager, prefetch: int | None, most_held: int
) -> None:
    keys = [f"job-{n}" for n in range(6)]
    gates = {key: gate(key) for key in keys}
    job_ids = [await manager.enqueue(Blocking(key=key)) for key in keys]

    async def held() -> int:
        return (await store.count_by_state(utcnow()))[JobState.PROCESSING]

    async with running(make_worker(store, concurrency=1, prefetch=prefetch)):
        for started in range(1, len(keys) + 1):
            await wait_until(lambda: len(calls_of("blocking")) == started)  # noqa: B023
            await anyio.wait_all_tasks_blocked()
            # One job runs; the others held are claimed ahead, up to the prefetch.
            assert await held() == min(most_held, len(keys) - started + 1)
            assert len(await all_jobs(store, [JobState.PROCESSING])) == await held()
            # Every run lasts longer than a short one: the automatic prefetch
            # stays at concurrency (a minimum duration, not a guess at timing).
            await anyio.sleep(SHORT_RUN_SECONDS * 2)
            gates[calls_of("blocking")[-1]].set()
        for job_id in job_ids:
            await wait_for_record(store, job_id, in_state(JobState.SUCCEEDED))

    assert calls_of("unblocked") == calls_of("blocking")
    assert sorted(calls_of("blocking")) == keys


async def claims_asked(
    store: MemoryJobStore,
    manager: DefaultJobManager,
    monkeypatch: pytest.MonkeyPatch,
    jobs: int,
    prefetch: int | None = None,
) -> list[int]:
    """The limit of every claim a worker (concurrency 1, batch 5) makes
    while it runs ``jobs`` short jobs."""
    asked: list[int] = []
    claim = store.claim

    async def counting_claim(worker_id: str, limit: int, *args: Any, **kwargs: Any) -> Any:
        asked.append(limit)
        return await claim(worker_id, limit, *args, **kwargs)

    monkeypatch.setattr(store, "claim", counting_claim)
    job_ids = await manager.enqueue_many((Greet(key=f"job-{n}"), None) for n in range(jobs))
    async with running(make_worker(store, concurrency=1, batch_size=5, prefetch=prefetch)):
        for job_id in job_ids:
            await wait_for_record(store, job_id, in_state(JobState.SUCCEEDED))
    return asked


@pytest.mark.parametrize(
    ("prefetch", "largest_claim"),
    [(None, 5), (1, 2)],
    ids=["default-short-runs-a-batch-ahead", "prefetch-1"],
)
async def test_short_runs_are_claimed_a_batch_ahead_by_default(
    store: MemoryJobStore,
    manager: DefaultJobManager,
    monkeypatch: pytest.MonkeyPatch,
    prefetch: int | None,
    largest_claim: int,
) -> None:
    asked = await claims_asked(store, manager, monkeypatch, 40, prefetch=prefetch)

    # The first claim fills one slot and one ahead; once runs prove short,
    # the automatic prefetch claims a whole batch ahead.
    assert asked[0] == 2
    assert max(asked) == largest_claim


async def test_short_runs_are_claimed_in_whole_batches(
    store: MemoryJobStore, manager: DefaultJobManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = await claims_asked(store, manager, monkeypatch, 60)

    # Two batches are held ahead, and one is topped up once it has started:
    # no claim asks for the few slots freed so far, which would pay a
    # claim's fixed cost for fewer jobs.
    first_batch = asked.index(5)
    assert asked[first_batch:] == [5] * (len(asked) - first_batch)


@pytest.mark.parametrize(
    ("concurrency", "batch_size", "prefetch", "held", "top_up_at"),
    [
        (10, 30, None, 10 + 60, 30),
        (50, 30, None, 50 + 100, 30),
        (10, 30, 4, 10 + 4, 2),
        (10, 30, 100, 10 + 100, 30),
    ],
    ids=["auto-two-batches", "auto-batch-at-least-concurrency", "fixed-small", "fixed-large"],
)
def test_prefetch_once_runs_are_short(
    concurrency: int, batch_size: int, prefetch: int | None, held: int, top_up_at: int
) -> None:
    options = BackgroundJobOptions(
        concurrency=concurrency, batch_size=batch_size, prefetch=prefetch
    )
    sized = _Prefetch(options)
    for _ in range(3):
        sized.ran(SHORT_RUN_SECONDS / 10)
    assert (sized.held_cap, sized.top_up_at) == (held, top_up_at)


# -- stopping ----------------------------------------------------------------------


async def test_stop_puts_running_and_unstarted_jobs_back(
    store: MemoryJobStore, manager: DefaultJobManager
) -> None:
    gate("stuck")
    started = signal("stuck")
    stuck = await manager.enqueue(Blocking(key="stuck"))
    waiting = await manager.enqueue(Greet(key="waiting"))
    worker = make_worker(store, concurrency=1, shutdown_timeout=0.05)

    with anyio.fail_after(5):
        async with running(worker):
            await started.wait()
            await wait_for_record(store, waiting, in_state(JobState.PROCESSING))
            worker.stop()

    assert not worker.running
    interrupted = await store.get(stuck)
    unstarted = await store.get(waiting)
    assert interrupted is not None
    assert unstarted is not None
    assert interrupted.state.is_pending
    assert interrupted.attempts == 1
    assert interrupted.lease_owner is None
    assert interrupted.next_try_at <= utcnow()
    assert unstarted.state.is_pending
    assert unstarted.attempts == 0
    assert unstarted.lease_owner is None
    assert calls_of("unblocked") == []
    assert calls_of("greet") == []

    # Due at once: the next worker runs both.
    gate("stuck").set()
    async with running(make_worker(store)):
        done = await wait_for_record(store, stuck, in_state(JobState.SUCCEEDED))
        await wait_for_record(store, waiting, in_state(JobState.SUCCEEDED))
    assert done.attempts == 2


async def test_stop_waits_for_a_running_job_within_the_shutdown_timeout(
    store: MemoryJobStore, manager: DefaultJobManager
) -> None:
    release = gate("slow")
    started = signal("slow")
    job_id = await manager.enqueue(Blocking(key="slow"))
    worker = make_worker(store, shutdown_timeout=30)

    with anyio.fail_after(5):
        async with running(worker):
            await started.wait()
            worker.stop()
            await anyio.wait_all_tasks_blocked()
            assert worker.running
            release.set()

    record = await store.get(job_id)
    assert record is not None
    assert record.state is JobState.SUCCEEDED
    assert calls_of("unblocked") == ["slow"]


async def test_a_cancelled_worker_puts_its_jobs_back(
    store: MemoryJobStore, manager: DefaultJobManager
) -> None:
    gate("stuck")
    started = signal("stuck")
    job_id = await manager.enqueue(Blocking(key="stuck"))

    with anyio.fail_after(5), anyio.CancelScope() as scope:
        async with running(make_worker(store)):
            await started.wait()
            scope.cancel()

    record = await store.get(job_id)
    assert record is not None
    assert record.state.is_pending
    assert record.lease_owner is None
    assert record.next_try_at <= utcnow()


async def test_an_idle_worker_stops_promptly(store: MemoryJobStore) -> None:
    worker = make_worker(store, poll_interval=60)

    with anyio.fail_after(2):
        async with running(worker):
            await anyio.wait_all_tasks_blocked()
            assert worker.running

    assert not worker.running


async def test_a_worker_runs_once_at_a_time(store: MemoryJobStore) -> None:
    worker = make_worker(store)

    async with running(worker):
        with pytest.raises(RuntimeError, match="running already"):
            await worker.run()


async def test_a_lease_is_renewed_while_a_long_job_runs(
    store: MemoryJobStore, manager: DefaultJobManager
) -> None:
    release = gate("long")
    started = signal("long")
    job_id = await manager.enqueue(Blocking(key="long"))

    async with running(make_worker(store, lease_timeout=0.15)):
        with anyio.fail_after(2):
            await started.wait()
        first = await store.get(job_id)
        assert first is not None
        assert first.lease_expires_at is not None
        first_expiry = first.lease_expires_at
        # Past the first lease: without renewal another worker would take the job now.
        await wait_until(lambda: utcnow() > first_expiry + timedelta(seconds=0.05))

        stolen = await store.claim("intruder", 10, timedelta(seconds=30))

        held = await store.get(job_id)
        assert stolen == []
        assert held is not None
        assert held.lease_owner == WORKER_ID
        assert held.lease_expires_at is not None
        assert held.lease_expires_at > first_expiry
        release.set()
        done = await wait_for_record(store, job_id, in_state(JobState.SUCCEEDED))

    assert done.attempts == 1
    assert calls_of("blocking") == ["long"]


async def test_a_running_worker_is_listed_until_it_stops(
    store: MemoryJobStore, manager: DefaultJobManager
) -> None:
    gate("busy")
    started = signal("busy")
    await manager.enqueue(Blocking(key="busy"))
    worker = make_worker(store, lease_timeout=0.15, shutdown_timeout=0.01)

    async with running(worker):
        with anyio.fail_after(2):
            await started.wait()
        [info] = await wait_for(
            manager.workers, lambda infos: len(infos) == 1 and infos[0].running_jobs == 1
        )

        assert info.id == WORKER_ID
        assert info.pid == os.getpid()
        assert info.host == socket.gethostname()
        assert info.started_at <= info.last_seen_at <= utcnow()
        assert info.running_jobs == 1
        worker.stop()

    assert await manager.workers() == []
