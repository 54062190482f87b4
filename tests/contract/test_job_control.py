"""Job control on every store: queues, priorities, paused queues, unique keys
and cancel notices.

A worker claims and waits only for the queues it serves, never for a paused
one; due jobs go by priority (0 first), then by due time. A record with a
unique key stores nothing while another job holds the key and answers that
job's id instead; how long a job holds it is its ``UniqueScope``. A store
that is a ``CancelFeed`` tells its listeners when an operator cancels a
running job.

Network stores rebase ``created_at`` and ``next_try_at`` on their clock, so
these tests compare ids and orders, never the times a store stored, and take
"now" from ``store.now()``. Waits are on conditions with deadlines; the few
that show a worker is *not* woken measure a short wait with the event loop's
clock.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta

import anyio
import pytest

from masa_jobs import JobRecord, JobState
from masa_jobs.queries import JobQuery
from masa_jobs.records import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    MAX_PRIORITY,
    UniqueScope,
    put_back,
    utcnow,
)
from masa_jobs.stores.base import CancelFeed, Store

from .test_job_store import (
    FINISHED,
    LEASE,
    PENDING,
    SHORT_LEASE,
    WAIT_LIMIT_SECONDS,
    assert_close,
    claim_order,
    ids,
    lease_expired,
    make_record,
    outcome,
    seconds,
    store_time_after,
    stored,
    whole_ms,
)

pytestmark = pytest.mark.anyio

# The wait of a worker that must not be woken: short, so the suite stays fast.
IDLE_WAIT_SECONDS = 0.3
# What of IDLE_WAIT_SECONDS a worker that was not woken spends waiting, at least
# (the rest is room for timer granularity, never for an early return).
MOST_OF_IDLE_WAIT = 0.2
# How long a ``period`` key in the expiry test is held: long enough for one
# add to see it held, short enough to wait for.
SHORT_PERIOD = timedelta(seconds=0.5)
# A probe cancel's notice arrives within this, once the feed listens.
PROBE_SECONDS = 0.25
# The queue of the probe jobs that show a cancel feed is live.
PROBE_QUEUE = "probe"
KEY = "report:2024-05-01"
CONCURRENT_ADDS = 50


# -- helpers ---------------------------------------------------------------------------


def keyed(
    scope: UniqueScope,
    *,
    key: str = KEY,
    until: datetime | None = None,
    **fields: object,
) -> JobRecord:
    """A record that holds ``key`` under ``scope`` (``until`` ends a period)."""
    return make_record(unique_key=key, unique_scope=scope, unique_until=until, **fields)  # type: ignore[arg-type]


async def add(store: Store, *records: JobRecord) -> list[str]:
    """Add ``records`` in one batch and return the store's answer, checked for shape."""
    answer = await store.add(records)
    assert isinstance(answer, list)
    assert len(answer) == len(records)
    return answer


async def is_stored(store: Store, record: JobRecord) -> bool:
    return await store.get(record.id) is not None


async def job_count(store: Store) -> int:
    """How many jobs the store keeps, in every state."""
    return sum((await store.count_by_state(await store.now())).values())


async def key_taken_by(store: Store, holder: JobRecord, scope: UniqueScope) -> bool:
    """Whether a new record with ``holder``'s key is answered with ``holder``'s id
    (nothing stored for it), rather than stored under its own id."""
    probe = keyed(scope, key=holder.unique_key or KEY)
    [answer] = await add(store, probe)
    if answer == holder.id:
        assert not await is_stored(store, probe)
        return True
    assert answer == probe.id
    assert await is_stored(store, probe)
    return False


async def claim_only(
    store: Store,
    record: JobRecord,
    queues: Collection[str] | None = None,
    lease: timedelta = LEASE,
) -> JobRecord:
    """Claim and check that exactly ``record`` came out."""
    claimed = await store.claim("worker-1", 10, lease, queues=queues)
    assert ids(claimed) == [record.id]
    return claimed[0]


