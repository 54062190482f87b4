"""Job control on the Redis store against a real server: what the contract
suite cannot show. Jobs of the layout before queues move to the default queue
once; a claim reads no key of a queue it does not serve; due times keep their
microseconds; the unique index and the known queues forget what they no
longer need; cancel notices and resumes cross store instances."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any
from uuid import uuid4

import anyio
import pytest
import redis.asyncio

from masa_jobs import JobState
from masa_jobs.exceptions import StoreError
from masa_jobs.records import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    JobOutcome,
    JobRecord,
    UniqueScope,
    to_us,
    utcnow,
)
from masa_jobs.stores import redis as redis_store_module
from masa_jobs.stores.redis import LAYOUT_VERSION, RedisJobStore
from tests.integration.test_redis import opened, raw_redis
from tests.integration.test_redis_listing import Spy
from tests.services import REDIS_URL, unique_name

from .harness import wait_until

pytestmark = pytest.mark.anyio

LEASE = timedelta(seconds=30)
# A lease that has expired by the next call: the lease of a worker cut off.
EXPIRED = timedelta(0)
# Guards against a hang; far above what any step should take, even under load.
HANG_GUARD_SECONDS = 20.0
# A test that waits on the wake-up signal alone sets the store's fallback poll
# this long, so that only the signal can end the wait.
NO_FALLBACK_POLL_SECONDS = 60.0
# Cancels timed from the transition's return to the listener's call.
CANCEL_SAMPLES = 50
# What a cancel notice may take at most, at the median, between two store instances.
CANCEL_LATENCY_TARGET_SECONDS = 0.1
# Jobs of another queue the claim must not read: enough that reading them would show.
OTHER_JOBS = 2_000
# Entries one re-layout call moves in the upgrade test: several calls for its jobs.
SMALL_CHUNK = 10


def new_job(job_id: str | None = None, delay: float = 0.0, **fields: Any) -> JobRecord:
    now = utcnow()
    values: dict[str, Any] = {
        "id": job_id or uuid4().hex,
        "name": "control.job",
        "payload": '{"n": 1}',
        "state": JobState.SCHEDULED if delay > 0 else JobState.ENQUEUED,
        "created_at": now,
        "next_try_at": now + timedelta(seconds=delay),
    }
    return JobRecord(**{**values, **fields})


def succeeded(record: JobRecord) -> JobOutcome:
    return JobOutcome(
        job_id=record.id,
        state=JobState.SUCCEEDED,
        attempts=record.attempts,
        next_try_at=record.next_try_at,
        lease_token=record.lease_token,
    )


def tag(prefix: str) -> str:
    return "{" + prefix + "}:"


async def stored(store: RedisJobStore, job_id: str) -> JobRecord:
    record = await store.get(job_id)
    assert record is not None
    return record


# -- the layout before queues --------------------------------------------------------


async def write_layout_2(client: redis.asyncio.Redis, prefix: str) -> dict[str, int]:
    """Jobs as the layout before queues kept them (one pending index, one leases
    zset, no queue, priority or unique fields): one processing under an expired
    lease, one succeeded, one scheduled for later, the rest due, one microsecond
    apart and the newest first. Returns id -> due time (microseconds) of the
    jobs a claim takes."""
    t = tag(prefix)
    now = to_us(utcnow())
    claimable: dict[str, int] = {}
    for i in range(3 * SMALL_CHUNK):
        job_id = f"old-{i:03d}"
        state = ("processing", "succeeded", "scheduled")[i] if i < 3 else "enqueued"
        due = now + 3_600_000_000 if state == "scheduled" else now - 1_000_000 - i
        fields = {
            "name": "control.job",
            "payload": "{}",
            "state": state,
            "created": str(now),
            "next": str(due),
            "attempts": "1" if state != "enqueued" else "0",
            "seq": str(i),
        }
        if state == "processing":
            fields |= {"owner": "gone", "lease": str(now - 1), "token": "t", "last_try": str(now)}
            await client.zadd(f"{t}leases", {job_id: now - 1})
            await client.zadd(f"{t}created:processing", {job_id: now})
        elif state == "succeeded":
            fields["finished"] = str(now)
            await client.zadd(f"{t}done:succeeded", {job_id: now})
            await client.zadd(f"{t}created:succeeded", {job_id: now})
        else:
            await client.zadd(f"{t}pending", {f"{0:08x}{i:016x}{job_id}": due})
            await client.zadd(f"{t}created:pending", {job_id: now})
        await client.hset(f"{t}job:{job_id}", mapping=fields)
        if state in ("processing", "enqueued"):
            claimable[job_id] = due
    await client.set(f"{t}seq", 3 * SMALL_CHUNK)
    await client.set(f"{t}layout", "2")
    return claimable


async def test_jobs_of_the_layout_before_queues_move_to_the_default_queue_once(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store_module, "REINDEX_CHUNK", SMALL_CHUNK)
    spy = Spy(monkeypatch)
    t = tag(prefix)
    async with raw_redis() as client:
        claimable = await write_layout_2(client, prefix)

        async with opened(prefix) as store:
            assert await client.get(f"{t}layout") == LAYOUT_VERSION
            assert spy.count("reindex") == 0  # layout 2 has its listing indexes
            assert spy.count("relayout") >= 3  # several short scripts
            assert await client.exists(f"{t}pending", f"{t}leases") == 0
            assert await client.zcard(f"{t}due:{DEFAULT_QUEUE}") == len(claimable)

            old = await stored(store, "old-003")
            assert (old.queue, old.priority) == (DEFAULT_QUEUE, DEFAULT_PRIORITY)
            assert (old.unique_key, old.unique_scope, old.unique_until) == (None, None, None)
            counts = await store.count_by_state(await store.now())
            assert counts[JobState.ENQUEUED] == len(claimable) - 1
            assert (counts[JobState.SCHEDULED], counts[JobState.PROCESSING]) == (1, 1)

            # The expired lease among the due jobs, by due time.
            claimed = await store.claim("worker", 100, LEASE, queues=[DEFAULT_QUEUE])
            assert [r.id for r in claimed] == sorted(claimable, key=claimable.__getitem__)
            assert {r.queue for r in claimed} == {DEFAULT_QUEUE}
            applied = await store.finish("worker", [succeeded(r) for r in claimed])
            assert applied == set(claimable)
            assert await store.oldest_due_at() == (await stored(store, "old-002")).next_try_at

        moved = spy.count("relayout")
        async with opened(prefix):
            pass
        assert spy.count("relayout") == moved


# -- a claim reads the served queues only -------------------------------------------


@asynccontextmanager
async def confined(prefix: str, queue: str) -> AsyncIterator[RedisJobStore]:
    """A store opened as a Redis user that may read no key of any queue but
    ``queue`` (its due index, its leases, and jobs whose id starts with
    ``<queue>-``): a script that touched another queue's key would be refused."""
    t = tag(prefix)
    name, password = unique_name("masa_confined"), uuid4().hex
    keys = [
        # Everything of the store but due indexes, leases and jobs (d, l, j) ...
        f"~{t}[^dlj]*",
        f"~{t}done:*",
        f"~{t}layout",
        # ... and those of the one queue.
        f"~{t}due:{queue}",
        f"~{t}leases:{queue}",
        f"~{t}job:{queue}-*",
    ]
    async with raw_redis() as client:
        await client.acl_setuser(
            name,
            enabled=True,
            passwords=[f"+{password}"],
            categories=["+@all"],
            keys=keys,
            channels=["*"],
        )
        try:
            url = REDIS_URL.replace("redis://", f"redis://{name}:{password}@", 1)
            async with opened(prefix, url) as store:
                yield store
        finally:
            await client.acl_deluser(name)


