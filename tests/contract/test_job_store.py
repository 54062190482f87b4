"""The ``JobStore`` contract: every store passes this suite unchanged.

The tests speak only the protocol (``JobRecord`` in, ``JobRecord`` out,
``JobOutcome`` to finish). Due times and leases run on the store's clock, so
records are made relative to the current time: a record's delay
(``next_try_at - created_at``) is what every store keeps, since a network
store rebases ``created_at`` on its own clock. Lease expiry is waited for on
the store's clock with short leases, never guessed with sleeps. Explicit
timestamps use whole milliseconds: a store must keep at least that precision.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import anyio
import pytest

from masa_jobs import (
    DuplicateJobError,
    JobOutcome,
    JobRecord,
    JobState,
    JobStore,
    StoreRejectedError,
)
from masa_jobs.records import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    UniqueScope,
    WorkerInfo,
    utcnow,
)
from masa_jobs.stores.base import STALE_WORKER_SECONDS

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
LEASE = timedelta(seconds=30)
# A lease that runs out while a test waits for it.
SHORT_LEASE = timedelta(seconds=0.2)
PENDING = (JobState.SCHEDULED, JobState.ENQUEUED)
FINISHED = (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED)
# How far the clock of a service on this machine may be from the tests' clock.
CLOCK_SLACK = timedelta(seconds=5)
# Guards every wait for a condition: far above what it should take.
WAIT_LIMIT_SECONDS = 5.0
POLL_SECONDS = 0.01
MS = timedelta(milliseconds=1)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def whole_ms(stamp: datetime) -> datetime:
    return stamp.replace(microsecond=stamp.microsecond // 1000 * 1000)


def make_record(
    job_id: str | None = None,
    *,
    name: str = "contract.job",
    payload: str = '{"n": 1}',
    state: JobState | None = None,
    created_at: datetime | None = None,
    delay: float = 0.0,
    attempts: int = 0,
    queue: str = DEFAULT_QUEUE,
    priority: int = DEFAULT_PRIORITY,
    unique_key: str | None = None,
    unique_scope: UniqueScope | None = None,
    unique_until: datetime | None = None,
) -> JobRecord:
    """A new job created now (or at ``created_at``), due ``delay`` seconds after;
    stored ``scheduled`` when it is due later, as the manager stores it."""
    created = whole_ms(utcnow()) if created_at is None else created_at
    if state is None:
        state = JobState.SCHEDULED if delay > 0 else JobState.ENQUEUED
    return JobRecord(
        id=job_id or uuid4().hex,
        name=name,
        payload=payload,
        state=state,
        created_at=created,
        next_try_at=created + seconds(delay),
        attempts=attempts,
        queue=queue,
        priority=priority,
        unique_key=unique_key,
        unique_scope=unique_scope,
        unique_until=unique_until,
    )


async def add_one(store: JobStore, **fields: object) -> JobRecord:
    record = make_record(**fields)  # type: ignore[arg-type]
    await store.add([record])
    return record


async def claim_one(store: JobStore, worker_id: str, lease: timedelta = LEASE) -> JobRecord:
    claimed = await store.claim(worker_id, 1, lease)
    assert len(claimed) == 1
    return claimed[0]


async def claim_when_due(
    store: JobStore, worker_id: str, lease: timedelta = LEASE
) -> list[JobRecord]:
    """The first non-empty claim, once something falls due on the store's clock."""
    # Time passing on the store's clock sets no event to wait on: poll, with a deadline.
    with anyio.fail_after(WAIT_LIMIT_SECONDS):
        while not (claimed := await store.claim(worker_id, 10, lease)):  # noqa: ASYNC110
            await anyio.sleep(POLL_SECONDS)
    return claimed


async def store_time_after(store: JobStore, moment: datetime) -> datetime:
    """The store's time, once it is past ``moment``."""
    with anyio.fail_after(WAIT_LIMIT_SECONDS):
        while (now := await store.now()) <= moment:  # noqa: ASYNC110
            await anyio.sleep(POLL_SECONDS)
    return now


async def lease_expired(store: JobStore, held: JobRecord) -> None:
    """Return once the lease ``held`` was claimed under ran out on the store's clock."""
    assert held.lease_expires_at is not None
    await store_time_after(store, held.lease_expires_at)


async def stored(store: JobStore, job_id: str) -> JobRecord:
    record = await store.get(job_id)
    assert record is not None
    return record


async def claim_order(store: JobStore) -> list[str]:
    """The order in which due jobs are handed out, one claim at a time."""
    order: list[str] = []
    while claimed := await store.claim("worker-1", 1, LEASE):
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
    lease_token: str | None = None,
) -> JobOutcome:
    """An outcome for ``record`` under the token it was claimed with, unless told."""
    return JobOutcome(
        job_id=record.id,
        state=state,
        attempts=record.attempts if attempts is None else attempts,
        next_try_at=record.next_try_at if next_try_at is None else next_try_at,
        last_error=last_error,
        done_handlers=done_handlers,
        finished_at=finished_at,
        lease_token=record.lease_token if lease_token is None else lease_token,
    )