async def finish_as(store: Store, held: JobRecord, state: JobState, **fields: object) -> None:
    done = outcome(held, state, finished_at=await store.now(), **fields)  # type: ignore[arg-type]
    assert await store.finish("worker-1", [done]) == {held.id}


async def idle_wait(store: Store, queues: Collection[str] | None) -> float:
    """Seconds a ``wait_for_work(IDLE_WAIT_SECONDS)`` took, on the event loop's clock."""
    start = anyio.current_time()
    with anyio.fail_after(IDLE_WAIT_SECONDS + WAIT_LIMIT_SECONDS):
        await store.wait_for_work(IDLE_WAIT_SECONDS, queues=queues)
    return anyio.current_time() - start


# -- fields round-trip -----------------------------------------------------------------


async def test_a_record_without_control_fields_reads_back_with_the_defaults(
    store: Store,
) -> None:
    record = make_record()
    await add(store, record)

    got = await stored(store, record.id)

    assert (got.queue, got.priority) == (DEFAULT_QUEUE, DEFAULT_PRIORITY)
    assert (got.unique_key, got.unique_scope, got.unique_until) == (None, None, None)


async def test_queue_priority_and_key_round_trip_through_every_read(store: Store) -> None:
    until = whole_ms(await store.now()) + seconds(3600)
    record = keyed(UniqueScope.PERIOD, until=until, queue="mail", priority=7)
    await add(store, record)

    def assert_fields(got: JobRecord) -> None:
        assert (got.queue, got.priority) == ("mail", 7)
        # A period key is held whatever the state, so every read still shows it.
        assert (got.unique_key, got.unique_scope) == (KEY, UniqueScope.PERIOD)
        # A network store rebases the period's end with the job's creation.
        assert got.unique_until is not None
        assert got.unique_until - got.created_at == until - record.created_at

    assert_fields(await stored(store, record.id))
    [listed] = (await store.list_jobs(JobQuery(), await store.now())).items
    assert_fields(listed)
    assert_fields(await claim_only(store, record, queues=["mail"]))
    assert_fields(await stored(store, record.id))


@pytest.mark.network_store_only  # a local store uses this machine's clock by design
async def test_a_period_from_a_clock_ahead_ends_after_its_length_on_the_store_s_clock(
    store: Store,
) -> None:
    # An enqueuer whose clock is 2 h ahead asks for a key held for a minute.
    created = whole_ms(utcnow()) + seconds(7200)
    record = keyed(UniqueScope.PERIOD, until=created + seconds(60), created_at=created)
    await add(store, record)

    got = await stored(store, record.id)
    assert got.unique_until is not None
    assert got.unique_until - got.created_at == seconds(60)
    # Held for a minute of the store's time, not for 2 h and a minute.
    assert_close(got.unique_until, await store.now() + seconds(60))


async def test_an_active_key_reads_back_while_it_is_held(store: Store) -> None:
    record = keyed(UniqueScope.ACTIVE, queue="mail", priority=MAX_PRIORITY)
    await add(store, record)

    held = await claim_only(store, record)

    for got in (held, await stored(store, record.id)):
        assert (got.queue, got.priority) == ("mail", MAX_PRIORITY)
        assert (got.unique_key, got.unique_scope) == (KEY, UniqueScope.ACTIVE)


# -- claim by queue --------------------------------------------------------------------


async def test_claim_takes_only_jobs_of_the_given_queues(store: Store) -> None:
    mail, sms, push = (make_record(queue=q) for q in ("mail", "sms", "push"))
    await add(store, mail, sms, push)

    assert set(ids(await store.claim("worker-1", 10, LEASE, queues=["mail", "push"]))) == {
        mail.id,
        push.id,
    }
    assert await store.claim("worker-1", 10, LEASE, queues=["mail", "push"]) == []
    assert (await stored(store, sms.id)).state.is_pending
    assert ids(await store.claim("worker-2", 10, LEASE, queues=["sms"])) == [sms.id]