async def test_a_claim_reads_no_key_of_a_queue_it_does_not_serve(prefix: str) -> None:
    async with opened(prefix) as admin:
        others = [new_job(f"other-{i}", queue="other") for i in range(OTHER_JOBS)]
        await admin.add(others)
        # An expired lease in the other queue too.
        [lapsed] = await admin.claim("worker-0", 1, EXPIRED, queues=["other"])
        mine = [new_job(f"mine-{i}", queue="mine", priority=i % 3) for i in range(5)]
        await admin.add(mine)

        async with confined(prefix, "mine") as store:
            # The ACL is real: a claim of the other queue is refused.
            with pytest.raises(StoreError, match="can't access at least one of the keys"):
                await store.claim("worker-1", 1, LEASE, queues=["other"])

            with anyio.fail_after(HANG_GUARD_SECONDS):
                await store.wait_for_work(NO_FALLBACK_POLL_SECONDS, queues=["mine"])
            first = await store.claim("worker-1", 2, LEASE, queues=["mine"])
            assert [r.id for r in first] == ["mine-0", "mine-3"]  # priority 0 first

            # Every queue but a paused one: the paused queue is not read either.
            await admin.set_queue_paused("other", True)
            rest = await store.claim("worker-1", 10, LEASE, queues=None)
            assert [r.id for r in rest] == ["mine-1", "mine-4", "mine-2"]
            assert await store.claim("worker-1", 10, LEASE, queues=None) == []

        kept = await admin.get(lapsed.id)
        assert kept is not None
        assert kept.lease_token == lapsed.lease_token


