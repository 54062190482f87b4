"""The claim that rides behind an idle worker's wake-up wait on the Redis store,
against a real server: the jobs it takes go to the worker's next claim with a
lease that holds (its reply lost on the wire too), or back to the queue unrun
(the attempt not counted) when that claim does not fit them, when the wait is
cancelled or when the store closes; a Redis user that may not unblock a client
gets plain waits; and the connections the store keeps itself recover from a cut."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any, TypeVar

import anyio
import pytest
import redis.asyncio
from masa_jobs.containers import BackgroundJobContainer
from redis.exceptions import ConnectionError as RedisConnectionError

from masa_jobs import JobManager, JobState, MasaApp
from masa_jobs.exceptions import StoreUnavailableError
from masa_jobs.records import JobRecord, utcnow
from masa_jobs.stores import redis as redis_store_module
from masa_jobs.stores._redis_ahead import AHEAD_SLACK_SHARE
from masa_jobs.stores.redis import RedisJobStore
from tests.integration.test_redis import (
    HANG_GUARD_SECONDS,
    LEASE,
    NO_FALLBACK_POLL_SECONDS,
    new_job,
    opened,
    raw_redis,
    redis_user,
    succeeded,
    write_raw_job,
)
from tests.services import REDIS_URL

from .app import Work
from .harness import wait_until

pytestmark = pytest.mark.anyio

WORKER = "worker-a"
# Room for more jobs than a test enqueues: such a claim comes back short.
ROOM = 5

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _no_fallback_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    # Read when a store opens (its blocking socket's timeout) and at each wait.
    monkeypatch.setattr(redis_store_module, "MAX_SIGNAL_WAIT_SECONDS", NO_FALLBACK_POLL_SECONDS)


def named(name: str, url: str = REDIS_URL) -> str:
    """``url`` whose connections carry ``name`` (CLIENT SETNAME): the test finds
    the store's own connections among those of other clients of the server."""
    return f"{url}{'&' if '?' in url else '?'}client_name={name}"


async def clients_named(client: redis.asyncio.Redis, name: str) -> list[dict[str, Any]]:
    return [entry for entry in await client.client_list() if entry.get("name") == name]


async def blocked_in_pop(client: redis.asyncio.Redis, field: str, value: str) -> bool:
    """Whether a connection whose CLIENT LIST ``field`` is ``value`` waits in BLPOP."""
    return any(
        entry.get(field) == value and entry.get("cmd") == "blpop" and "b" in entry.get("flags", "")
        for entry in await client.client_list()
    )


async def woken_by(
    store: RedisJobStore,
    client: redis.asyncio.Redis,
    name: str,
    enqueue: Callable[[], Awaitable[object]],
) -> None:
    """Run ``store``'s wait; once it blocks, ``enqueue``; return when the wait ends."""
    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(store.wait_for_work, NO_FALLBACK_POLL_SECONDS)
            await wait_until(lambda: blocked_in_pop(client, "name", name), HANG_GUARD_SECONDS)
            await enqueue()


async def wait_cancelled_after(
    store: RedisJobStore,
    client: redis.asyncio.Redis,
    name: str,
    action: Callable[[], Awaitable[object]],
) -> bool:
    """Run ``store``'s wait; once it blocks, ``action``, then cancel the wait.
    Returns whether the wait returned before the cancellation."""
    returned = False

    async def waiter() -> None:
        nonlocal returned
        await store.wait_for_work(NO_FALLBACK_POLL_SECONDS)
        returned = True

    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await wait_until(lambda: blocked_in_pop(client, "name", name), HANG_GUARD_SECONDS)
            await action()
            tg.cancel_scope.cancel()
    return returned


async def stored(store: RedisJobStore, job_id: str) -> JobRecord:
    record = await store.get(job_id)
    assert record is not None
    return record