async def test_claim_without_queues_takes_every_queue(store: Store) -> None:
    records = [make_record(queue=q) for q in ("mail", "sms", DEFAULT_QUEUE)]
    await add(store, *records)

    claimed = await store.claim("worker-1", 10, LEASE, queues=None)

    assert set(ids(claimed)) == set(ids(records))


async def test_a_job_of_another_queue_is_never_claimed(store: Store) -> None:
    other = make_record(queue="other", delay=-86400)
    await add(store, other)

    assert await store.claim("worker-1", 10, LEASE, queues=["mail"]) == []
    assert await store.claim("worker-1", 10, LEASE, queues=[DEFAULT_QUEUE]) == []
    assert (await stored(store, other.id)).state.is_pending


async def test_claim_of_no_queue_takes_nothing(store: Store) -> None:
    await add(store, make_record(), make_record(queue="mail"))

    assert await store.claim("worker-1", 10, LEASE, queues=[]) == []
    assert await store.claim("worker-1", 10, LEASE, queues=["nobody-serves-it"]) == []


# -- priority --------------------------------------------------------------------------


async def test_claim_takes_the_lower_priority_first(store: Store) -> None:
    created = whole_ms(await store.now())
    last = make_record(created_at=created, delay=-3, priority=MAX_PRIORITY)
    first = make_record(created_at=created, delay=-1, priority=0)
    middle = make_record(created_at=created, delay=-2, priority=5)
    await add(store, last, first, middle)

    assert await claim_order(store) == [first.id, middle.id, last.id]


async def test_equal_priorities_go_by_due_time(store: Store) -> None:
    created = whole_ms(await store.now())
    records = [make_record(created_at=created, delay=d, priority=3) for d in (-1, -3, -2)]
    await add(store, *records)

    assert await claim_order(store) == ids([records[1], records[2], records[0]])


async def test_an_older_low_priority_job_waits_for_a_due_high_priority_one(
    store: Store,
) -> None:
    old_low = make_record(delay=-86400, priority=MAX_PRIORITY)
    await add(store, old_low)
    new_high = make_record(priority=0)
    await add(store, new_high)

    assert ids(await store.claim("worker-1", 1, LEASE, queues=None)) == [new_high.id]
    assert ids(await store.claim("worker-1", 1, LEASE, queues=None)) == [old_low.id]


async def test_a_high_priority_job_not_yet_due_lets_a_due_one_go_first(store: Store) -> None:
    later_high = make_record(delay=3600, priority=0)
    due_low = make_record(priority=MAX_PRIORITY)
    await add(store, later_high, due_low)

    assert ids(await store.claim("worker-1", 10, LEASE)) == [due_low.id]


async def test_priority_orders_jobs_across_the_served_queues(store: Store) -> None:
    created = whole_ms(await store.now())
    mail_low = make_record(created_at=created, delay=-9, queue="mail", priority=4)
    sms_high = make_record(created_at=created, delay=-1, queue="sms", priority=1)
    mail_high = make_record(created_at=created, delay=-2, queue="mail", priority=1)
    sms_low = make_record(created_at=created, delay=-5, queue="sms", priority=4)
    ignored = make_record(created_at=created, delay=-99, queue="push", priority=0)
    await add(store, mail_low, sms_high, mail_high, sms_low, ignored)

    order: list[str] = []
    while claimed := await store.claim("worker-1", 1, LEASE, queues=["mail", "sms"]):
        order.extend(ids(claimed))

    assert order == ids([mail_high, sms_high, mail_low, sms_low])
    assert ids(await store.claim("worker-1", 10, LEASE, queues=None)) == [ignored.id]


# -- paused queues ---------------------------------------------------------------------


async def test_pausing_a_queue_round_trips_and_is_idempotent(store: Store) -> None:
    assert await store.paused_queues() == set()

    await store.set_queue_paused("mail", True)
    await store.set_queue_paused("mail", True)
    await store.set_queue_paused("sms", True)
    assert await store.paused_queues() == {"mail", "sms"}

    await store.set_queue_paused("mail", False)
    await store.set_queue_paused("mail", False)
    await store.set_queue_paused("never-paused", False)
    assert await store.paused_queues() == {"sms"}