async def finished_job(store: JobStore, state: JobState) -> JobRecord:
    """A job that reached ``state`` (succeeded, dead or cancelled) just now, as stored."""
    # Overdue by a day: it comes first in claim order.
    record = await add_one(store, delay=-86400)
    now = await store.now()
    if state is JobState.CANCELLED:
        assert await store.transition(record.id, PENDING, state, now) is not None
        return await stored(store, record.id)
    claimed = await store.claim("finisher", 1, LEASE)
    assert ids(claimed) == [record.id]
    applied = await store.finish(
        "finisher", [outcome(claimed[0], state, finished_at=now, last_error="x")]
    )
    assert applied == {record.id}
    return await stored(store, record.id)


def latest_finish(records: Iterable[JobRecord]) -> datetime:
    stamps = [record.finished_at for record in records]
    assert None not in stamps
    return max(stamp for stamp in stamps if stamp is not None)


def assert_utc(*stamps: datetime | None) -> None:
    for stamp in stamps:
        if stamp is not None:
            assert stamp.tzinfo is not None
            assert stamp.utcoffset() == timedelta(0)


def assert_close(stamp: datetime | None, expected: datetime) -> None:
    assert stamp is not None
    assert abs(stamp - expected) <= CLOCK_SLACK, (stamp, expected)


def ids(records: Iterable[JobRecord]) -> list[str]:
    return [record.id for record in records]


# -- add and get ---------------------------------------------------------------