async def held_ahead(
    store: RedisJobStore, other: RedisJobStore, jobs: list[JobRecord], name: str
) -> None:
    """``store`` (connections named ``name``) claims short for its worker and
    waits; ``jobs`` come while it waits and the claim behind the wait takes
    them: they are processing before any claim asked for them."""
    async with raw_redis() as client:
        assert await store.claim(WORKER, ROOM, LEASE) == []
        await woken_by(store, client, name, lambda: other.add(jobs))
    for job in jobs:
        record = await stored(other, job.id)
        assert (record.state, record.lease_owner) == (JobState.PROCESSING, WORKER)


async def is_pending_unrun(store: RedisJobStore, job_id: str) -> None:
    """The job is back in the queue as if never claimed: no lease, no attempt."""
    record = await stored(store, job_id)
    assert record.state is JobState.ENQUEUED
    assert record.attempts == 0
    assert (record.lease_owner, record.lease_token, record.lease_expires_at) == (None, None, None)
    assert record.next_try_at <= await store.now()


async def holds_valid_lease(store: RedisJobStore, claimed: JobRecord, worker: str) -> None:
    """``claimed`` is ``worker``'s, on its first counted attempt, and its token renews it."""
    assert claimed.lease_owner == worker
    assert claimed.lease_token is not None
    assert claimed.attempts == 1
    record = await stored(store, claimed.id)
    assert (record.state, record.attempts) == (JobState.PROCESSING, 1)
    assert (record.lease_owner, record.lease_token) == (worker, claimed.lease_token)
    # The worker was told no later an end than the store keeps.
    assert claimed.lease_expires_at is not None
    assert record.lease_expires_at is not None
    assert record.lease_expires_at >= claimed.lease_expires_at
    renewed = await store.extend_leases(worker, {claimed.id: claimed.lease_token}, LEASE)
    assert renewed == {claimed.id}


# -- the next claim takes what the claim behind the wait took -------------------------


def lose_the_claims_reply(monkeypatch: pytest.MonkeyPatch) -> None:
    """The claim behind a wait runs, and the connection is lost with its reply."""
    sent_and_run = redis_store_module.blpop_then_claim

    async def reply_lost(*args: Any, **kwargs: Any) -> Any:
        await sent_and_run(*args, **kwargs)
        raise RedisConnectionError("connection lost with the claim's reply unread")

    monkeypatch.setattr(redis_store_module, "blpop_then_claim", reply_lost)