async def test_a_paused_queue_hands_out_nothing_until_resumed(store: Store) -> None:
    mail, sms = make_record(queue="mail", delay=-60), make_record(queue="sms")
    await add(store, mail, sms)
    await store.set_queue_paused("mail", True)

    assert await store.claim("worker-1", 10, LEASE, queues=["mail"]) == []
    assert ids(await store.claim("worker-1", 10, LEASE, queues=None)) == [sms.id]
    assert (await stored(store, mail.id)).state.is_pending

    await store.set_queue_paused("mail", False)
    assert ids(await store.claim("worker-1", 10, LEASE, queues=None)) == [mail.id]


async def test_a_paused_queue_still_accepts_jobs(store: Store) -> None:
    await store.set_queue_paused("mail", True)
    record = make_record(queue="mail")

    assert await add(store, record) == [record.id]

    assert (await stored(store, record.id)).state.is_pending
    assert await store.claim("worker-1", 10, LEASE, queues=["mail"]) == []
    await store.set_queue_paused("mail", False)
    await claim_only(store, record, queues=["mail"])


async def test_an_expired_lease_in_a_paused_queue_is_not_recovered(store: Store) -> None:
    record = make_record(queue="mail")
    await add(store, record)
    held = await claim_only(store, record, queues=["mail"], lease=SHORT_LEASE)
    await store.set_queue_paused("mail", True)
    await lease_expired(store, held)

    assert await store.claim("worker-2", 10, LEASE, queues=None) == []
    assert await store.claim("worker-2", 10, LEASE, queues=["mail"]) == []
    kept = await stored(store, record.id)
    assert (kept.state, kept.lease_token) == (JobState.PROCESSING, held.lease_token)

    await store.set_queue_paused("mail", False)
    [again] = await store.claim("worker-2", 10, LEASE, queues=["mail"])
    assert again.id == record.id
    assert again.lease_token != held.lease_token


# -- wait_for_work by queue ------------------------------------------------------------


async def test_wait_for_work_returns_at_once_for_a_due_job_of_a_served_queue(
    store: Store,
) -> None:
    await add(store, make_record(queue="mail", delay=-1))

    with anyio.fail_after(1):
        await store.wait_for_work(30, queues=["sms", "mail"])
    with anyio.fail_after(1):
        await store.wait_for_work(30, queues=None)


async def test_wait_for_work_is_not_woken_by_a_due_job_of_another_queue(store: Store) -> None:
    await add(store, make_record(queue="sms", delay=-1))

    assert await idle_wait(store, ["mail"]) >= MOST_OF_IDLE_WAIT


async def test_wait_for_work_is_not_woken_when_a_job_of_another_queue_falls_due(
    store: Store,
) -> None:
    await add(store, make_record(queue="sms", state=JobState.SCHEDULED, delay=0.05))

    assert await idle_wait(store, ["mail"]) >= MOST_OF_IDLE_WAIT


async def test_wait_for_work_is_not_woken_by_a_due_job_of_a_paused_queue(
    store: Store,
) -> None:
    await add(store, make_record(queue="mail", delay=-1))
    await store.set_queue_paused("mail", True)

    assert await idle_wait(store, ["mail"]) >= MOST_OF_IDLE_WAIT
    assert await idle_wait(store, None) >= MOST_OF_IDLE_WAIT


