"""The Redis store against a real server: what the contract suite cannot show."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit
from uuid import uuid4

import anyio
import pytest
import redis.asyncio
from redis.exceptions import ResponseError

from containers import BackgroundJobContainer
from masa_jobs import JobManager, JobState, MasaApp
from masa_jobs.exceptions import ConfigurationError, StoreError, StoreUnavailableError
from masa_jobs.records import JobRecord, WorkerInfo, utcnow
from masa_jobs.stores import redis as redis_store_module
from masa_jobs.stores.redis import RedisJobStore
from tests.services import REDIS_URL, require_service, unique_name

from .app import Work
from .conftest import _delete_redis_prefix
from .harness import wait_until
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.anyio

# A test that waits on the wake-up signal alone sets the store's fallback poll
# this long, so that only the signal can end the wait.
NO_FALLBACK_POLL_SECONDS = 60.0
# Guards against a hang; far above what any step should take, even under load.
HANG_GUARD_SECONDS = 20.0
LEASE = timedelta(seconds=30)
# Small store timeouts for outage tests: a call fails within them.
OUTAGE_TIMEOUTS = {"connect_timeout": 1, "command_timeout": 2}


@pytest.fixture
def prefix() -> Iterator[str]:
    require_service("Redis", REDIS_URL)
    name = unique_name()
    yield name
    _delete_redis_prefix(name)


@pytest.fixture
def other_prefix() -> Iterator[str]:
    name = unique_name()
    yield name
    _delete_redis_prefix(name)


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
async def redis_user() -> AsyncIterator[tuple[str, str]]:
    """A Redis user with a password, removed afterwards: a URL with a secret to keep."""
    name, password = unique_name("masa_user"), uuid4().hex
    async with raw_redis() as client:
        await client.acl_setuser(
            name,
            enabled=True,
            passwords=[f"+{password}"],
            categories=["+@all"],
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
    """A pending job written with plain commands, as the module docstring lays it out;
    a field given as None is left out."""
    job_id = uuid4().hex
    now_us = str(int(utcnow().timestamp() * 1_000_000))
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
    # Member: 8 hex digits of attempts, 16 of the insertion counter, then the id.
    await client.zadd(f"{tag}pending", {f"{0:08x}{0:016x}{job_id}": now_us})
    return job_id


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


# -- key prefixes -------------------------------------------------------------------


async def test_stores_with_different_prefixes_share_nothing(prefix: str, other_prefix: str) -> None:
    async with opened(prefix) as mine, opened(other_prefix) as theirs, raw_redis() as client:
        job = new_job()
        await mine.add([job])
        now = utcnow()
        await mine.heartbeat(WorkerInfo("w", "host", 1, started_at=now, last_seen_at=now))

        assert await theirs.get(job.id) is None
        assert await theirs.list() == []
        assert sum((await theirs.count_by_state(utcnow())).values()) == 0
        assert await theirs.claim("worker", 10, utcnow(), LEASE) == []
        assert await theirs.list_workers(now - LEASE) == []
        assert [record.id for record in await mine.list()] == [job.id]

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
    address = urlsplit(REDIS_URL)
    assert address.hostname is not None
    assert address.port is not None
    with TcpProxy(address.hostname, address.port) as proxy:
        proxied = REDIS_URL.replace(f"{address.hostname}:{address.port}", f"127.0.0.1:{proxy.port}")
        async with opened(prefix, proxied) as store, opened(prefix) as direct:
            await store.add([new_job()])
            await store.wait_for_work(1)  # the blocking pool has a connection now
            proxy.cut()
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
            assert len(await store.claim("worker", 10, utcnow(), LEASE)) == 1

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


async def test_an_outage_raises_store_unavailable_and_the_store_recovers_by_itself(
    prefix: str,
) -> None:
    address = urlsplit(REDIS_URL)
    assert address.hostname is not None
    assert address.port is not None
    async with redis_user() as (user, password):
        with TcpProxy(address.hostname, address.port) as proxy:
            url = f"redis://{user}:{password}@127.0.0.1:{proxy.port}{address.path}"
            async with opened(prefix, url, **OUTAGE_TIMEOUTS) as store:
                kept = new_job()
                await store.add([kept])
                proxy.cut()
                calls: dict[str, Callable[[], Awaitable[object]]] = {
                    "add": lambda: store.add([new_job()]),
                    "claim": lambda: store.claim("worker", 10, utcnow(), LEASE),
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
                assert len(await store.claim("worker", 10, utcnow(), LEASE)) == 2
                # An error that is not about the connection keeps its own type.
                with pytest.raises(ResponseError, match="exists already"):
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