# -- due times keep their microseconds -------------------------------------------------


async def test_jobs_due_within_one_millisecond_go_by_their_microsecond(prefix: str) -> None:
    async with opened(prefix) as store:
        base = new_job()
        offsets = (-3, -1, -2, -5, -4)  # microseconds after creation
        records = [
            replace(base, id=f"job-{n}", next_try_at=base.created_at + timedelta(microseconds=n))
            for n in offsets
        ]
        await store.add(records)
        claimed = await store.claim("worker", 10, LEASE)
        assert [r.id for r in claimed] == [f"job-{n}" for n in sorted(offsets)]


async def test_counts_split_pending_jobs_at_the_exact_microsecond(prefix: str) -> None:
    async with opened(prefix) as store:
        later = [new_job(delay=60, priority=p) for p in (0, 4, 9)]
        await store.add(later)
        await store.add([new_job(priority=9), new_job(delay=-5, priority=4, queue="mail")])
        due_at = [(await stored(store, r.id)).next_try_at for r in later]
        assert len(set(due_at)) == 1  # one batch: one due time
        [at] = set(due_at)

        before = await store.count_by_state(at - timedelta(microseconds=1))
        on_time = await store.count_by_state(at)

        assert (before[JobState.SCHEDULED], before[JobState.ENQUEUED]) == (3, 2)
        assert (on_time[JobState.SCHEDULED], on_time[JobState.ENQUEUED]) == (0, 5)


# -- queue and key texts ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("queue", "key"),
    [("mail,é✓", "k,1,0,é\n🚀"), (DEFAULT_QUEUE, ""), ("0,0,0,,", ",")],
    ids=["separators-and-multibyte", "empty-key", "looks-like-a-control"],
)
async def test_awkward_queue_and_key_texts_round_trip_and_hold(
    prefix: str, queue: str, key: str
) -> None:
    async with opened(prefix) as store:
        until = await store.now() + timedelta(hours=1)
        holder = new_job(
            queue=queue,
            priority=7,
            unique_key=key,
            unique_scope=UniqueScope.PERIOD,
            unique_until=until,
        )
        assert await store.add([holder]) == [holder.id]
        got = await stored(store, holder.id)
        assert (got.queue, got.priority) == (queue, 7)
        assert (got.unique_key, got.unique_scope) == (key, UniqueScope.PERIOD)
        # The period is rebased with the job's creation on the server's clock.
        assert got.unique_until is not None
        assert got.unique_until - got.created_at == until - holder.created_at
        late = new_job(unique_key=key, unique_scope=UniqueScope.ACTIVE)
        assert await store.add([late]) == [holder.id]
        assert [r.id for r in await store.claim("worker", 10, LEASE, queues=[queue])] == [holder.id]