async def test_a_resume_wakes_a_waiting_worker(store: Store) -> None:
    await add(store, make_record(queue="mail", delay=-1))
    await store.set_queue_paused("mail", True)
    woken = anyio.Event()

    async def waiter() -> None:
        await store.wait_for_work(30, queues=["mail"])
        woken.set()

    with anyio.fail_after(WAIT_LIMIT_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.wait_all_tasks_blocked()
            assert not woken.is_set()
            await store.set_queue_paused("mail", False)
            with anyio.fail_after(2):
                await woken.wait()


# -- unique keys: add ------------------------------------------------------------------


async def test_a_batch_with_one_key_twice_stores_the_first_record(store: Store) -> None:
    first, second = keyed(UniqueScope.ACTIVE), keyed(UniqueScope.ACTIVE)

    assert await add(store, first, second) == [first.id, first.id]

    assert await is_stored(store, first)
    assert not await is_stored(store, second)
    assert await job_count(store) == 1


async def test_a_later_add_with_a_held_key_answers_the_holders_id(store: Store) -> None:
    holder = keyed(UniqueScope.ACTIVE)
    assert await add(store, holder) == [holder.id]
    late = keyed(UniqueScope.PENDING, payload='{"n": 2}')

    assert await add(store, late) == [holder.id]

    assert not await is_stored(store, late)
    assert (await stored(store, holder.id)).payload == holder.payload
    assert await job_count(store) == 1


async def test_records_without_a_key_are_never_duplicates(store: Store) -> None:
    holder = keyed(UniqueScope.ACTIVE)
    plain = [make_record(), make_record()]

    assert await add(store, holder, *plain) == ids([holder, *plain])
    assert await add(store, make_record(payload=holder.payload)) != [holder.id]
    assert await job_count(store) == 4


async def test_a_batch_mixing_duplicates_and_new_records_stores_the_new_ones(
    store: Store,
) -> None:
    holder = keyed(UniqueScope.ACTIVE, key="k1")
    await add(store, holder)
    plain = make_record()
    dup_of_holder = keyed(UniqueScope.ACTIVE, key="k1")
    fresh = keyed(UniqueScope.ACTIVE, key="k2")
    dup_of_fresh = keyed(UniqueScope.PERIOD, key="k2", until=await store.now() + seconds(60))
    other_plain = make_record()

    answer = await add(store, plain, dup_of_holder, fresh, dup_of_fresh, other_plain)

    assert answer == [plain.id, holder.id, fresh.id, fresh.id, other_plain.id]
    for record in (plain, fresh, other_plain, holder):
        assert await is_stored(store, record)
    for record in (dup_of_holder, dup_of_fresh):
        assert not await is_stored(store, record)
    assert await job_count(store) == 4


async def test_concurrent_adds_with_one_key_store_one_job(store: Store) -> None:
    records = [keyed(UniqueScope.ACTIVE, payload=f'{{"n": {n}}}') for n in range(CONCURRENT_ADDS)]
    answers: list[str] = []

    async def enqueue(record: JobRecord) -> None:
        answers.extend(await store.add([record]))

    with anyio.fail_after(WAIT_LIMIT_SECONDS * 2):
        async with anyio.create_task_group() as tg:
            for record in records:
                tg.start_soon(enqueue, record)

    assert len(answers) == CONCURRENT_ADDS
    assert len(set(answers)) == 1
    [winner] = [record for record in records if await is_stored(store, record)]
    assert answers[0] == winner.id
    assert await job_count(store) == 1


# -- unique keys: how long a job holds its key -----------------------------------------


async def test_a_pending_key_is_released_by_the_first_claim(store: Store) -> None:
    holder = keyed(UniqueScope.PENDING)
    await add(store, holder)
    assert await key_taken_by(store, holder, UniqueScope.PENDING)

    await claim_only(store, holder)

    assert not await key_taken_by(store, holder, UniqueScope.PENDING)


async def test_a_retried_pending_job_does_not_take_its_key_back(store: Store) -> None:
    holder = keyed(UniqueScope.PENDING)
    await add(store, holder)
    held = await claim_only(store, holder)
    await finish_as(store, held, JobState.SCHEDULED, next_try_at=await store.now())
    assert (await stored(store, holder.id)).state.is_pending

    newcomer = keyed(UniqueScope.PENDING)
    assert await add(store, newcomer) == [newcomer.id]
    assert await key_taken_by(store, newcomer, UniqueScope.PENDING)


async def test_a_pending_job_put_back_unrun_does_not_take_its_key_back(store: Store) -> None:
    # As a stopping worker puts back the jobs it claimed ahead and never started.
    holder = keyed(UniqueScope.PENDING)
    await add(store, holder)
    held = await claim_only(store, holder)
    assert await store.finish("worker-1", [put_back(held, started=False)]) == {holder.id}
    again = await stored(store, holder.id)
    assert (again.state.is_pending, again.attempts) == (True, 0)

    newcomer = keyed(UniqueScope.PENDING)
    assert await add(store, newcomer) == [newcomer.id]
    assert await key_taken_by(store, newcomer, UniqueScope.PENDING)


async def test_an_active_key_is_held_while_running_and_across_retries(store: Store) -> None:
    holder = keyed(UniqueScope.ACTIVE)
    await add(store, holder)
    held = await claim_only(store, holder)
    assert await key_taken_by(store, holder, UniqueScope.ACTIVE)

    retry_at = whole_ms(await store.now()) - seconds(1)
    await finish_as(store, held, JobState.SCHEDULED, next_try_at=retry_at, last_error="boom")
    assert await key_taken_by(store, holder, UniqueScope.ACTIVE)

    again = await claim_only(store, holder)
    assert await key_taken_by(store, holder, UniqueScope.ACTIVE)
    await finish_as(store, again, JobState.SUCCEEDED)
    assert not await key_taken_by(store, holder, UniqueScope.ACTIVE)


@pytest.mark.parametrize("final", [JobState.SUCCEEDED, JobState.DEAD])
async def test_an_active_key_is_released_by_a_final_outcome(store: Store, final: JobState) -> None:
    holder = keyed(UniqueScope.ACTIVE)
    await add(store, holder)
    held = await claim_only(store, holder)

    await finish_as(store, held, final, last_error="x")

    assert not await key_taken_by(store, holder, UniqueScope.ACTIVE)


@pytest.mark.parametrize("running", [False, True], ids=["pending", "processing"])
async def test_an_active_key_is_released_by_a_cancel(store: Store, running: bool) -> None:
    holder = keyed(UniqueScope.ACTIVE)
    await add(store, holder)
    if running:
        await claim_only(store, holder)

    expected = [JobState.PROCESSING] if running else PENDING
    moved = await store.transition(holder.id, expected, JobState.CANCELLED, await store.now())

    assert moved is not None
    assert not await key_taken_by(store, holder, UniqueScope.ACTIVE)


async def test_a_dead_job_retried_by_an_operator_does_not_take_its_key_back(
    store: Store,
) -> None:
    holder = keyed(UniqueScope.ACTIVE)
    await add(store, holder)
    await finish_as(store, await claim_only(store, holder), JobState.DEAD)
    newcomer = keyed(UniqueScope.ACTIVE)
    assert await add(store, newcomer) == [newcomer.id]
    assert await store.delete(newcomer.id)

    now = await store.now()
    assert await store.transition(holder.id, [JobState.DEAD], JobState.ENQUEUED, now) is not None

    assert not await key_taken_by(store, holder, UniqueScope.ACTIVE)


async def test_delete_releases_the_key(store: Store) -> None:
    holder = keyed(UniqueScope.PERIOD, until=await store.now() + seconds(3600))
    await add(store, holder)

    assert await store.delete(holder.id)

    assert not await key_taken_by(store, holder, UniqueScope.PERIOD)


async def test_purge_releases_the_key(store: Store) -> None:
    holder = keyed(UniqueScope.PERIOD, until=await store.now() + seconds(3600))
    await add(store, holder)
    await finish_as(store, await claim_only(store, holder), JobState.SUCCEEDED)
    done = await stored(store, holder.id)
    assert done.finished_at is not None
    cut = await store_time_after(store, done.finished_at)

    assert await store.purge(FINISHED, finished_before=cut) == 1

    assert not await key_taken_by(store, holder, UniqueScope.PERIOD)


async def test_a_period_key_is_held_after_success_until_it_ends(store: Store) -> None:
    holder = keyed(UniqueScope.PERIOD, until=await store.now() + seconds(3600))
    await add(store, holder)

    await finish_as(store, await claim_only(store, holder), JobState.SUCCEEDED)

    assert await key_taken_by(store, holder, UniqueScope.PERIOD)


async def test_a_period_key_is_released_when_its_time_passes(store: Store) -> None:
    until = whole_ms(await store.now()) + SHORT_PERIOD
    holder = keyed(UniqueScope.PERIOD, until=until)
    await add(store, holder)
    # Still pending when the period ends: the period alone decides.
    assert await key_taken_by(store, holder, UniqueScope.PERIOD)

    await store_time_after(store, until)

    assert (await stored(store, holder.id)).state.is_pending
    assert not await key_taken_by(store, holder, UniqueScope.PERIOD)


async def test_a_period_already_over_holds_nothing(store: Store) -> None:
    holder = keyed(UniqueScope.PERIOD, until=await store.now() - seconds(1))

    assert await add(store, holder) == [holder.id]

    assert not await key_taken_by(store, holder, UniqueScope.PERIOD)


# -- cancel notices --------------------------------------------------------------------


class Notices:
    """A cancel listener that keeps the ids it heard and lets a test wait for one."""

    def __init__(self) -> None:
        self.heard_ids: list[str] = []
        self._arrival = anyio.Event()

    def __call__(self, job_id: str) -> None:
        self.heard_ids.append(job_id)
        self._arrival.set()

    async def heard(self, job_id: str, within: float) -> bool:
        """Whether ``job_id`` was heard, waiting up to ``within`` seconds for it."""
        with anyio.move_on_after(within):
            while job_id not in self.heard_ids:
                await self._arrival.wait()
                self._arrival = anyio.Event()
        return job_id in self.heard_ids


def feed_of(store: Store) -> CancelFeed:
    # Every store shipped here tells its listeners of a cancelled running job.
    assert isinstance(store, CancelFeed)
    return store


async def cancel_running(store: Store, queue: str = DEFAULT_QUEUE) -> JobRecord:
    """Add a job, claim it, and cancel it while it runs, as an operator does."""
    record = make_record(queue=queue, delay=-1)
    await add(store, record)
    await claim_only(store, record, queues=[queue])
    moved = await store.transition(
        record.id, [JobState.PROCESSING], JobState.CANCELLED, await store.now()
    )
    assert moved is not None
    assert moved.state is JobState.CANCELLED
    return record


async def listening(store: Store) -> Notices:
    """A listener on the store's feed, returned once the feed is live.

    A feed on a server subscribes in the background from the first listener
    on: probe cancels (in a queue of their own) show when it hears them."""
    notices = Notices()
    feed_of(store).add_cancel_listener(notices)
    with anyio.fail_after(WAIT_LIMIT_SECONDS):
        while True:
            probe = await cancel_running(store, PROBE_QUEUE)
            if await notices.heard(probe.id, PROBE_SECONDS):
                return notices


async def test_cancelling_a_running_job_tells_the_listeners(store: Store) -> None:
    notices = await listening(store)

    cancelled = await cancel_running(store)

    with anyio.fail_after(WAIT_LIMIT_SECONDS):
        assert await notices.heard(cancelled.id, WAIT_LIMIT_SECONDS)


async def test_a_listener_that_raises_does_not_break_the_transition(store: Store) -> None:
    def broken(job_id: str) -> None:
        raise RuntimeError(f"listener failed on {job_id}")

    feed_of(store).add_cancel_listener(broken)
    notices = await listening(store)

    cancelled = await cancel_running(store)

    assert (await stored(store, cancelled.id)).state is JobState.CANCELLED
    with anyio.fail_after(WAIT_LIMIT_SECONDS):
        assert await notices.heard(cancelled.id, WAIT_LIMIT_SECONDS)
