"""The Redis store against a real server: what the contract suite cannot show."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any, cast
from urllib.parse import urlsplit
from uuid import uuid4

import anyio
import pytest
import redis.asyncio
from masa_jobs.containers import BackgroundJobContainer
from redis.exceptions import OutOfMemoryError, ReadOnlyError, ResponseError

from masa_jobs import JobManager, JobState, MasaApp
from masa_jobs.exceptions import (
    ConfigurationError,
    DuplicateJobError,
    StoreError,
    StoreRejectedError,
    StoreUnavailableError,
)
from masa_jobs.records import (
    DEFAULT_QUEUE,
    JobOutcome,
    JobRecord,
    UniqueScope,
    WorkerInfo,
    to_us,
    utcnow,
)
from masa_jobs.stores import redis as redis_store_module
from masa_jobs.stores.base import STALE_WORKER_SECONDS
from masa_jobs.stores.redis import RedisJobStore
from tests.listing import all_jobs
from tests.services import REDIS_URL, delete_redis_prefix, unique_name
from tests.tcp_proxy import in_front_of, through

from .app import Work
from .harness import wait_until
from .lost_replies import (
    claim_answered_after_a_lost_reply,
    outcome_answered_once_after_a_lost_reply,
)

pytestmark = pytest.mark.anyio

# A test that waits on the wake-up signal alone sets the store's fallback poll
# this long, so that only the signal can end the wait.
NO_FALLBACK_POLL_SECONDS = 60.0
# Guards against a hang; far above what any step should take, even under load.
HANG_GUARD_SECONDS = 20.0
LEASE = timedelta(seconds=30)
# A lease that has expired by the next call: the lease of a worker cut off.
EXPIRED = timedelta(0)
# Small store timeouts for outage tests: a call fails within them.
OUTAGE_TIMEOUTS = {"connect_timeout": 1, "command_timeout": 2}


@pytest.fixture
def other_prefix() -> Iterator[str]:
    name = unique_name()
    yield name
    delete_redis_prefix(name)


@asynccontextmanager
async def opened(
    prefix: str, url: str = REDIS_URL, **settings: Any
) -> AsyncIterator[RedisJobStore]:
    store = RedisJobStore.from_settings({"url": url, "prefix": prefix, **settings})
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


@asynccontextmanager
async def raw_redis() -> AsyncIterator[redis.asyncio.Redis]:
    client = redis.asyncio.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        yield client
    finally:
        await client.aclose()


@asynccontextmanager
async def redis_user(*, denied: tuple[str, ...] = ()) -> AsyncIterator[tuple[str, str]]:
    """A Redis user with a password, removed afterwards: a URL with a secret to
    keep. It may run every command but those ``denied``."""
    name, password = unique_name("masa_user"), uuid4().hex
    async with raw_redis() as client:
        await client.acl_setuser(
            name,
            enabled=True,
            passwords=[f"+{password}"],
            categories=["+@all"],
            commands=[f"-{command}" for command in denied],
            keys=["*"],
            channels=["*"],
        )
        try:
            yield name, password
        finally:
            await client.acl_deluser(name)


@asynccontextmanager
async def running_app(prefix: str) -> AsyncIterator[JobManager]:
    """A container with a worker on the Redis store, in this process."""
    container = BackgroundJobContainer()
    container.config.from_dict(
        {
            "store": {"backend": "redis", "url": REDIS_URL, "prefix": prefix},
            "options": {"poll_interval": 0.5, "max_retry_times": 0},
        }
    )
    MasaApp.build(container)
    async with MasaApp.lifespan():
        yield MasaApp.job_manager()


def unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def new_job(**fields: Any) -> JobRecord:
    now = utcnow()
    values: dict[str, Any] = {
        "id": uuid4().hex,
        "name": "integration-work",
        "payload": Work(key="k").model_dump_json(),
        "state": JobState.ENQUEUED,
        "created_at": now,
        "next_try_at": now,
    }
    return JobRecord(**{**values, **fields})


async def write_raw_job(client: redis.asyncio.Redis, prefix: str, **fields: str | None) -> str:
    """A pending job of the default queue written with plain commands, as the
    module docstring lays it out; a field given as None is left out."""
    job_id = uuid4().hex
    now = to_us(utcnow())
    now_us = str(now)
    values = {
        "name": "integration-work",
        "payload": '{"key": "k"}',
        "state": "enqueued",
        "created": now_us,
        "next": now_us,
        "attempts": "0",
        "seq": "0",
        **fields,
    }
    tag = "{" + prefix + "}:"
    present = {name: value for name, value in values.items() if value is not None}
    await client.hset(f"{tag}job:{job_id}", mapping=present)
    await client.zadd(f"{tag}created:pending", {job_id: now_us})
    await client.zadd(f"{tag}due:{DEFAULT_QUEUE}", {due_member(now, 0, 0, job_id): now // 1000})
    await client.sadd(f"{tag}queues", DEFAULT_QUEUE)
    return job_id


def due_member(next_us: int, attempts: int, seq: int, job_id: str) -> str:
    """A due index member: the microseconds within the due millisecond, attempts
    and the insertion counter, then the id."""
    return f"{next_us % 1000:03d}{attempts:08x}{seq:016x}{job_id}"


async def server_time(client: redis.asyncio.Redis) -> datetime:
    """What the server's TIME command answers."""
    seconds, microseconds = await client.time()
    return datetime.fromtimestamp(seconds, UTC) + timedelta(microseconds=microseconds)


