"""The ``JobStore`` contract: every store passes this suite unchanged.

The tests speak only the protocol (``JobRecord`` in, ``JobRecord`` out,
``JobOutcome`` to finish) and pass explicit ``now`` values wherever the
protocol takes one, so they do not depend on the wall clock. Timestamps use
whole milliseconds: a store must keep at least that precision.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import anyio
import pytest

from masa_jobs import JobOutcome, JobRecord, JobState, JobStore
from masa_jobs.records import WorkerInfo, utcnow
from masa_jobs.stores.base import STALE_WORKER_SECONDS

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
PENDING = (JobState.SCHEDULED, JobState.ENQUEUED)
FINISHED = (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED)
CREATED = T0 - timedelta(seconds=60)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def make_record(
    job_id: str | None = None,
    *,
    name: str = "contract.job",
    payload: str = '{"n": 1}',
    state: JobState = JobState.ENQUEUED,
    created_at: datetime = CREATED,
    next_try_at: datetime | None = None,
    attempts: int = 0,
) -> JobRecord:
    return JobRecord(
        id=job_id or uuid4().hex,
        name=name,
        payload=payload,
        state=state,
        created_at=created_at,
        next_try_at=created_at if next_try_at is None else next_try_at,
        attempts=attempts,
    )


async def add_one(store: JobStore, **fields: object) -> JobRecord:
    record = make_record(**fields)  # type: ignore[arg-type]
    await store.add([record])
    return record


async def claim_one(store: JobStore, worker_id: str, now: datetime) -> JobRecord:
    claimed = await store.claim(worker_id, 1, now, LEASE)
    assert len(claimed) == 1
    return claimed[0]


async def stored(store: JobStore, job_id: str) -> JobRecord:
    record = await store.get(job_id)
    assert record is not None
    return record


async def claim_order(store: JobStore, now: datetime) -> list[str]:
    """The order in which due jobs are handed out, one claim at a time."""
    order: list[str] = []
    while claimed := await store.claim("worker-1", 1, now, LEASE):
        order.append(claimed[0].id)
    return order


def outcome(
    record: JobRecord,
    state: JobState,
    *,
    next_try_at: datetime | None = None,
    last_error: str | None = None,
    done_handlers: tuple[str, ...] = (),
    finished_at: datetime | None = None,
    attempts: int | None = None,
) -> JobOutcome:
    return JobOutcome(
        job_id=record.id,
        state=state,
        attempts=record.attempts if attempts is None else attempts,
        next_try_at=record.next_try_at if next_try_at is None else next_try_at,
        last_error=last_error,
        done_handlers=done_handlers,
        finished_at=finished_at,
    )


async def finished_job(store: JobStore, state: JobState, finished_at: datetime) -> str:
    """A job that reached ``state`` (succeeded, dead or cancelled) at ``finished_at``."""
    record = await add_one(store, created_at=finished_at - seconds(10))
    if state is JobState.CANCELLED:
        assert await store.transition(record.id, PENDING, state, finished_at) is not None
        return record.id
    claimed = await store.claim("finisher", 1, finished_at - seconds(5), LEASE)
    assert [job.id for job in claimed] == [record.id]
    applied = await store.finish(
        "finisher", [outcome(claimed[0], state, finished_at=finished_at, last_error="x")]
    )
    assert applied == 1
    return record.id


def assert_utc(*stamps: datetime | None) -> None:
    for stamp in stamps:
        if stamp is not None:
            assert stamp.tzinfo is not None
            assert stamp.utcoffset() == timedelta(0)


def ids(records: Iterable[JobRecord]) -> list[str]:
    return [record.id for record in records]


# -- add and get ---------------------------------------------------------------


async def test_add_then_get_round_trips_every_field(store: JobStore) -> None:
    payload = json.dumps({"name": "Łódź 東京 🚀", "quote": 'say "hi"\n', "n": [1, 2.5, None]})
    record = JobRecord(
        id=uuid4().hex,
        name="mail.send-welcome:v2",
        payload=payload,
        state=JobState.SCHEDULED,
        created_at=datetime(2024, 5, 1, 11, 59, 58, 123000, tzinfo=UTC),
        next_try_at=datetime(2024, 5, 1, 13, 0, 0, 456000, tzinfo=UTC),
        attempts=2,
        last_try_at=datetime(2024, 5, 1, 11, 0, 0, 789000, tzinfo=UTC),
        last_error="Traceback (most recent call last):\nValueError: ✗ ungültig",
        done_handlers=("app.jobs.First", "app.jobs.Second"),
    )
    await store.add([record])

    got = await stored(store, record.id)

    assert got.id == record.id
    assert got.name == record.name
    assert got.payload == payload
    assert json.loads(got.payload) == json.loads(payload)
    assert got.state.is_pending
    assert got.created_at == record.created_at
    assert got.next_try_at == record.next_try_at
    assert got.attempts == 2
    assert got.last_try_at == record.last_try_at
    assert got.last_error == record.last_error
    assert got.done_handlers == record.done_handlers
    assert got.lease_owner is None
    assert got.lease_expires_at is None
    assert got.finished_at is None
    assert_utc(got.created_at, got.next_try_at, got.last_try_at)


async def test_get_of_an_unknown_id_is_none(store: JobStore) -> None:
    assert await store.get(uuid4().hex) is None


async def test_add_stores_a_whole_batch(store: JobStore) -> None:
    records = [make_record(payload=json.dumps({"i": i})) for i in range(50)]
    await store.add(records)

    for record in records:
        assert (await stored(store, record.id)).payload == record.payload
    counts = await store.count_by_state(T0)
    assert counts[JobState.ENQUEUED] == 50


async def test_add_of_an_empty_batch_stores_nothing(store: JobStore) -> None:
    await store.add([])
    assert sum((await store.count_by_state(T0)).values()) == 0


async def test_add_is_all_or_none(store: JobStore) -> None:
    existing = await add_one(store)
    fresh = make_record()
    clash = make_record(existing.id)

    # Stores report the clash with their own driver's error type.
    with pytest.raises(Exception):  # noqa: B017, PT011
        await store.add([fresh, clash])

    assert await store.get(fresh.id) is None
    assert (await stored(store, existing.id)).payload == existing.payload


# -- claim -----------------------------------------------------------------------


async def test_claim_takes_due_jobs_only(store: JobStore) -> None:
    due = await add_one(store, next_try_at=T0 - seconds(1))
    exactly_due = await add_one(store, next_try_at=T0)
    later = await add_one(store, state=JobState.SCHEDULED, next_try_at=T0 + seconds(1))

    claimed = await store.claim("worker-1", 10, T0, LEASE)

    assert sorted(ids(claimed)) == sorted([due.id, exactly_due.id])
    assert (await stored(store, later.id)).state.is_pending
    assert ids(await store.claim("worker-1", 10, T0 + seconds(1), LEASE)) == [later.id]


async def test_claim_moves_the_job_to_processing_under_a_lease(store: JobStore) -> None:
    record = await add_one(store, payload='{"who": "Zoë"}')

    claimed = await claim_one(store, "worker-1", T0)

    assert claimed.id == record.id
    assert claimed.state is JobState.PROCESSING
    assert claimed.attempts == 1
    assert claimed.last_try_at == T0
    assert claimed.lease_owner == "worker-1"
    assert claimed.lease_expires_at == T0 + LEASE
    assert claimed.payload == record.payload
    assert claimed.name == record.name
    assert_utc(claimed.last_try_at, claimed.lease_expires_at)
    again = await stored(store, record.id)
    assert again.state is JobState.PROCESSING
    assert again.attempts == 1
    assert again.last_try_at == T0
    assert again.lease_owner == "worker-1"
    assert again.lease_expires_at == T0 + LEASE


async def test_claim_respects_its_limit(store: JobStore) -> None:
    await store.add([make_record() for _ in range(10)])

    assert len(await store.claim("worker-1", 3, T0, LEASE)) == 3
    assert len(await store.claim("worker-1", 100, T0, LEASE)) == 7
    assert await store.claim("worker-1", 100, T0, LEASE) == []


async def test_claim_on_an_empty_store_is_empty(store: JobStore) -> None:
    assert await store.claim("worker-1", 10, T0, LEASE) == []


async def test_a_held_job_is_not_claimed_again_while_its_lease_holds(store: JobStore) -> None:
    await add_one(store)
    await claim_one(store, "worker-1", T0)

    assert await store.claim("worker-2", 10, T0 + LEASE - seconds(1), LEASE) == []


async def test_claim_order_is_due_time_first(store: JobStore) -> None:
    third = make_record(next_try_at=T0 - seconds(1))
    first = make_record(next_try_at=T0 - seconds(3))
    second = make_record(next_try_at=T0 - seconds(2))
    await store.add([third, first, second])

    assert await claim_order(store, T0) == [first.id, second.id, third.id]


async def test_claim_order_is_fewer_attempts_first_at_equal_due_time(store: JobStore) -> None:
    due = T0 - seconds(5)
    tried_thrice = make_record(attempts=3, created_at=T0 - seconds(30), next_try_at=due)
    tried_once = make_record(attempts=1, created_at=T0 - seconds(20), next_try_at=due)
    tried_twice = make_record(attempts=2, created_at=T0 - seconds(10), next_try_at=due)
    await store.add([tried_thrice, tried_once, tried_twice])

    assert await claim_order(store, T0) == [tried_once.id, tried_twice.id, tried_thrice.id]


async def test_claim_order_is_creation_order_when_due_time_and_attempts_tie(
    store: JobStore,
) -> None:
    # One batch shares one creation time (enqueue_many): the order of the batch counts.
    batch = [make_record() for _ in range(10)]
    await store.add(batch)
    # Separate adds at later creation times, with the same due time.
    later = []
    for i in range(5):
        record = make_record(created_at=T0 - seconds(50 - i), next_try_at=T0 - seconds(60))
        await store.add([record])
        later.append(record)

    assert await claim_order(store, T0) == ids(batch) + ids(later)


async def test_claim_under_a_limit_picks_the_earliest_due_jobs(store: JobStore) -> None:
    records = [make_record(next_try_at=T0 - seconds(n)) for n in (1, 5, 3, 4, 2)]
    await store.add(records)

    claimed = await store.claim("worker-1", 2, T0, LEASE)

    by_due = sorted(records, key=lambda r: r.next_try_at)
    assert sorted(ids(claimed)) == sorted(ids(by_due[:2]))


async def test_an_expired_lease_makes_the_job_due_again(store: JobStore) -> None:
    record = await add_one(store)
    await claim_one(store, "worker-1", T0)
    assert await store.claim("worker-2", 10, T0 + LEASE - seconds(1), LEASE) == []

    later = T0 + LEASE + seconds(1)
    reclaimed = await claim_one(store, "worker-2", later)

    assert reclaimed.id == record.id
    assert reclaimed.state is JobState.PROCESSING
    assert reclaimed.attempts == 2
    assert reclaimed.last_try_at == later
    assert reclaimed.lease_owner == "worker-2"
    assert reclaimed.lease_expires_at == later + LEASE
    assert (await stored(store, record.id)).lease_owner == "worker-2"


async def test_a_worker_that_lost_its_lease_cannot_finish_the_job(store: JobStore) -> None:
    await add_one(store)
    first = await claim_one(store, "worker-1", T0)
    second = await claim_one(store, "worker-2", T0 + LEASE + seconds(1))

    late = outcome(first, JobState.SUCCEEDED, finished_at=T0 + seconds(40))
    assert await store.finish("worker-1", [late]) == 0
    assert (await stored(store, first.id)).state is JobState.PROCESSING

    done = outcome(second, JobState.SUCCEEDED, finished_at=T0 + seconds(41))
    assert await store.finish("worker-2", [done]) == 1
    assert (await stored(store, first.id)).state is JobState.SUCCEEDED


async def test_concurrent_claimers_never_share_a_job_and_take_them_all(
    store: JobStore,
) -> None:
    records = [make_record(payload=json.dumps({"i": i})) for i in range(200)]
    await store.add(records)
    taken: dict[str, list[str]] = {}

    async def claimer(worker_id: str) -> None:
        mine = taken.setdefault(worker_id, [])
        while batch := await store.claim(worker_id, 7, T0, LEASE):
            assert all(job.lease_owner == worker_id for job in batch)
            mine.extend(ids(batch))
            await anyio.lowlevel.checkpoint()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for n in range(4):
                tg.start_soon(claimer, f"worker-{n}")

    every = [job_id for mine in taken.values() for job_id in mine]
    assert len(every) == len(set(every)) == 200
    assert set(every) == set(ids(records))
    assert (await store.count_by_state(T0))[JobState.PROCESSING] == 200


# -- leases ------------------------------------------------------------------------


async def test_extend_leases_applies_to_the_owner_only(store: JobStore) -> None:
    record = await add_one(store)
    await claim_one(store, "worker-1", T0)

    await store.extend_leases("worker-2", [record.id], T0 + seconds(3600))
    assert (await stored(store, record.id)).lease_expires_at == T0 + LEASE

    await store.extend_leases("worker-1", [record.id, uuid4().hex], T0 + seconds(120))
    extended = await stored(store, record.id)
    assert extended.lease_expires_at == T0 + seconds(120)
    assert extended.lease_owner == "worker-1"
    assert extended.state is JobState.PROCESSING

    # The original lease would have expired; the extended one still holds.
    assert await store.claim("worker-2", 10, T0 + seconds(60), LEASE) == []
    reclaimed = await claim_one(store, "worker-2", T0 + seconds(121))
    assert reclaimed.id == record.id
    assert reclaimed.attempts == 2


async def test_extend_leases_ignores_jobs_that_are_not_held(store: JobStore) -> None:
    pending = await add_one(store, state=JobState.SCHEDULED, next_try_at=T0 + seconds(60))

    await store.extend_leases("worker-1", [pending.id, uuid4().hex], T0 + seconds(120))

    after = await stored(store, pending.id)
    assert after.state.is_pending
    assert after.lease_owner is None
    assert after.lease_expires_at is None


# -- finish ------------------------------------------------------------------------


async def test_finish_succeeded(store: JobStore) -> None:
    await add_one(store)
    claimed = await claim_one(store, "worker-1", T0)
    done_at = T0 + seconds(2)

    applied = await store.finish(
        "worker-1",
        [outcome(claimed, JobState.SUCCEEDED, done_handlers=("h.A", "h.B"), finished_at=done_at)],
    )

    assert applied == 1
    after = await stored(store, claimed.id)
    assert after.state is JobState.SUCCEEDED
    assert after.finished_at == done_at
    assert after.attempts == 1
    assert after.done_handlers == ("h.A", "h.B")
    assert after.lease_owner is None
    assert after.lease_expires_at is None
    assert_utc(after.finished_at)
    assert await store.claim("worker-1", 10, T0 + seconds(86400), LEASE) == []


async def test_finish_dead_keeps_the_reason(store: JobStore) -> None:
    await add_one(store)
    claimed = await claim_one(store, "worker-1", T0)
    error = "Traceback (most recent call last):\nRuntimeError: the mail server said nö"

    applied = await store.finish(
        "worker-1",
        [
            outcome(
                claimed,
                JobState.DEAD,
                last_error=error,
                done_handlers=("h.A",),
                finished_at=T0 + seconds(1),
            )
        ],
    )

    assert applied == 1
    after = await stored(store, claimed.id)
    assert after.state is JobState.DEAD
    assert after.last_error == error
    assert after.finished_at == T0 + seconds(1)
    assert after.done_handlers == ("h.A",)
    assert after.lease_owner is None
    assert await store.claim("worker-1", 10, T0 + seconds(86400), LEASE) == []


async def test_finish_scheduled_retries_at_the_given_time(store: JobStore) -> None:
    await add_one(store)
    claimed = await claim_one(store, "worker-1", T0)
    retry_at = T0 + seconds(60)

    applied = await store.finish(
        "worker-1",
        [
            outcome(
                claimed,
                JobState.SCHEDULED,
                next_try_at=retry_at,
                last_error="boom",
                done_handlers=("h.A",),
            )
        ],
    )

    assert applied == 1
    after = await stored(store, claimed.id)
    assert after.state.is_pending
    assert after.next_try_at == retry_at
    assert after.attempts == 1
    assert after.last_error == "boom"
    assert after.finished_at is None
    assert after.lease_owner is None
    assert after.lease_expires_at is None
    assert await store.claim("worker-1", 10, retry_at - seconds(1), LEASE) == []
    again = await claim_one(store, "worker-2", retry_at)
    assert again.attempts == 2
    assert again.done_handlers == ("h.A",)
    assert again.last_error == "boom"


async def test_finish_enqueued_hands_the_job_back_with_the_given_attempts(
    store: JobStore,
) -> None:
    await add_one(store)
    claimed = await claim_one(store, "worker-1", T0)

    # A stopping worker releases a job it never started: the attempt does not count.
    applied = await store.finish(
        "worker-1", [outcome(claimed, JobState.ENQUEUED, next_try_at=T0, attempts=0)]
    )

    assert applied == 1
    assert (await stored(store, claimed.id)).attempts == 0
    assert (await claim_one(store, "worker-2", T0)).attempts == 1


async def test_finish_by_a_worker_that_does_not_hold_the_job_applies_nothing(
    store: JobStore,
) -> None:
    await add_one(store)
    claimed = await claim_one(store, "worker-1", T0)

    applied = await store.finish(
        "worker-2", [outcome(claimed, JobState.SUCCEEDED, finished_at=T0 + seconds(1))]
    )

    assert applied == 0
    after = await stored(store, claimed.id)
    assert after.state is JobState.PROCESSING
    assert after.lease_owner == "worker-1"


async def test_finish_ignores_jobs_that_are_not_processing(store: JobStore) -> None:
    pending = await add_one(store)
    ghost = make_record()

    applied = await store.finish(
        "worker-1",
        [
            outcome(pending, JobState.SUCCEEDED, finished_at=T0),
            outcome(ghost, JobState.SUCCEEDED, finished_at=T0),
        ],
    )

    assert applied == 0
    assert (await stored(store, pending.id)).state.is_pending
    assert await store.get(ghost.id) is None


async def test_finish_counts_the_outcomes_applied_in_a_batch(store: JobStore) -> None:
    await store.add([make_record() for _ in range(4)])
    mine = await store.claim("worker-1", 3, T0, LEASE)
    theirs = await claim_one(store, "worker-2", T0)

    outcomes = [outcome(r, JobState.SUCCEEDED, finished_at=T0) for r in [*mine, theirs]]
    assert await store.finish("worker-1", outcomes) == 3

    assert (await stored(store, theirs.id)).state is JobState.PROCESSING
    for record in mine:
        assert (await stored(store, record.id)).state is JobState.SUCCEEDED


# -- transition ------------------------------------------------------------------------


async def test_transition_dead_to_enqueued(store: JobStore) -> None:
    job_id = await finished_job(store, JobState.DEAD, T0)
    now = T0 + seconds(3600)

    moved = await store.transition(job_id, [JobState.DEAD], JobState.ENQUEUED, now)

    assert moved is not None
    assert moved.id == job_id
    assert moved.state.is_pending
    assert moved.next_try_at == now
    assert moved.finished_at is None
    assert moved.lease_owner is None
    after = await stored(store, job_id)
    assert after.state.is_pending
    assert after.next_try_at == now
    assert after.finished_at is None
    assert ids(await store.claim("worker-1", 10, now, LEASE)) == [job_id]


async def test_transition_pending_to_cancelled(store: JobStore) -> None:
    record = await add_one(store, state=JobState.SCHEDULED, next_try_at=T0 + seconds(60))

    moved = await store.transition(record.id, PENDING, JobState.CANCELLED, T0)

    assert moved is not None
    assert moved.state is JobState.CANCELLED
    assert moved.finished_at == T0
    after = await stored(store, record.id)
    assert after.state is JobState.CANCELLED
    assert after.finished_at == T0
    assert await store.claim("worker-1", 10, T0 + seconds(3600), LEASE) == []


async def test_transition_from_an_unexpected_state_changes_nothing(store: JobStore) -> None:
    record = await add_one(store)
    claimed = await claim_one(store, "worker-1", T0)

    assert await store.transition(record.id, [JobState.DEAD], JobState.ENQUEUED, T0) is None
    assert await store.transition(record.id, PENDING, JobState.CANCELLED, T0) is None

    after = await stored(store, record.id)
    assert after.state is JobState.PROCESSING
    assert after.lease_owner == claimed.lease_owner


async def test_transition_of_an_unknown_job_is_none(store: JobStore) -> None:
    assert await store.transition(uuid4().hex, PENDING, JobState.CANCELLED, T0) is None


# -- delete and purge ----------------------------------------------------------------


async def test_delete(store: JobStore) -> None:
    record = await add_one(store)

    assert await store.delete(record.id) is True
    assert await store.get(record.id) is None
    assert await store.delete(record.id) is False
    assert await store.claim("worker-1", 10, T0, LEASE) == []


async def test_delete_of_a_held_job(store: JobStore) -> None:
    await add_one(store)
    claimed = await claim_one(store, "worker-1", T0)

    assert await store.delete(claimed.id) is True
    assert await store.claim("worker-2", 10, T0 + seconds(3600), LEASE) == []
    assert await store.finish("worker-1", [outcome(claimed, JobState.SUCCEEDED)]) == 0


async def test_purge_by_state_and_finish_time(store: JobStore) -> None:
    old_success = await finished_job(store, JobState.SUCCEEDED, T0 - seconds(7200))
    old_cancel = await finished_job(store, JobState.CANCELLED, T0 - seconds(7200))
    recent_dead = await finished_job(store, JobState.DEAD, T0 - seconds(60))
    old_dead = await finished_job(store, JobState.DEAD, T0 - seconds(7200))
    pending = await add_one(store, created_at=T0 - seconds(86400))

    purged = await store.purge(
        [JobState.SUCCEEDED, JobState.CANCELLED], finished_before=T0 - seconds(3600)
    )

    assert purged == 2
    assert await store.get(old_success) is None
    assert await store.get(old_cancel) is None
    assert await store.get(old_dead) is not None
    assert await store.get(recent_dead) is not None
    assert await store.get(pending.id) is not None

    assert await store.purge([JobState.DEAD], finished_before=T0 - seconds(3600)) == 1
    assert await store.get(old_dead) is None
    assert await store.get(recent_dead) is not None
    assert await store.purge(FINISHED, finished_before=T0) == 1
    assert await store.get(recent_dead) is None


async def test_purge_never_removes_pending_or_held_jobs(store: JobStore) -> None:
    pending = await add_one(store, created_at=T0 - seconds(86400))
    held = await add_one(store, created_at=T0 - seconds(86400))
    await store.claim("worker-1", 1, T0 - seconds(3600), LEASE)

    purged = await store.purge(list(JobState), finished_before=T0 + seconds(86400))

    assert purged == 0
    assert await store.get(pending.id) is not None
    assert await store.get(held.id) is not None


# -- count and list ----------------------------------------------------------------


async def test_count_by_state_splits_pending_jobs_by_now(store: JobStore) -> None:
    await add_one(store, created_at=T0 - seconds(600))
    await claim_one(store, "worker-1", T0)
    await finished_job(store, JobState.SUCCEEDED, T0 - seconds(30))
    await finished_job(store, JobState.DEAD, T0 - seconds(30))
    await finished_job(store, JobState.CANCELLED, T0 - seconds(30))
    await add_one(store, next_try_at=T0 - seconds(1))
    await add_one(store, state=JobState.SCHEDULED, next_try_at=T0 + seconds(3600))

    counts = await store.count_by_state(T0)

    assert counts == {
        JobState.SCHEDULED: 1,
        JobState.ENQUEUED: 1,
        JobState.PROCESSING: 1,
        JobState.SUCCEEDED: 1,
        JobState.DEAD: 1,
        JobState.CANCELLED: 1,
    }
    later = await store.count_by_state(T0 + seconds(7200))
    assert later[JobState.SCHEDULED] == 0
    assert later[JobState.ENQUEUED] == 2


async def test_count_by_state_of_an_empty_store_is_all_zero(store: JobStore) -> None:
    assert await store.count_by_state(T0) == dict.fromkeys(JobState, 0)


async def test_list_is_newest_first_with_limit_and_offset(store: JobStore) -> None:
    records = [make_record(created_at=T0 + seconds(i)) for i in range(10)]
    await store.add(records[::2])
    await store.add(records[1::2])
    newest_first = ids(reversed(records))

    assert ids(await store.list()) == newest_first
    assert ids(await store.list(limit=3)) == newest_first[:3]
    assert ids(await store.list(limit=3, offset=2)) == newest_first[2:5]
    assert ids(await store.list(limit=5, offset=8)) == newest_first[8:]
    assert await store.list(offset=10) == []


async def test_list_filters_by_stored_state(store: JobStore) -> None:
    dead = await finished_job(store, JobState.DEAD, T0 - seconds(100))
    succeeded = await finished_job(store, JobState.SUCCEEDED, T0 - seconds(50))
    waiting = await add_one(
        store, state=JobState.SCHEDULED, created_at=T0 - seconds(10), next_try_at=T0 + seconds(60)
    )
    due = await add_one(store, created_at=T0 - seconds(5))

    assert ids(await store.list([JobState.DEAD])) == [dead]
    assert ids(await store.list([JobState.DEAD, JobState.SUCCEEDED])) == [succeeded, dead]
    assert ids(await store.list(PENDING)) == [due.id, waiting.id]
    assert await store.list([JobState.PROCESSING]) == []
    assert len(await store.list(None)) == 4


# -- wait_for_work -----------------------------------------------------------------


async def test_wait_for_work_returns_at_once_when_a_job_is_due(store: JobStore) -> None:
    await add_one(store, created_at=utcnow() - seconds(1))

    with anyio.fail_after(1):
        await store.wait_for_work(30)


async def test_wait_for_work_returns_when_a_job_is_added(store: JobStore) -> None:
    woken = anyio.Event()

    async def waiter() -> None:
        await store.wait_for_work(30)
        woken.set()

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert not woken.is_set()
            await add_one(store, created_at=utcnow())
            with anyio.fail_after(2):
                await woken.wait()


async def test_wait_for_work_returns_when_a_scheduled_job_falls_due(store: JobStore) -> None:
    start = anyio.current_time()
    await add_one(
        store, state=JobState.SCHEDULED, created_at=utcnow(), next_try_at=utcnow() + seconds(0.2)
    )

    with anyio.fail_after(3):
        await store.wait_for_work(30)

    assert anyio.current_time() - start >= 0.1


async def test_wait_for_work_returns_after_its_timeout(store: JobStore) -> None:
    await add_one(
        store, state=JobState.SCHEDULED, created_at=utcnow(), next_try_at=utcnow() + seconds(3600)
    )
    start = anyio.current_time()

    with anyio.fail_after(3):
        await store.wait_for_work(0.1)

    assert anyio.current_time() - start >= 0.05


# -- worker heartbeats -------------------------------------------------------------


def worker_info(worker_id: str, last_seen_at: datetime, running_jobs: int = 0) -> WorkerInfo:
    return WorkerInfo(
        id=worker_id,
        host="host-ä.example",
        pid=4242,
        started_at=T0 - seconds(3600),
        last_seen_at=last_seen_at,
        running_jobs=running_jobs,
    )


async def test_heartbeat_registers_a_worker(store: JobStore) -> None:
    info = worker_info("worker-1", T0, running_jobs=3)

    await store.heartbeat(info)

    [seen] = await store.list_workers(T0 - seconds(60))
    assert seen == info
    assert_utc(seen.started_at, seen.last_seen_at)


async def test_heartbeat_refreshes_the_same_worker(store: JobStore) -> None:
    await store.heartbeat(worker_info("worker-1", T0 - seconds(10), running_jobs=1))
    latest = worker_info("worker-1", T0, running_jobs=0)

    await store.heartbeat(latest)

    assert await store.list_workers(T0 - seconds(60)) == [latest]


async def test_list_workers_by_last_heartbeat_and_id(store: JobStore) -> None:
    await store.heartbeat(worker_info("worker-c", T0))
    await store.heartbeat(worker_info("worker-a", T0 - seconds(30)))
    await store.heartbeat(worker_info("worker-b", T0 - seconds(31)))

    seen = await store.list_workers(T0 - seconds(30))

    assert [info.id for info in seen] == ["worker-a", "worker-c"]
    assert await store.list_workers(T0 + seconds(1)) == []
    assert [i.id for i in await store.list_workers(T0 - seconds(60))] == [
        "worker-a",
        "worker-b",
        "worker-c",
    ]


async def test_a_heartbeat_forgets_workers_silent_for_a_day(store: JobStore) -> None:
    crashed = worker_info("crashed", T0 - seconds(STALE_WORKER_SECONDS + 60))
    quiet = worker_info("quiet", T0 - seconds(STALE_WORKER_SECONDS - 60))
    await store.heartbeat(crashed)
    await store.heartbeat(quiet)

    await store.heartbeat(worker_info("alive", T0))

    ever = T0 - seconds(2 * STALE_WORKER_SECONDS)
    assert [info.id for info in await store.list_workers(ever)] == ["alive", "quiet"]


async def test_remove_worker(store: JobStore) -> None:
    await store.heartbeat(worker_info("worker-1", T0))
    await store.heartbeat(worker_info("worker-2", T0))

    await store.remove_worker("worker-1")
    await store.remove_worker("never-seen")

    assert [info.id for info in await store.list_workers(T0 - seconds(60))] == ["worker-2"]