# -- what the store forgets ------------------------------------------------------------


async def test_the_unique_index_forgets_a_key_its_job_let_go(prefix: str) -> None:
    unique = tag(prefix) + "unique"
    async with opened(prefix) as store, raw_redis() as client:
        pending = new_job(unique_key="p", unique_scope=UniqueScope.PENDING)
        active = new_job(unique_key="a", unique_scope=UniqueScope.ACTIVE)
        until = await store.now() + timedelta(hours=1)
        period = new_job(unique_key="t", unique_scope=UniqueScope.PERIOD, unique_until=until)
        await store.add([pending, active, period])
        assert await client.hgetall(unique) == {"p": pending.id, "a": active.id, "t": period.id}

        held = {r.id: r for r in await store.claim("worker", 10, LEASE)}
        assert await client.hgetall(unique) == {"a": active.id, "t": period.id}
        claimed_pending = held[pending.id]
        assert claimed_pending.unique_key is None  # released by the claim
        assert claimed_pending.unique_scope is UniqueScope.PENDING

        await store.finish("worker", [succeeded(r) for r in held.values()])
        assert await client.hgetall(unique) == {"t": period.id}  # held for its period

        assert await store.delete(period.id)
        assert await client.hgetall(unique) == {}


async def test_a_queue_a_claim_finds_empty_leaves_the_known_queues(prefix: str) -> None:
    known = tag(prefix) + "queues"
    async with opened(prefix) as store, raw_redis() as client:
        job = new_job(queue="mail")
        await store.add([job])
        assert await client.smembers(known) == {"mail"}
        [held] = await store.claim("worker", 10, LEASE)
        assert await store.claim("worker", 10, LEASE) == []
        assert await client.smembers(known) == {"mail"}  # it still runs a job

        await store.finish("worker", [succeeded(held)])
        assert await store.claim("worker", 10, LEASE) == []
        assert await client.smembers(known) == set()

        again = new_job(queue="mail")
        await store.add([again])
        assert [r.id for r in await store.claim("worker", 10, LEASE)] == [again.id]


# -- across store instances ------------------------------------------------------------


async def test_a_resume_through_another_instance_wakes_a_waiting_worker(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store_module, "MAX_SIGNAL_WAIT_SECONDS", NO_FALLBACK_POLL_SECONDS)
    async with opened(prefix) as waiting, opened(prefix) as operator, raw_redis() as client:
        await operator.add([new_job(queue="mail")])
        await operator.set_queue_paused("mail", True)
        woken = anyio.Event()

        async def waiter() -> None:
            await waiting.wait_for_work(NO_FALLBACK_POLL_SECONDS, queues=["mail"])
            woken.set()

        with anyio.fail_after(HANG_GUARD_SECONDS):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await wait_until(lambda: _someone_blocks(client), timeout=HANG_GUARD_SECONDS)
                assert not woken.is_set()
                await operator.set_queue_paused("mail", False)
                await woken.wait()
        assert len(await waiting.claim("worker", 10, LEASE, queues=["mail"])) == 1


async def _someone_blocks(client: redis.asyncio.Redis) -> bool:
    return any(entry.get("cmd") == "blpop" for entry in await client.client_list())


class Arrivals:
    """A cancel listener that notes when each id arrived (``time.perf_counter``)."""

    def __init__(self) -> None:
        self.at: dict[str, float] = {}
        self.event = anyio.Event()

    def __call__(self, job_id: str) -> None:
        self.at[job_id] = time.perf_counter()
        self.event.set()

    async def wait_for(self, job_id: str) -> float:
        with anyio.fail_after(HANG_GUARD_SECONDS):
            while job_id not in self.at:
                await self.event.wait()
                self.event = anyio.Event()
        return self.at[job_id]