async def test_add_then_get_round_trips_every_field(store: JobStore) -> None:
    payload = json.dumps({"name": "Łódź 東京 🚀", "quote": 'say "hi"\n', "n": [1, 2.5, None]})
    created_at = whole_ms(utcnow())
    record = JobRecord(
        id=uuid4().hex,
        name="mail.send-welcome:v2",
        payload=payload,
        state=JobState.SCHEDULED,
        created_at=created_at,
        next_try_at=created_at + timedelta(hours=1, milliseconds=456),
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
    # A network store rebases the record on its clock; the delay is kept exactly.
    assert_close(got.created_at, record.created_at)
    assert got.next_try_at - got.created_at == record.next_try_at - record.created_at
    assert got.attempts == 2
    assert got.last_try_at == record.last_try_at
    assert got.last_error == record.last_error
    assert got.done_handlers == record.done_handlers
    assert got.lease_owner is None
    assert got.lease_expires_at is None
    assert got.lease_token is None
    assert got.finished_at is None
    assert_utc(got.created_at, got.next_try_at, got.last_try_at)


@pytest.mark.local_store_only  # a network store rebases records on its own clock
async def test_a_local_store_keeps_the_times_it_is_given(store: JobStore) -> None:
    record = make_record(
        created_at=datetime(2024, 5, 1, 11, 59, 58, 123000, tzinfo=UTC), delay=3600.456
    )
    await store.add([record])

    got = await stored(store, record.id)

    assert (got.created_at, got.next_try_at) == (record.created_at, record.next_try_at)


async def test_get_of_an_unknown_id_is_none(store: JobStore) -> None:
    assert await store.get(uuid4().hex) is None


async def test_add_stores_a_whole_batch(store: JobStore) -> None:
    records = [make_record(payload=json.dumps({"i": i})) for i in range(50)]
    await store.add(records)

    for record in records:
        assert (await stored(store, record.id)).payload == record.payload
    counts = await store.count_by_state(utcnow() + seconds(86400))
    assert counts[JobState.ENQUEUED] == 50


async def test_add_of_an_empty_batch_stores_nothing(store: JobStore) -> None:
    await store.add([])
    assert sum((await store.count_by_state(utcnow())).values()) == 0


async def test_add_of_a_duplicate_id_is_all_or_none(store: JobStore) -> None:
    existing = await add_one(store)
    fresh = make_record()
    clash = make_record(existing.id)

    # Every store reports the clash with the same type (a duplicate id).
    with pytest.raises(DuplicateJobError):
        await store.add([fresh, clash])

    assert await store.get(fresh.id) is None
    assert (await stored(store, existing.id)).payload == existing.payload


# -- the store's clock ---------------------------------------------------------------


async def test_now_is_the_current_time_in_utc(store: JobStore) -> None:
    now = await store.now()

    assert_utc(now)
    assert_close(now, utcnow())


@pytest.mark.network_store_only  # a local store uses this machine's clock by design
async def test_add_on_a_network_store_rebases_a_record_from_a_clock_ahead(
    store: JobStore,
) -> None:
    # A client whose clock is 2 h ahead enqueues a job "in half a second".
    skewed = make_record(
        state=JobState.SCHEDULED, created_at=whole_ms(utcnow()) + seconds(7200), delay=0.5
    )
    await store.add([skewed])

    got = await stored(store, skewed.id)
    assert_close(got.created_at, await store.now())
    assert got.next_try_at - got.created_at == seconds(0.5)
    # Due after its delay on the store's clock, not in 2 h.
    assert ids(await claim_when_due(store, "worker-1")) == [skewed.id]


@pytest.mark.network_store_only  # a local store uses this machine's clock by design
async def test_add_on_a_network_store_keeps_the_delay_of_a_record_from_a_clock_behind(
    store: JobStore,
) -> None:
    # A client whose clock is 2 h behind enqueues a job "in an hour".
    skewed = make_record(
        state=JobState.SCHEDULED, created_at=whole_ms(utcnow()) - seconds(7200), delay=3600
    )
    await store.add([skewed])

    assert await store.claim("worker-1", 10, LEASE) == []
    got = await stored(store, skewed.id)
    assert_close(got.next_try_at, await store.now() + seconds(3600))


# -- claim -----------------------------------------------------------------------


async def test_claim_takes_due_jobs_only(store: JobStore) -> None:
    overdue = await add_one(store, delay=-1)
    due_now = await add_one(store)
    later = await add_one(store, state=JobState.SCHEDULED, delay=3600)

    claimed = await store.claim("worker-1", 10, LEASE)

    assert sorted(ids(claimed)) == sorted([overdue.id, due_now.id])
    assert (await stored(store, later.id)).state.is_pending
    assert await store.claim("worker-1", 10, LEASE) == []


async def test_a_scheduled_job_is_claimed_once_its_delay_passed(store: JobStore) -> None:
    soon = await add_one(store, state=JobState.SCHEDULED, delay=0.2)
    due_at = (await stored(store, soon.id)).next_try_at

    [claimed] = await claim_when_due(store, "worker-1")

    assert claimed.id == soon.id
    assert claimed.last_try_at is not None
    assert claimed.last_try_at >= due_at


async def test_claim_moves_the_job_to_processing_under_a_lease(store: JobStore) -> None:
    record = await add_one(store, payload='{"who": "Zoë"}')
    before = await store.now()

    claimed = await claim_one(store, "worker-1")

    after = await store.now()
    assert claimed.id == record.id
    assert claimed.state is JobState.PROCESSING
    assert claimed.attempts == 1
    assert claimed.last_try_at is not None
    # On the store's clock, at the claim.
    assert before - MS <= claimed.last_try_at <= after + MS
    assert claimed.lease_owner == "worker-1"
    assert claimed.lease_expires_at == claimed.last_try_at + LEASE
    assert isinstance(claimed.lease_token, str)
    assert claimed.lease_token
    assert claimed.payload == record.payload
    assert claimed.name == record.name
    assert_utc(claimed.last_try_at, claimed.lease_expires_at)
    again = await stored(store, record.id)
    assert again.state is JobState.PROCESSING
    assert again.attempts == 1
    assert again.last_try_at == claimed.last_try_at
    assert again.lease_owner == "worker-1"
    assert again.lease_expires_at == claimed.lease_expires_at
    assert again.lease_token == claimed.lease_token


async def test_every_claim_hands_out_a_token_of_its_own(store: JobStore) -> None:
    await store.add([make_record(delay=-n) for n in range(3)])

    first = await store.claim("worker-1", 2, LEASE)
    second = await store.claim("worker-2", 2, LEASE)

    assert len(first) == 2
    assert len(second) == 1
    assert all(isinstance(job.lease_token, str) and job.lease_token for job in first + second)
    assert {job.lease_token for job in first}.isdisjoint({job.lease_token for job in second})


async def test_claim_respects_its_limit(store: JobStore) -> None:
    await store.add([make_record() for _ in range(10)])

    assert len(await store.claim("worker-1", 3, LEASE)) == 3
    assert len(await store.claim("worker-1", 100, LEASE)) == 7
    assert await store.claim("worker-1", 100, LEASE) == []


async def test_claim_on_an_empty_store_is_empty(store: JobStore) -> None:
    assert await store.claim("worker-1", 10, LEASE) == []


async def test_a_held_job_is_not_claimed_again_while_its_lease_holds(store: JobStore) -> None:
    await add_one(store)
    await claim_one(store, "worker-1")

    assert await store.claim("worker-2", 10, LEASE) == []


async def test_claim_order_is_due_time_first(store: JobStore) -> None:
    created = whole_ms(utcnow())
    third = make_record(created_at=created, delay=-1)
    first = make_record(created_at=created, delay=-3)
    second = make_record(created_at=created, delay=-2)
    await store.add([third, first, second])

    assert await claim_order(store) == [first.id, second.id, third.id]


async def test_claim_order_is_fewer_attempts_first_at_equal_due_time(store: JobStore) -> None:
    created = whole_ms(utcnow())
    tried_thrice = make_record(attempts=3, created_at=created, delay=-5)
    tried_once = make_record(attempts=1, created_at=created, delay=-5)
    tried_twice = make_record(attempts=2, created_at=created, delay=-5)
    await store.add([tried_thrice, tried_once, tried_twice])

    assert await claim_order(store) == [tried_once.id, tried_twice.id, tried_thrice.id]


async def test_claim_order_is_batch_order_when_due_time_and_attempts_tie(
    store: JobStore,
) -> None:
    # One batch shares one creation time (enqueue_many): the order of the batch counts.
    created = whole_ms(utcnow())
    batch = [make_record(created_at=created) for _ in range(10)]
    await store.add(batch)

    assert await claim_order(store) == ids(batch)


# A network store rebases each add on its clock: separate adds cannot share a due time.
@pytest.mark.local_store_only
async def test_claim_order_is_creation_order_when_due_time_and_attempts_tie(
    store: JobStore,
) -> None:
    due = whole_ms(utcnow()) - seconds(60)
    # Separate adds at later creation times, with the same due time...
    later = []
    for i in range(5):
        record = replace(make_record(created_at=due + seconds(i)), next_try_at=due)
        await store.add([record])
        later.append(record)
    # ... and one created before them all, added last: creation decides, not insertion.
    earliest = replace(make_record(created_at=due - seconds(1)), next_try_at=due)
    await store.add([earliest])

    assert await claim_order(store) == [earliest.id, *ids(later)]


async def test_claim_under_a_limit_picks_the_earliest_due_jobs(store: JobStore) -> None:
    created = whole_ms(utcnow())
    records = [make_record(created_at=created, delay=-n) for n in (1, 5, 3, 4, 2)]
    await store.add(records)

    claimed = await store.claim("worker-1", 2, LEASE)

    by_due = sorted(records, key=lambda r: r.next_try_at)
    assert sorted(ids(claimed)) == sorted(ids(by_due[:2]))


async def test_concurrent_claimers_never_share_a_job_and_take_them_all(
    store: JobStore,
) -> None:
    records = [make_record(payload=json.dumps({"i": i})) for i in range(200)]
    await store.add(records)
    taken: dict[str, list[str]] = {}

    async def claimer(worker_id: str) -> None:
        mine = taken.setdefault(worker_id, [])
        while batch := await store.claim(worker_id, 7, LEASE):
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
    assert (await store.count_by_state(utcnow()))[JobState.PROCESSING] == 200


async def test_an_expired_lease_makes_the_job_due_again(store: JobStore) -> None:
    record = await add_one(store)
    first = await claim_one(store, "worker-1", SHORT_LEASE)

    [reclaimed] = await claim_when_due(store, "worker-2")

    assert reclaimed.id == record.id
    assert reclaimed.state is JobState.PROCESSING
    assert reclaimed.attempts == 2
    assert first.lease_expires_at is not None
    assert reclaimed.last_try_at is not None
    assert reclaimed.last_try_at >= first.lease_expires_at - MS
    assert reclaimed.lease_owner == "worker-2"
    assert reclaimed.lease_expires_at == reclaimed.last_try_at + LEASE
    assert reclaimed.lease_token
    assert reclaimed.lease_token != first.lease_token
    after = await stored(store, record.id)
    assert (after.lease_owner, after.lease_token) == ("worker-2", reclaimed.lease_token)


# -- exclude -----------------------------------------------------------------------


async def test_claim_never_takes_an_excluded_job(store: JobStore) -> None:
    created = whole_ms(utcnow())
    skipped = make_record(created_at=created, delay=-2)
    other = make_record(created_at=created, delay=-1)
    await store.add([skipped, other])

    assert ids(await store.claim("worker-1", 10, LEASE, exclude=[skipped.id])) == [other.id]

    assert (await stored(store, skipped.id)).state.is_pending
    assert ids(await store.claim("worker-2", 10, LEASE)) == [skipped.id]


async def test_an_excluded_expired_job_goes_to_other_claimers_only(store: JobStore) -> None:
    await add_one(store)
    held = await claim_one(store, "worker-1", SHORT_LEASE)
    await lease_expired(store, held)

    # The worker still runs it: it must not take its own job back.
    assert await store.claim("worker-1", 10, LEASE, exclude={held.id}) == []
    assert (await stored(store, held.id)).lease_token == held.lease_token

    reclaimed = await claim_one(store, "worker-2")
    assert reclaimed.id == held.id
    assert reclaimed.lease_token != held.lease_token


# -- leases ------------------------------------------------------------------------


async def test_extend_leases_renews_under_the_lease_token_only(store: JobStore) -> None:
    record = await add_one(store)
    held = await claim_one(store, "worker-1")

    renewed = await store.extend_leases("worker-2", {record.id: "not-the-token"}, seconds(3600))

    assert renewed == set()
    assert (await stored(store, record.id)).lease_expires_at == held.lease_expires_at

    assert held.lease_token is not None
    before = await store.now()
    renewed = await store.extend_leases(
        "worker-1", {record.id: held.lease_token, uuid4().hex: "x"}, seconds(120)
    )
    after = await store.now()

    assert renewed == {record.id}
    extended = await stored(store, record.id)
    assert extended.lease_expires_at is not None
    # Store time of the renewal + the lease.
    assert before + seconds(120) - MS <= extended.lease_expires_at <= after + seconds(120) + MS
    assert extended.lease_owner == "worker-1"
    assert extended.lease_token == held.lease_token
    assert extended.state is JobState.PROCESSING
    assert extended.attempts == 1


async def test_a_renewed_lease_outlives_the_first_one(store: JobStore) -> None:
    record = await add_one(store)
    held = await claim_one(store, "worker-1", SHORT_LEASE)
    assert held.lease_token is not None

    assert await store.extend_leases("worker-1", {record.id: held.lease_token}, LEASE) == {
        record.id
    }
    await lease_expired(store, held)

    assert await store.claim("worker-2", 10, LEASE) == []


async def test_extend_leases_ignores_jobs_that_are_not_held(store: JobStore) -> None:
    pending = await add_one(store, state=JobState.SCHEDULED, delay=60)

    renewed = await store.extend_leases(
        "worker-1", {pending.id: "some-token", uuid4().hex: "x"}, seconds(120)
    )

    assert renewed == set()
    after = await stored(store, pending.id)
    assert after.state.is_pending
    assert after.lease_owner is None
    assert after.lease_expires_at is None
    assert after.lease_token is None


async def test_extend_leases_of_nothing_renews_nothing(store: JobStore) -> None:
    assert await store.extend_leases("worker-1", {}, LEASE) == set()


async def test_an_expired_lease_nobody_claimed_again_is_still_its_holders(
    store: JobStore,
) -> None:
    created = whole_ms(utcnow())
    await store.add([make_record(created_at=created, delay=-2), make_record(created_at=created)])
    renewed_job, finishing = await store.claim("worker-1", 2, SHORT_LEASE)
    await lease_expired(store, renewed_job)
    await lease_expired(store, finishing)
    assert renewed_job.lease_token is not None

    # The token alone decides, not the deadline.
    renewed = await store.extend_leases(
        "worker-1", {renewed_job.id: renewed_job.lease_token}, LEASE
    )
    applied = await store.finish(
        "worker-1", [outcome(finishing, JobState.SUCCEEDED, finished_at=await store.now())]
    )

    assert renewed == {renewed_job.id}
    assert applied == {finishing.id}
    extended = await stored(store, renewed_job.id)
    assert extended.lease_expires_at is not None
    assert extended.lease_expires_at > await store.now()
    assert await store.claim("worker-2", 10, LEASE) == []
    assert await store.finish(
        "worker-1", [outcome(renewed_job, JobState.SUCCEEDED, finished_at=await store.now())]
    ) == {renewed_job.id}
    assert (await stored(store, renewed_job.id)).state is JobState.SUCCEEDED


async def test_a_job_claimed_again_fences_out_the_earlier_token(store: JobStore) -> None:
    record = await add_one(store)
    first = await claim_one(store, "worker-1", SHORT_LEASE)
    [second] = await claim_when_due(store, "worker-2")
    assert first.lease_token is not None
    assert second.lease_token is not None
    assert second.lease_token != first.lease_token

    # The first holder froze past its lease; its renewal and outcome are refused.
    renewed = await store.extend_leases("worker-1", {record.id: first.lease_token}, seconds(3600))
    late = outcome(first, JobState.SUCCEEDED, finished_at=await store.now(), last_error="late")
    applied = await store.finish("worker-1", [late])

    assert renewed == set()
    assert applied == set()
    untouched = await stored(store, record.id)
    assert untouched.state is JobState.PROCESSING
    assert untouched.attempts == 2
    assert untouched.lease_owner == "worker-2"
    assert untouched.lease_token == second.lease_token
    assert untouched.lease_expires_at == second.lease_expires_at
    assert untouched.last_error is None
    assert untouched.finished_at is None

    # The new holder's token works.
    assert await store.extend_leases("worker-2", {record.id: second.lease_token}, LEASE) == {
        record.id
    }
    done = outcome(second, JobState.SUCCEEDED, finished_at=await store.now())
    assert await store.finish("worker-2", [done]) == {record.id}
    assert (await stored(store, record.id)).state is JobState.SUCCEEDED


# -- finish ------------------------------------------------------------------------


async def test_finish_succeeded(store: JobStore) -> None:
    await add_one(store)
    claimed = await claim_one(store, "worker-1")
    done_at = await store.now()

    applied = await store.finish(
        "worker-1",
        [outcome(claimed, JobState.SUCCEEDED, done_handlers=("h.A", "h.B"), finished_at=done_at)],
    )

    assert applied == {claimed.id}
    after = await stored(store, claimed.id)
    assert after.state is JobState.SUCCEEDED
    # Network stores stamp the finish on their own clock.
    assert_close(after.finished_at, done_at)
    assert after.attempts == 1
    assert after.done_handlers == ("h.A", "h.B")
    assert after.lease_owner is None
    assert after.lease_expires_at is None
    assert after.lease_token is None
    assert_utc(after.finished_at)
    assert await store.claim("worker-1", 10, LEASE) == []


async def test_finish_dead_keeps_the_reason(store: JobStore) -> None:
    await add_one(store)
    claimed = await claim_one(store, "worker-1")
    error = "Traceback (most recent call last):\nRuntimeError: the mail server said nö"
    done_at = await store.now()

    applied = await store.finish(
        "worker-1",
        [
            outcome(
                claimed,
                JobState.DEAD,
                last_error=error,
                done_handlers=("h.A",),
                finished_at=done_at,
            )
        ],
    )

    assert applied == {claimed.id}
    after = await stored(store, claimed.id)
    assert after.state is JobState.DEAD
    assert after.last_error == error
    assert_close(after.finished_at, done_at)
    assert after.done_handlers == ("h.A",)
    assert after.lease_owner is None
    assert after.lease_token is None
    assert await store.claim("worker-1", 10, LEASE) == []


async def test_finish_scheduled_retries_at_the_given_time(store: JobStore) -> None:
    await add_one(store)
    claimed = await claim_one(store, "worker-1")
    retry_at = whole_ms(await store.now()) + seconds(3600)

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

    assert applied == {claimed.id}
    after = await stored(store, claimed.id)
    assert after.state.is_pending
    assert after.next_try_at == retry_at
    assert after.attempts == 1
    assert after.last_error == "boom"
    assert after.finished_at is None
    assert after.lease_owner is None
    assert after.lease_expires_at is None
    assert after.lease_token is None
    assert await store.claim("worker-1", 10, LEASE) == []


async def test_a_retry_that_fell_due_is_claimed_again_with_what_it_kept(
    store: JobStore,
) -> None:
    await add_one(store)
    claimed = await claim_one(store, "worker-1")
    retry_at = whole_ms(await store.now()) - seconds(1)

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

    assert applied == {claimed.id}
    again = await claim_one(store, "worker-2")
    assert again.id == claimed.id
    assert again.attempts == 2
    assert again.done_handlers == ("h.A",)
    assert again.last_error == "boom"
    assert again.lease_token != claimed.lease_token


async def test_finish_enqueued_hands_the_job_back_with_the_given_attempts(
    store: JobStore,
) -> None:
    await add_one(store)
    claimed = await claim_one(store, "worker-1")

    # A stopping worker releases a job it never started: the attempt does not count.
    applied = await store.finish(
        "worker-1",
        [outcome(claimed, JobState.ENQUEUED, next_try_at=await store.now(), attempts=0)],
    )

    assert applied == {claimed.id}
    assert (await stored(store, claimed.id)).attempts == 0
    assert (await claim_one(store, "worker-2")).attempts == 1


async def test_finish_under_a_token_that_does_not_hold_the_job_applies_nothing(
    store: JobStore,
) -> None:
    await add_one(store)
    claimed = await claim_one(store, "worker-1")
    done_at = await store.now()

    wrong = outcome(claimed, JobState.SUCCEEDED, finished_at=done_at, lease_token="forged")
    tokenless = JobOutcome(
        job_id=claimed.id,
        state=JobState.SUCCEEDED,
        attempts=1,
        next_try_at=claimed.next_try_at,
        finished_at=done_at,
    )

    assert await store.finish("worker-2", [wrong]) == set()
    assert await store.finish("worker-1", [tokenless]) == set()
    after = await stored(store, claimed.id)
    assert after.state is JobState.PROCESSING
    assert after.lease_owner == "worker-1"
    assert after.lease_token == claimed.lease_token


async def test_finish_ignores_jobs_that_are_not_processing(store: JobStore) -> None:
    pending = await add_one(store)
    ghost = make_record()
    done_at = await store.now()

    applied = await store.finish(
        "worker-1",
        [
            outcome(pending, JobState.SUCCEEDED, finished_at=done_at, lease_token="t"),
            outcome(ghost, JobState.SUCCEEDED, finished_at=done_at, lease_token="t"),
        ],
    )

    assert applied == set()
    assert (await stored(store, pending.id)).state.is_pending
    assert await store.get(ghost.id) is None


async def test_finish_returns_exactly_the_ids_it_applied(store: JobStore) -> None:
    await store.add([make_record() for _ in range(4)])
    mine = await store.claim("worker-1", 3, LEASE)
    theirs = await claim_one(store, "worker-2")
    pending = await add_one(store, state=JobState.SCHEDULED, delay=3600)
    ghost = make_record()
    token = mine[0].lease_token
    assert token is not None
    done_at = await store.now()

    outcomes = [
        *(outcome(r, JobState.SUCCEEDED, finished_at=done_at) for r in mine),
        outcome(theirs, JobState.SUCCEEDED, finished_at=done_at, lease_token=token),
        outcome(pending, JobState.SUCCEEDED, finished_at=done_at, lease_token=token),
        outcome(ghost, JobState.SUCCEEDED, finished_at=done_at, lease_token=token),
    ]
    assert await store.finish("worker-1", outcomes) == set(ids(mine))

    assert (await stored(store, theirs.id)).state is JobState.PROCESSING
    assert (await stored(store, pending.id)).state.is_pending
    assert await store.get(ghost.id) is None
    for record in mine:
        assert (await stored(store, record.id)).state is JobState.SUCCEEDED


async def test_finish_of_nothing_applies_nothing(store: JobStore) -> None:
    assert await store.finish("worker-1", []) == set()


async def test_a_nul_in_an_error_is_kept_or_the_whole_batch_refused(store: JobStore) -> None:
    created = whole_ms(utcnow())
    await store.add([make_record(created_at=created, delay=-2), make_record(created_at=created)])
    plain, odd = await store.claim("worker-1", 2, LEASE)
    done_at = await store.now()
    errors = {plain.id: "plain error", odd.id: "before\x00after"}
    outcomes = [
        outcome(job, JobState.DEAD, last_error=errors[job.id], finished_at=done_at)
        for job in (plain, odd)
    ]

    try:
        applied = await store.finish("worker-1", outcomes)
    except StoreRejectedError:
        # Refused: nothing of the batch was written, and the leases still hold.
        for job in (plain, odd):
            after = await stored(store, job.id)
            assert after.state is JobState.PROCESSING
            assert after.lease_token == job.lease_token
            assert after.last_error is None
        assert await store.finish("worker-1", outcomes[:1]) == {plain.id}
    else:
        # Kept: stored faithfully.
        assert applied == {plain.id, odd.id}
        for job in (plain, odd):
            after = await stored(store, job.id)
            assert after.state is JobState.DEAD
            assert after.last_error == errors[job.id]


# -- transition ------------------------------------------------------------------------


async def test_transition_dead_to_enqueued(store: JobStore) -> None:
    job_id = (await finished_job(store, JobState.DEAD)).id
    now = whole_ms(await store.now())

    moved = await store.transition(job_id, [JobState.DEAD], JobState.ENQUEUED, now)

    assert moved is not None
    assert moved.id == job_id
    assert moved.state.is_pending
    assert moved.next_try_at == now
    assert moved.finished_at is None
    assert moved.lease_owner is None
    assert moved.lease_token is None
    after = await stored(store, job_id)
    assert after.state.is_pending
    assert after.next_try_at == now
    assert after.finished_at is None
    assert ids(await store.claim("worker-1", 10, LEASE)) == [job_id]


async def test_transition_pending_to_cancelled(store: JobStore) -> None:
    record = await add_one(store, state=JobState.SCHEDULED, delay=60)

    moved = await store.transition(record.id, PENDING, JobState.CANCELLED, T0)

    assert moved is not None
    assert moved.state is JobState.CANCELLED
    assert moved.finished_at == T0
    after = await stored(store, record.id)
    assert after.state is JobState.CANCELLED
    assert after.finished_at == T0
    assert await store.claim("worker-1", 10, LEASE) == []


async def test_transition_from_an_unexpected_state_changes_nothing(store: JobStore) -> None:
    record = await add_one(store)
    claimed = await claim_one(store, "worker-1")

    assert await store.transition(record.id, [JobState.DEAD], JobState.ENQUEUED, T0) is None
    assert await store.transition(record.id, PENDING, JobState.CANCELLED, T0) is None

    after = await stored(store, record.id)
    assert after.state is JobState.PROCESSING
    assert after.lease_owner == claimed.lease_owner
    assert after.lease_token == claimed.lease_token


async def test_transition_of_an_unknown_job_is_none(store: JobStore) -> None:
    assert await store.transition(uuid4().hex, PENDING, JobState.CANCELLED, T0) is None


# -- delete and purge ----------------------------------------------------------------


async def test_delete(store: JobStore) -> None:
    record = await add_one(store)

    assert await store.delete(record.id) is True
    assert await store.get(record.id) is None
    assert await store.delete(record.id) is False
    assert await store.claim("worker-1", 10, LEASE) == []


async def test_delete_of_a_held_job(store: JobStore) -> None:
    await add_one(store)
    claimed = await claim_one(store, "worker-1")

    assert await store.delete(claimed.id) is True
    assert await store.claim("worker-2", 10, LEASE) == []
    assert await store.finish("worker-1", [outcome(claimed, JobState.SUCCEEDED)]) == set()
    assert await store.get(claimed.id) is None


async def test_purge_by_state_and_finish_time(store: JobStore) -> None:
    old = [
        await finished_job(store, JobState.SUCCEEDED),
        await finished_job(store, JobState.CANCELLED),
        await finished_job(store, JobState.DEAD),
    ]
    old_success, old_cancel, old_dead = (record.id for record in old)
    cut = await store_time_after(store, latest_finish(old))
    recent_dead = (await finished_job(store, JobState.DEAD)).id
    pending = await add_one(store, state=JobState.SCHEDULED, delay=3600)

    purged = await store.purge([JobState.SUCCEEDED, JobState.CANCELLED], finished_before=cut)

    assert purged == 2
    assert await store.get(old_success) is None
    assert await store.get(old_cancel) is None
    assert await store.get(old_dead) is not None
    assert await store.get(recent_dead) is not None
    assert await store.get(pending.id) is not None

    assert await store.purge([JobState.DEAD], finished_before=cut) == 1
    assert await store.get(old_dead) is None
    assert await store.get(recent_dead) is not None
    later = await store.now() + seconds(3600)
    assert await store.purge(FINISHED, finished_before=later) == 1
    assert await store.get(recent_dead) is None
    assert await store.get(pending.id) is not None


async def test_purge_never_removes_pending_or_held_jobs(store: JobStore) -> None:
    pending = await add_one(store, state=JobState.SCHEDULED, delay=3600)
    held = await add_one(store)
    assert (await claim_one(store, "worker-1")).id == held.id

    purged = await store.purge(list(JobState), finished_before=utcnow() + seconds(86400))

    assert purged == 0
    assert await store.get(pending.id) is not None
    assert await store.get(held.id) is not None


async def test_purge_with_a_limit_removes_at_most_that_many(store: JobStore) -> None:
    done = [await finished_job(store, JobState.SUCCEEDED) for _ in range(5)]
    cut = await store_time_after(store, latest_finish(done))
    pending = await add_one(store, state=JobState.SCHEDULED, delay=3600)

    assert await store.purge(FINISHED, finished_before=cut, limit=2) == 2
    left = [record.id for record in done if await store.get(record.id) is not None]
    assert len(left) == 3

    # Without a limit: everything that is eligible.
    assert await store.purge(FINISHED, finished_before=cut) == 3
    assert [record.id for record in done if await store.get(record.id) is not None] == []
    assert await store.purge(FINISHED, finished_before=cut, limit=2) == 0
    assert await store.get(pending.id) is not None


# -- count and list ----------------------------------------------------------------


async def test_count_by_state_splits_pending_jobs_by_now(store: JobStore) -> None:
    await add_one(store)
    await claim_one(store, "worker-1")
    await finished_job(store, JobState.SUCCEEDED)
    await finished_job(store, JobState.DEAD)
    await finished_job(store, JobState.CANCELLED)
    await add_one(store, delay=-1)
    await add_one(store, state=JobState.SCHEDULED, delay=3600)
    now = await store.now()

    counts = await store.count_by_state(now)

    assert counts == {
        JobState.SCHEDULED: 1,
        JobState.ENQUEUED: 1,
        JobState.PROCESSING: 1,
        JobState.SUCCEEDED: 1,
        JobState.DEAD: 1,
        JobState.CANCELLED: 1,
    }
    later = await store.count_by_state(now + seconds(7200))
    assert later[JobState.SCHEDULED] == 0
    assert later[JobState.ENQUEUED] == 2


async def test_count_by_state_of_an_empty_store_is_all_zero(store: JobStore) -> None:
    assert await store.count_by_state(T0) == dict.fromkeys(JobState, 0)


async def added_in_turn(
    store: JobStore, records: Iterable[JobRecord], after: datetime | None = None
) -> None:
    """Add one record at a time, each created (as stored) later than the one before."""
    previous = after
    for record in records:
        if previous is not None:
            await store_time_after(store, previous + MS)
        created = whole_ms(await store.now())
        delay = record.next_try_at - record.created_at
        await store.add([replace(record, created_at=created, next_try_at=created + delay)])
        previous = (await stored(store, record.id)).created_at


# -- wait_for_work -----------------------------------------------------------------


async def test_wait_for_work_returns_at_once_when_a_job_is_due(store: JobStore) -> None:
    await add_one(store, delay=-1)

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
            await add_one(store)
            with anyio.fail_after(2):
                await woken.wait()


async def test_wait_for_work_returns_when_a_scheduled_job_falls_due(store: JobStore) -> None:
    start = anyio.current_time()
    await add_one(store, state=JobState.SCHEDULED, delay=0.2)

    with anyio.fail_after(3):
        await store.wait_for_work(30)

    assert anyio.current_time() - start >= 0.1


async def test_wait_for_work_returns_when_a_lease_expires(store: JobStore) -> None:
    await add_one(store)
    await claim_one(store, "worker-1", SHORT_LEASE)

    with anyio.fail_after(3):
        await store.wait_for_work(30)

    assert len(await claim_when_due(store, "worker-2")) == 1


async def test_wait_for_work_returns_after_its_timeout(store: JobStore) -> None:
    await add_one(store, state=JobState.SCHEDULED, delay=3600)
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