def succeeded(record: JobRecord, token: str | None) -> JobOutcome:
    return JobOutcome(
        job_id=record.id,
        state=JobState.SUCCEEDED,
        attempts=record.attempts,
        next_try_at=record.next_try_at,
        finished_at=utcnow(),
        lease_token=token,
    )


# -- configuration and bad addresses ------------------------------------------------


def test_settings_name_the_missing_key_and_its_environment_variable() -> None:
    with pytest.raises(ConfigurationError, match=r"store\.url is not set.*MASA_JOBS_STORE__URL"):
        RedisJobStore.from_settings({"backend": "redis"})


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"url": "http://127.0.0.1:6379"}, r"store\.url is invalid.*scheme"),
        ({"url": "redis://127.0.0.1:port/0"}, r"store\.url is invalid"),
        ({"url": REDIS_URL, "prefix": "a{b}"}, r"store\.prefix is invalid"),
        ({"url": REDIS_URL, "connect_timeout": 0}, r"MASA_JOBS_STORE__CONNECT_TIMEOUT"),
        ({"url": REDIS_URL, "pool": 3}, r"store\.pool is not a setting of the redis store"),
    ],
)
def test_bad_settings_are_refused_with_the_key(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RedisJobStore.from_settings(settings)


def test_settings_from_the_environment_are_strings() -> None:
    store = RedisJobStore.from_settings(
        {"backend": "redis", "url": REDIS_URL, "connect_timeout": "2.5", "prefix": "app"}
    )
    assert "app" in repr(store)


async def test_an_unreachable_server_fails_lifespan_naming_store_and_address() -> None:
    port = unused_port()
    container = BackgroundJobContainer()
    url = f"redis://:sekret@127.0.0.1:{port}/0"
    container.config.from_dict({"store": {"backend": "redis", "url": url, "connect_timeout": 2}})
    MasaApp.build(container)

    with anyio.fail_after(HANG_GUARD_SECONDS), pytest.raises(StoreUnavailableError) as caught:
        async with MasaApp.lifespan():
            pytest.fail("the lifespan started without its store")

    message = str(caught.value)
    assert "redis store" in message
    assert f"redis://127.0.0.1:{port}/0" in message
    assert "MASA_JOBS_STORE__URL" in message
    assert "sekret" not in message


async def test_a_server_that_never_answers_fails_within_the_connect_timeout() -> None:
    # The kernel completes the handshake (the backlog) but nobody ever reads:
    # only the connect timeout can end the wait.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        store = RedisJobStore.from_settings({"url": url, "connect_timeout": 0.3})
        with anyio.fail_after(HANG_GUARD_SECONDS), pytest.raises(StoreUnavailableError) as caught:
            await store.open()
    assert "no answer within 0.3 s" in str(caught.value)
    assert url in str(caught.value)


async def test_open_and_aclose_are_idempotent(prefix: str) -> None:
    store = RedisJobStore.from_settings({"url": REDIS_URL, "prefix": prefix})
    await store.aclose()
    await store.open()
    await store.open()
    await store.add([new_job()])
    await store.aclose()
    await store.aclose()
    await store.open()
    assert (await store.count_by_state(utcnow()))[JobState.ENQUEUED] == 1
    await store.aclose()


# -- corrupt records ----------------------------------------------------------------


async def test_a_corrupt_payload_ends_dead_and_other_jobs_succeed(prefix: str) -> None:
    async with raw_redis() as client, running_app(prefix) as manager:
        corrupt_id = await write_raw_job(client, prefix, payload="{not json")
        good_ids = await manager.enqueue_many((Work(key=f"good-{i}"), None) for i in range(5))

        async def settled() -> bool:
            corrupt = await manager.get(corrupt_id)
            goods = [await manager.get(job_id) for job_id in good_ids]
            return (
                corrupt is not None
                and corrupt.state is JobState.DEAD
                and all(g is not None and g.state is JobState.SUCCEEDED for g in goods)
            )

        await wait_until(settled, timeout=HANG_GUARD_SECONDS)
        dead = await manager.get(corrupt_id)
        assert dead is not None
        assert dead.last_error is not None
        assert "no longer validate" in dead.last_error
        assert "JSON" in dead.last_error
        # The worker is still serving.
        later = await manager.enqueue(Work(key="later"))
        await wait_until(lambda: _succeeded(manager, later), timeout=HANG_GUARD_SECONDS)


@pytest.mark.parametrize(
    "damage",
    [{"next": "soon"}, {"done": "[not json"}, {"payload": None}],
    ids=["timestamp", "done-handlers", "no-payload"],
)
async def test_a_record_the_store_cannot_read_ends_dead_with_the_reason(
    prefix: str, damage: dict[str, str | None]
) -> None:
    async with raw_redis() as client, running_app(prefix) as manager:
        damaged_id = await write_raw_job(client, prefix, **damage)
        good_id = await manager.enqueue(Work(key="good"))

        async def settled() -> bool:
            try:
                info = await manager.get(damaged_id)
            except StoreError:  # damaged until the worker claims it and marks it dead
                return False
            return info is not None and info.state is JobState.DEAD

        await wait_until(settled, timeout=HANG_GUARD_SECONDS)
        await wait_until(lambda: _succeeded(manager, good_id), timeout=HANG_GUARD_SECONDS)
        dead = await manager.get(damaged_id)
        assert dead is not None
        assert dead.last_error is not None
        assert "cannot be read" in dead.last_error


async def _succeeded(manager: JobManager, job_id: str) -> bool:
    info = await manager.get(job_id)
    return info is not None and info.state is JobState.SUCCEEDED


# -- fenced leases on the server's clock ---------------------------------------------


async def test_a_new_claim_fences_off_the_worker_whose_lease_expired(prefix: str) -> None:
    async with opened(prefix) as store:
        job = new_job()
        await store.add([job])
        [first] = await store.claim("worker-a", 10, EXPIRED)
        [second] = await store.claim("worker-b", 10, LEASE)
        assert first.lease_token is not None
        assert second.lease_token is not None
        assert second.lease_token != first.lease_token
        assert second.attempts == first.attempts + 1

        # The late worker's renewal and outcome are refused and change nothing.
        assert await store.extend_leases("worker-a", {job.id: first.lease_token}, LEASE) == set()
        assert await store.finish("worker-a", [succeeded(first, first.lease_token)]) == set()
        held = await store.get(job.id)
        assert held is not None
        assert held.state is JobState.PROCESSING
        assert (held.lease_owner, held.lease_token) == ("worker-b", second.lease_token)
        assert held.lease_expires_at == second.lease_expires_at

        # The holder's token still works, and the finished job keeps no lease.
        assert await store.extend_leases("worker-b", {job.id: second.lease_token}, LEASE) == {
            job.id
        }
        assert await store.finish("worker-b", [succeeded(second, second.lease_token)]) == {job.id}
        done = await store.get(job.id)
        assert done is not None
        assert done.state is JobState.SUCCEEDED
        assert (done.lease_owner, done.lease_expires_at, done.lease_token) == (None, None, None)


async def test_an_expired_lease_is_still_its_holders_until_claimed_again(prefix: str) -> None:
    async with opened(prefix) as store:
        job = new_job()
        await store.add([job])
        [held] = await store.claim("worker-a", 10, EXPIRED)
        assert held.lease_token is not None
        assert await store.extend_leases("worker-a", {job.id: held.lease_token}, LEASE) == {job.id}
        # Renewed: nobody can take it now.
        assert await store.claim("worker-b", 10, LEASE) == []


async def test_excluded_expired_jobs_stay_with_the_excluder_and_go_to_others(
    prefix: str,
) -> None:
    # The claim must read past the excluded ones, at the head of the leases.
    async with opened(prefix) as store:
        running = [new_job() for _ in range(3)]
        await store.add(running)
        held = await store.claim("worker-a", 10, EXPIRED)
        assert {record.id for record in held} == {job.id for job in running}
        other = new_job()
        await store.add([other])
        excluded = [job.id for job in running]
        [first] = await store.claim("worker-a", 10, EXPIRED, exclude=excluded)
        assert first.id == other.id

        # Every lease has expired; worker-a takes back only the job it does not run.
        [again] = await store.claim("worker-a", 10, LEASE, exclude=excluded)
        assert again.id == other.id
        for record in held:
            stored = await store.get(record.id)
            assert stored is not None
            assert stored.state is JobState.PROCESSING
            assert stored.lease_token == record.lease_token

        # Another worker does claim them.
        taken = await store.claim("worker-b", 10, LEASE)
        assert {record.id for record in taken} == set(excluded)


async def test_an_excluded_pending_job_is_not_claimed(prefix: str) -> None:
    async with opened(prefix) as store:
        mine, theirs = new_job(), new_job()
        await store.add([mine, theirs])
        [claimed] = await store.claim("worker-a", 10, LEASE, exclude=[mine.id])
        assert claimed.id == theirs.id
        assert [r.id for r in await store.claim("worker-b", 10, LEASE)] == [mine.id]


async def test_claim_stamps_the_servers_time(prefix: str) -> None:
    async with opened(prefix) as store, raw_redis() as client:
        await store.add([new_job()])
        before = await server_time(client)
        [claimed] = await store.claim("worker", 10, LEASE)
        after = await server_time(client)
        assert claimed.last_try_at is not None
        assert before <= claimed.last_try_at <= after
        assert claimed.lease_expires_at == claimed.last_try_at + LEASE
        stored = await store.get(claimed.id)
        assert stored == claimed
        now = await store.now()
        assert after <= now <= await server_time(client)


async def test_add_rebases_a_job_on_the_servers_clock(prefix: str) -> None:
    async with opened(prefix) as store, raw_redis() as client:
        # A caller whose clock is an hour slow, enqueuing with a 10 s delay.
        created = utcnow() - timedelta(hours=1)
        job = new_job(created_at=created, next_try_at=created + timedelta(seconds=10))
        before = await server_time(client)
        await store.add([job])
        after = await server_time(client)
        stored = await store.get(job.id)
        assert stored is not None
        assert before <= stored.created_at <= after
        assert stored.next_try_at - stored.created_at == timedelta(seconds=10)
        assert await store.claim("worker", 10, LEASE) == []


async def test_a_final_outcome_is_finished_at_the_servers_time(prefix: str) -> None:
    async with opened(prefix) as store, raw_redis() as client:
        await store.add([new_job()])
        [claimed] = await store.claim("worker", 10, LEASE)
        outcome = succeeded(claimed, claimed.lease_token)
        outcome = JobOutcome(**{**_fields(outcome), "finished_at": utcnow() - timedelta(days=1)})
        before = await server_time(client)
        assert await store.finish("worker", [outcome]) == {claimed.id}
        after = await server_time(client)
        done = await store.get(claimed.id)
        assert done is not None
        assert done.finished_at is not None
        assert before <= done.finished_at <= after


def _fields(outcome: JobOutcome) -> dict[str, Any]:
    return {name: getattr(outcome, name) for name in JobOutcome.__slots__}


@pytest.mark.parametrize(
    "bad",
    [
        {"last_error": "a lone surrogate \ud800"},
        # Not an integer: the script refuses it before its first write.
        {"attempts": cast(int, 1.5)},
    ],
    ids=["unencodable-text", "refused-by-the-script"],
)
async def test_a_refused_outcome_writes_nothing_of_its_batch(
    prefix: str, bad: dict[str, Any]
) -> None:
    async with opened(prefix) as store:
        await store.add([new_job(), new_job()])
        good, other = await store.claim("worker", 10, LEASE)
        refused = JobOutcome(**{**_fields(succeeded(other, other.lease_token)), **bad})
        with pytest.raises(StoreRejectedError, match="redis store") as caught:
            await store.finish("worker", [succeeded(good, good.lease_token), refused])
        assert not isinstance(caught.value, StoreUnavailableError)
        for record in (good, other):
            stored = await store.get(record.id)
            assert stored is not None
            assert stored.state is JobState.PROCESSING
        assert await store.finish("worker", [succeeded(good, good.lease_token)]) == {good.id}


@pytest.mark.parametrize(
    "error",
    [
        OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
        ReadOnlyError("You can't write against a read only replica."),
        ResponseError("BUSY Redis is busy running a script."),
    ],
    ids=["full", "read-only-replica", "busy"],
)
async def test_a_server_that_cannot_write_for_now_is_unavailable_not_a_refusal(
    prefix: str, monkeypatch: pytest.MonkeyPatch, error: ResponseError
) -> None:
    async with opened(prefix) as store:
        await store.add([new_job()])
        [claimed] = await store.claim("worker", 10, LEASE)

        async def refuse(**_: Any) -> None:
            raise error

        monkeypatch.setitem(store._scripts, "finish", refuse)
        with pytest.raises(StoreUnavailableError) as caught:
            await store.finish("worker", [succeeded(claimed, claimed.lease_token)])
        assert caught.value.__cause__ is error


async def test_a_purge_while_another_holds_the_lock_removes_nothing(prefix: str) -> None:
    async with opened(prefix) as store, raw_redis() as client:
        jobs = [new_job() for _ in range(3)]
        await store.add(jobs)
        claimed = await store.claim("worker", 10, LEASE)
        outcomes = [succeeded(record, record.lease_token) for record in claimed]
        assert len(await store.finish("worker", outcomes)) == 3
        later = await store.now() + timedelta(seconds=1)
        lock = "{" + prefix + "}:purge-lock"
        await client.set(lock, "another-purger", px=30_000)

        assert await store.purge([JobState.SUCCEEDED], later, limit=10) == 0
        assert len(await all_jobs(store, [JobState.SUCCEEDED])) == 3
        assert await client.get(lock) == "another-purger"  # not ours to release

        await client.delete(lock)
        assert await store.purge([JobState.SUCCEEDED], later, limit=2) == 2
        assert await client.exists(lock) == 0  # released after the chunk
        assert await store.purge([JobState.SUCCEEDED], later, limit=2) == 1
        assert await all_jobs(store) == []


async def test_a_purge_without_limit_removes_everything_in_chunks(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store_module, "PURGE_CHUNK_ROWS", 2)
    async with opened(prefix) as store:
        await store.add([new_job() for _ in range(5)])
        claimed = await store.claim("worker", 10, LEASE)
        await store.finish("worker", [succeeded(r, r.lease_token) for r in claimed])
        later = await store.now() + timedelta(seconds=1)
        assert await store.purge([JobState.SUCCEEDED], later) == 5
        assert await all_jobs(store) == []


async def test_the_wait_for_a_scheduled_job_is_measured_on_the_servers_clock(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store_module, "MAX_SIGNAL_WAIT_SECONDS", NO_FALLBACK_POLL_SECONDS)
    async with opened(prefix) as store, raw_redis() as client:
        # Due 0.3 s from now on the server, whatever the caller's clock says.
        created = utcnow() - timedelta(hours=3)
        await store.add([new_job(created_at=created, next_try_at=created + timedelta(seconds=0.3))])
        [stored] = await all_jobs(store)
        with anyio.fail_after(HANG_GUARD_SECONDS):
            while await store.claim("worker", 10, LEASE) == []:
                await store.wait_for_work(NO_FALLBACK_POLL_SECONDS)
        assert await server_time(client) >= stored.next_try_at


# -- key prefixes -------------------------------------------------------------------


async def test_stores_with_different_prefixes_share_nothing(prefix: str, other_prefix: str) -> None:
    async with opened(prefix) as mine, opened(other_prefix) as theirs, raw_redis() as client:
        job = new_job()
        await mine.add([job])
        now = utcnow()
        await mine.heartbeat(WorkerInfo("w", "host", 1, started_at=now, last_seen_at=now))

        assert await theirs.get(job.id) is None
        assert await all_jobs(theirs) == []
        assert sum((await theirs.count_by_state(utcnow())).values()) == 0
        assert await theirs.claim("worker", 10, LEASE) == []
        assert await theirs.list_workers(now - LEASE) == []
        assert [record.id for record in await all_jobs(mine)] == [job.id]

        keys = [key async for key in client.scan_iter(match=f"*{prefix}*", count=1000)]
        assert keys
        assert all(key.startswith("{" + prefix + "}:") for key in keys)


# -- wake-up ------------------------------------------------------------------------


async def test_an_add_through_another_connection_wakes_a_waiting_worker(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store_module, "MAX_SIGNAL_WAIT_SECONDS", NO_FALLBACK_POLL_SECONDS)
    async with opened(prefix) as waiting, opened(prefix) as enqueuing, raw_redis() as client:
        woken = anyio.Event()

        async def waiter() -> None:
            await waiting.wait_for_work(NO_FALLBACK_POLL_SECONDS)
            woken.set()

        with anyio.fail_after(HANG_GUARD_SECONDS):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await wait_until(lambda: _someone_blocks(client), timeout=HANG_GUARD_SECONDS)
                assert not woken.is_set()
                await enqueuing.add([new_job()])
                await woken.wait()


async def _someone_blocks(client: redis.asyncio.Redis) -> bool:
    return any(entry.get("cmd") == "blpop" for entry in await client.client_list())


async def test_an_idle_wait_never_outlasts_the_fallback_poll(prefix: str) -> None:
    # Nothing is due and nothing signals: the wait still ends after one short poll.
    async with opened(prefix) as store:
        with anyio.fail_after(HANG_GUARD_SECONDS):
            await store.wait_for_work(3600)


# -- connection loss ----------------------------------------------------------------


async def test_the_store_recovers_by_itself_after_a_connection_cut(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store_module, "MAX_SIGNAL_WAIT_SECONDS", NO_FALLBACK_POLL_SECONDS)
    with in_front_of(REDIS_URL) as proxy:
        async with opened(prefix, through(REDIS_URL, proxy)) as store, opened(prefix) as direct:
            await store.add([new_job()])
            await store.wait_for_work(1)  # the blocking pool has a connection now
            proxy.refuse()
            with pytest.raises(StoreUnavailableError):
                await store.count_by_state(utcnow())
            with pytest.raises(StoreUnavailableError):
                await store.wait_for_work(1)
            proxy.restore()

            async def serving() -> bool:
                try:
                    counts = await store.count_by_state(utcnow())
                except StoreUnavailableError:
                    return False
                return counts[JobState.ENQUEUED] == 1

            await wait_until(serving, timeout=HANG_GUARD_SECONDS)
            assert len(await store.claim("worker", 10, LEASE)) == 1

            # The blocking connection came back too: a signal still ends a wait.
            woken = anyio.Event()

            async def waiter() -> None:
                await store.wait_for_work(NO_FALLBACK_POLL_SECONDS)
                woken.set()

            with anyio.fail_after(HANG_GUARD_SECONDS):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(waiter)
                    async with raw_redis() as client:
                        await wait_until(lambda: _someone_blocks(client), HANG_GUARD_SECONDS)
                    await direct.add([new_job()])
                    await woken.wait()


async def test_an_add_whose_reply_was_lost_answers_as_the_first_send_would_have(
    prefix: str,
) -> None:
    # The server stored the jobs, then the connection died before its reply
    # arrived: the store sends the add once more on a new connection, and that
    # second send must neither refuse the jobs the first stored nor store more.
    with in_front_of(REDIS_URL) as proxy:
        async with opened(prefix, through(REDIS_URL, proxy)) as store, opened(prefix) as direct:
            holder = new_job(unique_key="k1", unique_scope=UniqueScope.ACTIVE)
            await store.add([holder])
            fresh = new_job(unique_key="k2", unique_scope=UniqueScope.ACTIVE)
            duplicate = new_job(unique_key="k1", unique_scope=UniqueScope.ACTIVE)
            plain = new_job()

            proxy.lose_next_reply()
            with anyio.fail_after(HANG_GUARD_SECONDS):
                answer = await store.add([fresh, duplicate, plain])

            assert answer == [fresh.id, holder.id, plain.id]
            assert await direct.get(duplicate.id) is None
            counts = await direct.count_by_state(utcnow())
            assert counts[JobState.ENQUEUED] == 3
            # A later add of a stored id is still refused: only a send again is replayed.
            with pytest.raises(DuplicateJobError):
                await store.add([plain])


async def test_a_claim_whose_reply_was_lost_gets_the_jobs_it_took(prefix: str) -> None:
    with in_front_of(REDIS_URL) as proxy:
        async with opened(prefix, through(REDIS_URL, proxy)) as store, opened(prefix) as direct:
            jobs = [new_job() for _ in range(3)]
            await store.add(jobs)

            await claim_answered_after_a_lost_reply(store, direct, proxy, jobs, HANG_GUARD_SECONDS)

            # A claim that took nothing, its reply lost, is sent again.
            proxy.lose_next_reply()
            with anyio.fail_after(HANG_GUARD_SECONDS):
                assert await store.claim("worker-1", 2, LEASE, queues=["empty"]) == []
            # Only the last claim of its token is answered again: the next
            # claim takes the job left.
            [last] = await store.claim("worker-1", 2, LEASE)
            assert last.id == jobs[2].id


async def test_a_workers_last_claim_is_forgotten_with_the_worker(prefix: str) -> None:
    # Kept for a claim_again after a lost reply: one entry per worker, which
    # goes when the worker stops or its heartbeats go stale.
    async with opened(prefix) as store, raw_redis() as client:
        claims = "{" + prefix + "}:claims"
        now = utcnow()
        stale = now - timedelta(seconds=2 * STALE_WORKER_SECONDS)
        await store.heartbeat(WorkerInfo("stale", "host", 1, started_at=stale, last_seen_at=stale))
        await store.add([new_job(), new_job()])
        for worker in ("stale", "stopped"):
            assert len(await store.claim(worker, 1, LEASE)) == 1
        assert sorted(await client.hkeys(claims)) == ["stale", "stopped"]

        await store.remove_worker("stopped")
        await store.heartbeat(WorkerInfo("live", "host", 2, started_at=now, last_seen_at=now))

        assert await client.hkeys(claims) == []


async def test_an_outcome_whose_reply_was_lost_is_answered_as_applied_once(prefix: str) -> None:
    with in_front_of(REDIS_URL) as proxy:
        async with opened(prefix, through(REDIS_URL, proxy)) as store, opened(prefix) as direct:
            await store.add([new_job()])
            [claimed] = await store.claim("worker-1", 1, LEASE)
            await outcome_answered_once_after_a_lost_reply(
                store,
                direct,
                proxy,
                "worker-1",
                succeeded(claimed, claimed.lease_token),
                HANG_GUARD_SECONDS,
            )


async def test_an_operator_move_whose_reply_was_lost_answers_as_made(prefix: str) -> None:
    # Sent again, a cancel, a retry or a delete that was made would be refused:
    # the job is no longer cancellable or dead, or no longer there.
    with in_front_of(REDIS_URL) as proxy:
        async with opened(prefix, through(REDIS_URL, proxy)) as store, opened(prefix) as direct:
            cancelled, deleted = new_job(), new_job()
            retried = new_job()
            await store.add([cancelled, deleted, retried])
            # A job out of the pending states, for a move back into them.
            await direct.transition(retried.id, (JobState.ENQUEUED,), JobState.CANCELLED, utcnow())

            proxy.lose_next_reply()
            with anyio.fail_after(HANG_GUARD_SECONDS):
                moved = await store.transition(
                    cancelled.id, (JobState.ENQUEUED,), JobState.CANCELLED, utcnow()
                )
            proxy.lose_next_reply()
            with anyio.fail_after(HANG_GUARD_SECONDS):
                requeued = await store.transition(
                    retried.id, (JobState.CANCELLED,), JobState.ENQUEUED, utcnow()
                )
            proxy.lose_next_reply()
            with anyio.fail_after(HANG_GUARD_SECONDS):
                assert await store.delete(deleted.id)

            assert moved is not None
            assert moved.state is JobState.CANCELLED
            stored = await direct.get(cancelled.id)
            assert stored is not None
            assert stored.state is JobState.CANCELLED
            assert requeued is not None
            assert requeued.state is JobState.ENQUEUED
            again = await direct.get(retried.id)
            assert again is not None
            assert again.state is JobState.ENQUEUED
            assert await direct.get(deleted.id) is None
            # A move that was not made is still refused, and still answered.
            assert (
                await store.transition(
                    cancelled.id, (JobState.ENQUEUED,), JobState.CANCELLED, utcnow()
                )
                is None
            )
            assert not await store.delete(deleted.id)


async def test_an_outage_raises_store_unavailable_and_the_store_recovers_by_itself(
    prefix: str,
) -> None:
    address = urlsplit(REDIS_URL)
    async with redis_user() as (user, password):
        with in_front_of(REDIS_URL) as proxy:
            url = f"redis://{user}:{password}@127.0.0.1:{proxy.port}{address.path}"
            async with opened(prefix, url, **OUTAGE_TIMEOUTS) as store:
                kept = new_job()
                await store.add([kept])
                proxy.refuse()
                calls: dict[str, Callable[[], Awaitable[object]]] = {
                    "add": lambda: store.add([new_job()]),
                    "claim": lambda: store.claim("worker", 10, LEASE),
                    "get": lambda: store.get(kept.id),
                }
                for name, call in calls.items():
                    with (
                        anyio.fail_after(HANG_GUARD_SECONDS),
                        pytest.raises(StoreUnavailableError) as caught,
                    ):
                        await call()
                    message = str(caught.value)
                    assert "redis store" in message, name
                    assert f"redis://127.0.0.1:{proxy.port}{address.path}" in message, name
                    assert "MASA_JOBS_STORE__URL" in message, name
                    assert password not in message, name
                    # The driver's error stays attached, for the logs.
                    assert isinstance(caught.value.__cause__, Exception), name
                    assert not isinstance(caught.value.__cause__, StoreUnavailableError), name
                proxy.restore()

                async def serving() -> bool:
                    try:
                        return await store.get(kept.id) is not None
                    except StoreUnavailableError:
                        return False

                await wait_until(serving, timeout=HANG_GUARD_SECONDS)
                await store.add([new_job()])
                assert len(await store.claim("worker", 10, LEASE)) == 2
                # An error that is not about the connection is a DuplicateJobError.
                with pytest.raises(DuplicateJobError):
                    await store.add([kept])


async def test_a_cancelled_wait_ends_cancelled_not_unavailable(prefix: str) -> None:
    async with opened(prefix) as store:
        # Nothing is due: the wait blocks in BLPOP until it is cancelled.
        with anyio.fail_after(HANG_GUARD_SECONDS), anyio.move_on_after(0.2) as scope:
            await store.wait_for_work(NO_FALLBACK_POLL_SECONDS)
        assert scope.cancelled_caught
        await store.add([new_job()])
        await store.wait_for_work(NO_FALLBACK_POLL_SECONDS)  # a job is due: returns at once


async def test_flushed_scripts_are_loaded_again(prefix: str) -> None:
    # What a server restart does to the script cache; the store carries on.
    async with opened(prefix) as store, raw_redis() as client:
        await client.script_flush()
        await store.add([new_job()])
        assert (await store.count_by_state(utcnow()))[JobState.ENQUEUED] == 1
        # Each script is loaded again when first called: the claim's too.
        assert len(await store.claim("worker", 10, LEASE)) == 1
