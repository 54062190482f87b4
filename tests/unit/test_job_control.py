"""Job control above the store: where a job waits (queue, priority), whether
it may be stored twice (unique keys), which queues a worker serves, pausing
a queue, and cancelling a running job at once. The store's part of each is
in tests/contract/test_job_control.py."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import anyio
import pytest
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel, ValidationError

from masa_jobs import (
    BackgroundJob,
    BackgroundJobManager,
    BackgroundJobOptions,
    DefaultJobManager,
    InvalidJobOptionsError,
    JobId,
    JobRegistry,
    JobState,
    MasaApp,
    MemoryJobStore,
    UniqueScope,
    Worker,
    job_options,
)
from masa_jobs._job_control import QueuePlan, parse_queues
from masa_jobs._queue_slots import QueueSlots
from masa_jobs.records import JobRecord
from masa_jobs.testing import inline

from .support import fast_options, running, wait_for_record, wait_until

pytestmark = pytest.mark.anyio

# Far beyond every wait below: a run that is not cancelled never ends in a test.
FOREVER = 3600
RAN: list[str] = []
STARTED: dict[str, anyio.Event] = {}
RELEASE: dict[str, anyio.Event] = {}


class Plain(BaseModel):
    key: str


class PlainJob(BackgroundJob[Plain]):
    async def execute(self, args: Plain) -> None:
        RAN.append(args.key)


@job_options(queue="reports", priority=3)
class Report(BaseModel):
    month: str


class ReportJob(BackgroundJob[Report]):
    async def execute(self, args: Report) -> None:
        RAN.append(args.month)


@job_options(unique_key=lambda args: f"user:{args.user}")
class Sync(BaseModel):
    user: int


class SyncJob(BackgroundJob[Sync]):
    async def execute(self, args: Sync) -> None:
        RAN.append(f"sync {args.user}")


@job_options(unique_key=lambda args: f"user:{args.user}")
class Audit(BaseModel):
    user: int


class AuditJob(BackgroundJob[Audit]):
    async def execute(self, args: Audit) -> None:
        RAN.append(f"audit {args.user}")


class Held(BaseModel):
    """A job that runs until the test releases it (or forever)."""

    key: str


class HeldJob(BackgroundJob[Held]):
    async def execute(self, args: Held) -> None:
        STARTED.setdefault(args.key, anyio.Event()).set()
        try:
            await RELEASE.setdefault(args.key, anyio.Event()).wait()
        finally:
            RAN.append(args.key)


HANDLERS = [PlainJob, ReportJob, SyncJob, AuditJob, HeldJob]


@pytest.fixture(autouse=True)
def _clear() -> None:
    RAN.clear()
    STARTED.clear()
    RELEASE.clear()


def setup(**options: Any) -> tuple[MemoryJobStore, DefaultJobManager, Worker]:
    store = MemoryJobStore()
    registry = JobRegistry(HANDLERS)
    values = fast_options(**options)
    return store, DefaultJobManager(store, registry, values), Worker(store, registry, values)


async def stored(store: MemoryJobStore, job_id: str) -> JobRecord:
    record = await store.get(job_id)
    assert record is not None
    return record


def finished(record: JobRecord) -> bool:
    return record.state.is_finished


# -- where a job waits ---------------------------------------------------------------


async def test_a_job_waits_in_the_default_queue_at_the_first_priority() -> None:
    store, manager, _ = setup()

    record = await stored(store, await manager.enqueue(Plain(key="a")))

    assert (record.queue, record.priority) == ("default", 0)
    assert record.unique_key is None


async def test_the_args_class_sets_queue_and_priority_and_enqueue_overrides_them() -> None:
    store, manager, _ = setup()

    declared = await stored(store, await manager.enqueue(Report(month="2026-11")))
    overridden = await stored(
        store, await manager.enqueue(Report(month="2026-12"), queue="critical", priority=0)
    )

    assert (declared.queue, declared.priority) == ("reports", 3)
    assert (overridden.queue, overridden.priority) == ("critical", 0)
    info = await manager.get(declared.id)
    assert info is not None
    assert (info.queue, info.priority) == ("reports", 3)


async def test_enqueue_many_applies_queue_priority_and_timeout_to_every_job() -> None:
    store, manager, _ = setup()

    ids = await manager.enqueue_many(
        [(Plain(key="a"), None), (Report(month="m"), 5)], queue="bulk", priority=9, timeout=30
    )

    records = [await stored(store, job_id) for job_id in ids]
    assert [(r.queue, r.priority) for r in records] == [("bulk", 9), ("bulk", 9)]
    assert all('"masa-timeout":"30.0"' in (r.headers or "") for r in records)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"queue": "two words"}, "not a valid queue name"),
        ({"queue": ""}, "not a valid queue name"),
        ({"queue": "x" * 101}, "not a valid queue name"),
        ({"priority": 10}, "from 0"),
        ({"priority": -1}, "from 0"),
        ({"priority": True}, "from 0"),
        ({"priority": "1"}, "from 0"),
        ({"unique_key": ""}, "unique key"),
        ({"unique_key": "k" * 501}, "unique key"),
        ({"unique_key": "nul\x00"}, "unique key"),
        ({"unique_key": "k", "unique_scope": "forever"}, "unique_scope"),
        ({"unique_key": "k", "unique_for": 0}, "unique_for"),
        ({"unique_key": "k", "unique_scope": "active", "unique_for": 5}, "not both"),
    ],
)
async def test_a_bad_job_option_is_refused_and_stores_nothing(
    fields: dict[str, Any], message: str
) -> None:
    store, manager, _ = setup()

    with pytest.raises(InvalidJobOptionsError, match=message):
        await manager.enqueue(Plain(key="bad"), **fields)

    assert await store.count_by_state(await store.now()) == dict.fromkeys(JobState, 0)


def test_job_options_checks_its_values_when_the_class_is_declared() -> None:
    with pytest.raises(InvalidJobOptionsError, match="queue name"):
        job_options(queue="a/b")
    with pytest.raises(InvalidJobOptionsError, match="priority"):
        job_options(priority=42)
    with pytest.raises(InvalidJobOptionsError, match="unique_scope"):
        job_options(unique_key="k", unique_scope="period")


# -- unique keys ---------------------------------------------------------------------


async def test_a_second_enqueue_with_a_held_key_returns_the_first_job() -> None:
    store, manager, _ = setup()

    first = await manager.enqueue(Sync(user=7))
    second = await manager.enqueue(Sync(user=7))
    other = await manager.enqueue(Sync(user=8))

    assert isinstance(first, JobId)
    assert not first.duplicate
    assert second == first
    assert second.duplicate
    assert other != first
    assert not other.duplicate
    assert (await store.count_by_state(await store.now()))[JobState.ENQUEUED] == 2
    record = await stored(store, first)
    assert record.unique_scope is UniqueScope.ACTIVE


async def test_unique_keys_are_per_job_name() -> None:
    _store, manager, _ = setup()

    sync = await manager.enqueue(Sync(user=1))
    audit = await manager.enqueue(Audit(user=1))

    assert sync != audit
    assert not audit.duplicate


async def test_enqueue_sets_a_key_scope_and_period() -> None:
    store, manager, _ = setup()

    pending = await stored(
        store, await manager.enqueue(Plain(key="a"), unique_key="k1", unique_scope="pending")
    )
    period = await stored(
        store, await manager.enqueue(Plain(key="b"), unique_key="k2", unique_for=60)
    )

    assert pending.unique_scope is UniqueScope.PENDING
    assert pending.unique_key is not None
    assert pending.unique_key.endswith("/k1")
    assert period.unique_scope is UniqueScope.PERIOD
    assert period.unique_until == period.created_at + timedelta(seconds=60)


async def test_a_duplicate_in_one_batch_answers_the_first_id() -> None:
    _store, manager, _ = setup()

    ids = await manager.enqueue_many([(Sync(user=3), None), (Sync(user=3), None)])

    assert ids[0] == ids[1]
    assert [job_id.duplicate for job_id in ids] == [False, True]


async def test_a_key_function_that_raises_is_refused() -> None:
    @job_options(unique_key=lambda args: args.missing)
    class Broken(BaseModel):
        n: int

    class BrokenJob(BackgroundJob[Broken]):
        async def execute(self, args: Broken) -> None:
            return None

    store = MemoryJobStore()
    manager = DefaultJobManager(store, JobRegistry([BrokenJob]), fast_options())

    with pytest.raises(InvalidJobOptionsError, match="unique_key function raised"):
        await manager.enqueue(Broken(n=1))


async def test_a_finished_job_releases_its_key() -> None:
    store, manager, worker = setup()
    async with running(worker):
        first = await manager.enqueue(Sync(user=5))
        await wait_for_record(store, first, finished)
        again = await manager.enqueue(Sync(user=5))

    assert again != first
    assert not again.duplicate


# -- the queues option ---------------------------------------------------------------


def test_the_queues_option_is_parsed_with_caps() -> None:
    assert BackgroundJobOptions().queue_plan == QueuePlan(("default",), (None,))
    assert BackgroundJobOptions(queues="critical:5, default").queue_plan == QueuePlan(
        ("critical", "default"), (5, None)
    )
    assert parse_queues(("*",)) == QueuePlan(None)


@pytest.mark.parametrize(
    ("queues", "message"),
    [
        ("", "empty"),
        ("a,*", "stands alone"),
        ("a,a", "twice"),
        ("a:0", "positive number"),
        ("a:many", "positive number"),
        ("bad queue", "queue name"),
    ],
)
def test_a_bad_queues_option_is_refused(queues: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        BackgroundJobOptions(queues=queues)


def test_claim_rounds_follow_the_order_and_the_caps() -> None:
    slots = QueueSlots(parse_queues(("critical:2", "default")))
    assert slots.rounds(10) == [(("critical",), 2), (("default",), 10)]

    slots.claimed([JobRecord("a", "n", "{}", JobState.PROCESSING, *_times(), queue="critical")])
    slots.claimed([JobRecord("b", "n", "{}", JobState.PROCESSING, *_times(), queue="critical")])
    assert slots.rounds(10) == [(("default",), 10)]

    slots.released("a")
    assert slots.rounds(10) == [(("critical",), 1), (("default",), 10)]
    assert QueueSlots(parse_queues(("*",))).rounds(7) == [(None, 7)]
    assert QueueSlots(parse_queues(("default",))).rounds(7) == [(("default",), 7)]


def _times() -> tuple[Any, Any]:
    from masa_jobs.records import utcnow

    now = utcnow()
    return now, now


# -- workers and queues --------------------------------------------------------------


async def test_a_worker_runs_only_the_queues_it_serves() -> None:
    store, manager, worker = setup(queues="reports")
    plain = await manager.enqueue(Plain(key="default queue"))
    async with running(worker):
        report = await manager.enqueue(Report(month="served"))
        await wait_for_record(store, report, finished)

    assert RAN == ["served"]
    assert (await stored(store, plain)).state is JobState.ENQUEUED


async def test_a_worker_drains_its_queues_in_the_order_given() -> None:
    _store, manager, worker = setup(queues="first,second", concurrency=1, prefetch=0)
    await manager.enqueue_many([(Plain(key=f"second {n}"), None) for n in range(3)], queue="second")
    await manager.enqueue_many([(Plain(key=f"first {n}"), None) for n in range(3)], queue="first")
    async with running(worker):
        await wait_until(lambda: len(RAN) == 6)

    assert [f"first {n}" for n in range(3)] + [f"second {n}" for n in range(3)] == RAN


async def test_priority_decides_within_a_queue_and_ties_stay_in_order() -> None:
    _store, manager, worker = setup(concurrency=1, prefetch=0)
    for key, priority in [("p5", 5), ("p0 a", 0), ("p9", 9), ("p0 b", 0)]:
        await manager.enqueue(Plain(key=key), priority=priority)
    async with running(worker):
        await wait_until(lambda: len(RAN) == 4)

    assert RAN == ["p0 a", "p0 b", "p5", "p9"]


async def test_a_capped_queue_holds_no_more_than_its_cap() -> None:
    store, manager, worker = setup(queues="slow:1,default", concurrency=4)
    slow = [await manager.enqueue(Held(key=f"slow {n}"), queue="slow") for n in range(3)]
    async with running(worker):
        await STARTED.setdefault("slow 0", anyio.Event()).wait()
        plain = await manager.enqueue(Plain(key="fast"))
        await wait_for_record(store, plain, finished)
        # The fast job ran beside it; the other slow jobs were not claimed.
        assert [(await stored(store, job_id)).state for job_id in slow[1:]] == [
            JobState.ENQUEUED,
            JobState.ENQUEUED,
        ]
        for n in range(3):
            RELEASE.setdefault(f"slow {n}", anyio.Event()).set()
        for job_id in slow:
            await wait_for_record(store, job_id, finished)

    assert RAN.index("fast") < RAN.index("slow 0")


async def test_a_paused_queue_keeps_its_jobs_until_it_is_resumed() -> None:
    store, manager, worker = setup(queues="default,other")
    await manager.pause_queue("default")
    held_back = await manager.enqueue(Plain(key="paused"))
    async with running(worker):
        # Claimed before "other" if it were not paused.
        other = await manager.enqueue(Plain(key="other"), queue="other")
        await wait_for_record(store, other, finished)
        assert (await stored(store, held_back)).state is JobState.ENQUEUED
        assert await manager.paused_queues() == {"default"}

        await manager.resume_queue("default")
        await wait_for_record(store, held_back, finished)

    assert await manager.paused_queues() == set()


async def test_pausing_a_bad_queue_name_is_refused() -> None:
    _, manager, _ = setup()
    with pytest.raises(InvalidJobOptionsError):
        await manager.pause_queue("no such/queue")


async def test_a_cancel_notice_stops_a_running_job_before_the_next_renewal() -> None:
    # Renewals every 20 s: only the store's notice can stop the job in time.
    store, manager, worker = setup(lease_timeout=60)
    async with running(worker):
        job_id = await manager.enqueue(Held(key="cancel me"))
        await STARTED.setdefault("cancel me", anyio.Event()).wait()
        with anyio.fail_after(5):
            await manager.cancel(job_id)
            await wait_until(lambda: "cancel me" in RAN)

    record = await stored(store, job_id)
    assert record.state is JobState.CANCELLED
    assert worker.leases_lost == 0  # an operator's cancel, not a fault


# -- the facades and the testing modes -----------------------------------------------


async def test_the_static_facade_passes_the_job_options_on() -> None:
    container = BackgroundJobContainer()
    MasaApp.build(container)
    store = container.job_store()

    job_id = await BackgroundJobManager.enqueue(Report(month="m"), queue="q", priority=2)
    again = await BackgroundJobManager.enqueue(Plain(key="x"), unique_key="once")
    dup = await BackgroundJobManager.enqueue(Plain(key="y"), unique_key="once")

    record = await store.get(job_id)
    assert record is not None
    assert (record.queue, record.priority) == ("q", 2)
    assert dup == again
    assert dup.duplicate


async def test_inline_mode_applies_timeouts() -> None:
    container = BackgroundJobContainer()
    MasaApp.build(container)

    with inline(container) as jobs, pytest.raises(TimeoutError, match=r"timed out after 0\.05 s"):
        await jobs.manager.enqueue(Held(key="inline"), timeout=0.05)

    assert RAN == ["inline"]  # its clean-up ran