# A claim whose reply was lost is asked for again by its token: its jobs too
# go to the next claim, not to the end of their leases.
@pytest.mark.parametrize("reply", ["read", "lost"])
async def test_a_job_enqueued_during_a_wait_goes_to_the_next_claim_with_a_valid_lease(
    prefix: str, reply: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if reply == "lost":
        lose_the_claims_reply(monkeypatch)
    async with opened(prefix, named(prefix)) as store, opened(prefix) as other:
        job = new_job()
        await held_ahead(store, other, [job], prefix)
        [claimed] = await store.claim(WORKER, ROOM, LEASE)
        assert claimed.id == job.id
        await holds_valid_lease(store, claimed, WORKER)
        assert await store.finish(WORKER, [succeeded(claimed, claimed.lease_token)]) == {job.id}
        done = await stored(other, job.id)
        assert (done.state, done.attempts) == (JobState.SUCCEEDED, 1)


async def test_a_claim_for_fewer_jobs_takes_some_and_hands_back_the_rest(prefix: str) -> None:
    async with opened(prefix, named(prefix)) as store, opened(prefix) as other:
        jobs = [new_job() for _ in range(3)]
        await held_ahead(store, other, jobs, prefix)
        [first] = await store.claim(WORKER, 1, LEASE)
        await holds_valid_lease(store, first, WORKER)
        rest = {job.id for job in jobs} - {first.id}
        assert len(rest) == len(jobs) - 1
        for job_id in rest:
            await is_pending_unrun(other, job_id)

        # None lost, none twice.
        others = await other.claim("worker-b", ROOM, LEASE)
        assert sorted(record.id for record in others) == sorted(rest)
        for record in others:
            await holds_valid_lease(other, record, "worker-b")
        assert await other.claim("worker-c", ROOM, LEASE) == []


def age_the_claim_ahead(store: RedisJobStore) -> None:
    """Make the claim behind the last wait look older than the slack a worker
    allows (an event loop blocked after the pop returned): the claim that
    takes its jobs must renew their leases first."""
    ahead = store._ahead
    assert ahead is not None
    slack = LEASE.total_seconds() * AHEAD_SLACK_SHARE
    store._ahead = replace(ahead, earliest=ahead.earliest - 2 * slack)


async def test_jobs_held_ahead_past_the_slack_are_renewed_before_they_are_handed_over(
    prefix: str,
) -> None:
    async with opened(prefix, named(prefix)) as store, opened(prefix) as other:
        job = new_job()
        await held_ahead(store, other, [job], prefix)
        leased_until = (await stored(other, job.id)).lease_expires_at
        assert leased_until is not None
        age_the_claim_ahead(store)

        [claimed] = await store.claim(WORKER, ROOM, LEASE)

        assert claimed.id == job.id
        renewed_until = (await stored(other, job.id)).lease_expires_at
        assert renewed_until is not None
        assert renewed_until > leased_until
        await holds_valid_lease(store, claimed, WORKER)


async def test_a_job_held_ahead_whose_lease_is_gone_is_not_handed_over(prefix: str) -> None:
    async with opened(prefix, named(prefix)) as store, opened(prefix) as other:
        kept, cancelled = new_job(), new_job()
        await held_ahead(store, other, [kept, cancelled], prefix)
        # An operator cancels one while it waits in the worker's hands.
        moved = await other.transition(
            cancelled.id, {JobState.PROCESSING}, JobState.CANCELLED, await other.now()
        )
        assert moved is not None
        age_the_claim_ahead(store)

        claimed = await store.claim(WORKER, ROOM, LEASE)

        # The renewal found the cancelled job's lease gone: only the other runs.
        assert [record.id for record in claimed] == [kept.id]
        await holds_valid_lease(store, claimed[0], WORKER)
        assert (await stored(other, cancelled.id)).state is JobState.CANCELLED


@pytest.mark.parametrize(
    ("worker", "lease", "queues"),
    [
        ("worker-b", LEASE, None),
        (WORKER, 2 * LEASE, None),
        (WORKER, LEASE, ["elsewhere"]),
    ],
    ids=["another-worker", "another-lease", "other-queues"],
)
async def test_a_claim_the_held_jobs_do_not_fit_hands_them_back(
    prefix: str, worker: str, lease: timedelta, queues: list[str] | None
) -> None:
    async with opened(prefix, named(prefix)) as store, opened(prefix) as other:
        job = new_job()
        await held_ahead(store, other, [job], prefix)
        claimed = await store.claim(worker, ROOM, lease, queues=queues)
        if queues is not None:
            # Not a queue that claim serves: back in its own, for the next claim.
            assert claimed == []
            await is_pending_unrun(other, job.id)
            worker, lease = "worker-c", LEASE
            claimed = await other.claim(worker, ROOM, lease)
        # The claim that fits took it anew: its own lease, the first attempt.
        [record] = claimed
        assert record.id == job.id
        assert record.last_try_at is not None
        assert record.lease_expires_at == record.last_try_at + lease
        await holds_valid_lease(other, record, worker)


# -- held jobs go back when nobody will claim them ------------------------------------


async def test_a_cancelled_wait_leaves_no_job_leased(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with (
        # A command timeout beyond the hang guard: a cancellation that waited
        # for the pop to time out, instead of ending it, fails the test.
        opened(prefix, named(prefix), command_timeout=3 * HANG_GUARD_SECONDS) as store,
        opened(prefix) as other,
        raw_redis() as client,
    ):
        assert await store.claim(WORKER, ROOM, LEASE) == []
        job_ids: list[str] = []

        async def write_job() -> None:
            # A due job that pushes no wake-up token: the pop stays blocked
            # until the cancellation ends it, and the claim behind it then
            # takes this job, every time.
            job_ids.append(await write_raw_job(client, prefix))

        assert not await wait_cancelled_after(store, client, prefix, write_job)
        [job_id] = job_ids
        # Handed back, not left to a lease that nobody knows of (which logs why).
        assert [record.getMessage() for record in caplog.records] == []
        await is_pending_unrun(other, job_id)
        [claimed] = await other.claim("worker-b", ROOM, LEASE)
        assert claimed.id == job_id
        await holds_valid_lease(other, claimed, "worker-b")

        # The wait's connection, used again, reads its own replies.
        job = new_job()
        await held_ahead(store, other, [job], prefix)
        [again] = await store.claim(WORKER, ROOM, LEASE)
        assert again.id == job.id
        await holds_valid_lease(store, again, WORKER)


async def test_a_wait_cancelled_as_a_job_comes_leaves_it_to_the_next_claim_or_hands_it_back(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    # The wake-up token races the cancellation: the wait ends either way, and
    # the job is either the store's for the worker's next claim or back unrun.
    caplog.set_level(logging.WARNING)
    async with (
        opened(prefix, named(prefix)) as store,
        opened(prefix) as other,
        raw_redis() as client,
    ):
        assert await store.claim(WORKER, ROOM, LEASE) == []
        job = new_job()
        await wait_cancelled_after(store, client, prefix, lambda: other.add([job]))
        assert [record.getMessage() for record in caplog.records] == []
        record = await stored(other, job.id)
        if record.state is JobState.PROCESSING:
            assert record.lease_owner == WORKER
        else:
            await is_pending_unrun(other, job.id)
        [claimed] = await store.claim(WORKER, ROOM, LEASE)
        assert claimed.id == job.id
        await holds_valid_lease(store, claimed, WORKER)


async def test_closing_the_store_hands_back_the_jobs_it_holds(prefix: str) -> None:
    job = new_job()
    async with opened(prefix, named(prefix)) as store, opened(prefix) as other:
        await held_ahead(store, other, [job], prefix)
    async with opened(prefix) as reopened:
        await is_pending_unrun(reopened, job.id)
        [claimed] = await reopened.claim(WORKER, ROOM, LEASE)
        assert claimed.id == job.id
        await holds_valid_lease(reopened, claimed, WORKER)


# -- a Redis user that may not unblock ------------------------------------------------


@asynccontextmanager
async def running_worker(url: str, prefix: str) -> AsyncIterator[JobManager]:
    """A container with a worker on the Redis store at ``url``, in this process;
    its poll is too slow for a test to wait on: only a wake-up ends its waits."""
    container = BackgroundJobContainer()
    container.config.from_dict(
        {
            "store": {"backend": "redis", "url": url, "prefix": prefix},
            "options": {"poll_interval": NO_FALLBACK_POLL_SECONDS, "max_retry_times": 0},
        }
    )
    MasaApp.build(container)
    async with MasaApp.lifespan():
        yield MasaApp.job_manager()


async def test_a_user_who_may_not_unblock_gets_plain_waits_that_still_wake(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    async with redis_user(denied=("client",)) as (user, password), raw_redis() as client:
        url = REDIS_URL.replace("redis://", f"redis://{user}:{password}@", 1)
        async with running_worker(url, prefix) as manager:
            await wait_until(lambda: blocked_in_pop(client, "user", user), HANG_GUARD_SECONDS)
            job_id = await manager.enqueue(Work(key="woken"))

            async def ran() -> bool:
                info = await manager.get(job_id)
                return info is not None and info.state is JobState.SUCCEEDED

            await wait_until(ran, HANG_GUARD_SECONDS)
        # No wait failed and was retried on the way (each failure is logged).
        assert [record.getMessage() for record in caplog.records] == []
        async with opened(prefix, url) as store:
            # Private, as nothing public tells whether a wait carries a claim:
            # the store saw that this user may not run CLIENT ID and CLIENT
            # UNBLOCK, and waits without one.
            assert store._claims_ahead is False


# -- the store's own connections recover from a cut -----------------------------------


async def cut(client: redis.asyncio.Redis, name: str) -> None:
    """Close, from the server's side, every connection named ``name``."""
    for entry in await clients_named(client, name):
        await client.client_kill_filter(_id=entry["id"])


async def eventually(call: Callable[[], Awaitable[T]]) -> T:
    """The first call after a cut succeeds or reports the store unavailable;
    the next succeeds."""
    try:
        return await call()
    except StoreUnavailableError:
        return await call()


async def woken_after_cut(
    store: RedisJobStore, client: redis.asyncio.Redis, name: str, job: JobRecord
) -> None:
    """Like ``held_ahead``, but the first wait may report the store unavailable
    instead of blocking; the next blocks and takes ``job`` behind it."""
    assert await eventually(lambda: store.claim(WORKER, ROOM, LEASE)) == []
    unavailable = False
    with anyio.fail_after(HANG_GUARD_SECONDS):
        async with anyio.create_task_group() as tg:

            async def waiter() -> None:
                nonlocal unavailable
                try:
                    await store.wait_for_work(NO_FALLBACK_POLL_SECONDS)
                except StoreUnavailableError:
                    unavailable = True
                    tg.cancel_scope.cancel()  # the pop never blocked: nothing to wake

            tg.start_soon(waiter)
            await wait_until(lambda: blocked_in_pop(client, "name", name), HANG_GUARD_SECONDS)
            await store.add([job])
    if unavailable:
        await woken_by(store, client, name, lambda: store.add([job]))
    [claimed] = await store.claim(WORKER, ROOM, LEASE)
    assert claimed.id == job.id
    await holds_valid_lease(store, claimed, WORKER)


async def test_the_stores_own_connections_recover_from_a_cut(prefix: str) -> None:
    async with opened(prefix, named(prefix)) as store, raw_redis() as client:
        # Every kind of connection the store keeps is open and idle: the
        # client's pool, the script calls' own, a wait's.
        await woken_after_cut(store, client, prefix, new_job())
        assert len(await clients_named(client, prefix)) >= 3
        await cut(client, prefix)
        with anyio.fail_after(HANG_GUARD_SECONDS):
            await eventually(lambda: store.count_by_state(utcnow()))
        await woken_after_cut(store, client, prefix, new_job())

        # A wait cut while its pop blocks, with a due job for the claim behind
        # it (no wake-up token: the pop does not return): the claim never ran.
        assert await store.claim(WORKER, ROOM, LEASE) == []

        async def cut_when_blocked() -> None:
            await wait_until(lambda: blocked_in_pop(client, "name", prefix), HANG_GUARD_SECONDS)
            job_ids.append(await write_raw_job(client, prefix))
            await cut(client, prefix)

        job_ids: list[str] = []
        with anyio.fail_after(HANG_GUARD_SECONDS):
            async with anyio.create_task_group() as tg:
                tg.start_soon(cut_when_blocked)
                with contextlib.suppress(StoreUnavailableError):
                    await store.wait_for_work(NO_FALLBACK_POLL_SECONDS)
            await eventually(lambda: is_pending_unrun(store, job_ids[0]))
            [claimed] = await eventually(lambda: store.claim("worker-b", ROOM, LEASE))
        assert claimed.id == job_ids[0]
        await holds_valid_lease(store, claimed, "worker-b")
        await woken_after_cut(store, client, prefix, new_job())