async def test_a_cancel_reaches_the_listener_of_another_instance_at_once(
    prefix: str,
) -> None:
    channel = tag(prefix) + "cancel"
    async with opened(prefix) as worker, opened(prefix) as operator, raw_redis() as client:
        arrivals = Arrivals()
        worker.add_cancel_listener(arrivals)

        async def subscribed() -> bool:
            [(_, count)] = await client.pubsub_numsub(channel)
            return bool(count >= 1)

        await wait_until(subscribed, timeout=HANG_GUARD_SECONDS)
        # From the transition's return (the notice may even come first: 0), and
        # from its call (the operator's round trip included).
        latencies: list[float] = []
        round_trips: list[float] = []
        for _ in range(CANCEL_SAMPLES):
            job = new_job()
            await operator.add([job])
            [held] = await worker.claim("worker", 1, LEASE)
            now = await operator.now()
            called = time.perf_counter()
            moved = await operator.transition(
                held.id, [JobState.PROCESSING], JobState.CANCELLED, now
            )
            returned = time.perf_counter()
            assert moved is not None
            arrived = await arrivals.wait_for(job.id)
            latencies.append(max(0.0, arrived - returned))
            round_trips.append(arrived - called)

        # A cancel of a job that is not running tells nobody.
        pending = new_job()
        await operator.add([pending])
        await operator.transition(pending.id, [JobState.ENQUEUED], JobState.CANCELLED, utcnow())
        probe = new_job()
        await operator.add([probe])
        await worker.claim("worker", 1, LEASE)
        await operator.transition(probe.id, [JobState.PROCESSING], JobState.CANCELLED, utcnow())
        await arrivals.wait_for(probe.id)
        assert pending.id not in arrivals.at

    for what, samples in (("after the transition", latencies), ("from its call", round_trips)):
        print(
            f"cancel notice {what}: median {statistics.median(samples) * 1000:.2f} ms, "
            f"p99 {statistics.quantiles(samples, n=100)[98] * 1000:.2f} ms"
        )
    assert statistics.median(round_trips) < CANCEL_LATENCY_TARGET_SECONDS


async def test_aclose_stops_the_cancel_feed(prefix: str) -> None:
    channel = tag(prefix) + "cancel"
    async with raw_redis() as client:

        async def subscribers() -> int:
            [(_, count)] = await client.pubsub_numsub(channel)
            return int(count)

        async def one_subscriber() -> bool:
            return await subscribers() == 1

        async def none_left() -> bool:
            return await subscribers() == 0

        async with opened(prefix) as store:
            store.add_cancel_listener(lambda job_id: None)
            await wait_until(one_subscriber, timeout=HANG_GUARD_SECONDS)
        # The server lets the subscriber go once it sees the connection closed.
        await wait_until(none_left, timeout=HANG_GUARD_SECONDS)


async def test_a_user_without_the_cancel_channel_still_cancels_a_running_job(
    prefix: str,
) -> None:
    # Redis 7 gives a new user no channel: the notice is lost, never the cancel.
    name, password = unique_name("masa_no_channel"), uuid4().hex
    async with raw_redis() as client:
        await client.acl_setuser(
            name, enabled=True, passwords=[f"+{password}"], categories=["+@all"], keys=["~*"]
        )
        try:
            url = REDIS_URL.replace("redis://", f"redis://{name}:{password}@", 1)
            async with opened(prefix, url) as store:
                await store.add([new_job()])
                [held] = await store.claim("worker", 1, LEASE)
                moved = await store.transition(
                    held.id, [JobState.PROCESSING], JobState.CANCELLED, utcnow()
                )
                assert moved is not None
                assert moved.state is JobState.CANCELLED
                assert (await stored(store, held.id)).state is JobState.CANCELLED
        finally:
            await client.acl_deluser(name)
