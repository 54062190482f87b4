"""What only the PostgreSQL store does: its errors, schema, wake-up and recovery."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import anyio
import asyncpg
import pytest

from containers import BackgroundJobContainer
from masa_jobs import JobState, MasaApp
from masa_jobs.exceptions import (
    ConfigurationError,
    SchemaVersionError,
    StoreError,
    StoreUnavailableError,
)
from masa_jobs.records import JobOutcome, JobRecord, utcnow
from masa_jobs.stores._postgres_sql import SCHEMA_VERSION
from masa_jobs.stores.postgres import PostgresJobStore
from tests.services import POSTGRES_DSN, require_service, unique_name

from .app import Work
from .conftest import _drop_postgres_schema
from .harness import wait_until
from .tcp_proxy import TcpProxy

pytestmark = pytest.mark.anyio

# Generous bounds on conditions, for a loaded machine: never timings asserted.
PROMPTLY = 10.0
LONG_WAIT = 120.0
# Small store timeouts for outage tests: a call fails within them.
OUTAGE_TIMEOUTS = {"connect_timeout": 1, "command_timeout": 2}


def _fresh_schema() -> Iterator[str]:
    require_service("PostgreSQL", POSTGRES_DSN)
    name = unique_name()
    yield name
    _drop_postgres_schema(name)


schema = pytest.fixture(_fresh_schema, name="schema")
other_schema = pytest.fixture(_fresh_schema, name="other_schema")


def store_for(schema: str, **settings: Any) -> PostgresJobStore:
    return PostgresJobStore.from_settings({"dsn": POSTGRES_DSN, "schema": schema, **settings})


@asynccontextmanager
async def opened(schema: str, **settings: Any) -> AsyncIterator[PostgresJobStore]:
    store = store_for(schema, **settings)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


@asynccontextmanager
async def raw_connection() -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(POSTGRES_DSN)
    try:
        yield connection
    finally:
        await connection.close()


def job(*, delay: float = 0.0, name: str = "integration-work", payload: str = "{}") -> JobRecord:
    now = utcnow()
    return JobRecord(
        id=uuid4().hex,
        name=name,
        payload=payload,
        state=JobState.SCHEDULED if delay else JobState.ENQUEUED,
        created_at=now,
        next_try_at=now + timedelta(seconds=delay),
    )


def through_proxy(port: int) -> tuple[str, str]:
    """POSTGRES_DSN pointed at a proxy on ``port``, and the password it carries: its
    own, or an added one that the test server's trust authentication ignores."""
    parts = urlsplit(POSTGRES_DSN)
    password = parts.password or "pr0xy-s3cret"
    netloc = f"{parts.username or 'postgres'}:{password}@127.0.0.1:{port}"
    return urlunsplit(parts._replace(netloc=netloc)), password


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# -- configuration and bad addresses -------------------------------------------------


def test_a_missing_dsn_names_the_setting_and_its_variable() -> None:
    container = BackgroundJobContainer()
    container.config.from_dict({"store": {"backend": "postgres"}})

    with pytest.raises(ConfigurationError, match=r"store\.dsn .*MASA_JOBS_STORE__DSN"):
        container.job_store()


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"schema": 'jobs"; DROP TABLE users; --'}, "store.schema"),
        ({"schema": "Jobs"}, "store.schema"),
        ({"schema": "x" * 49}, "store.schema"),
        ({"connect_timeout": 0}, "store.connect_timeout"),
        ({"pool_min_size": 5, "pool_max_size": 2}, "pool_min_size"),
        ({"table_prefix": "x"}, "store.table_prefix"),
    ],
)
def test_bad_settings_are_refused_before_anything_connects(
    settings: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        PostgresJobStore.from_settings({"backend": "postgres", "dsn": POSTGRES_DSN, **settings})


def test_settings_from_environment_strings_are_accepted() -> None:
    store = PostgresJobStore.from_settings(
        {
            "backend": "postgres",
            "dsn": "postgresql://u:secret@db.example:5433/jobs",
            "schema": "my_jobs",
            "connect_timeout": "2.5",
            "pool_max_size": "4",
            "relaxed_commit": "false",
        }
    )
    assert "secret" not in repr(store)
    assert "db.example:5433/jobs" in repr(store)


async def test_an_unreachable_server_is_a_clear_error_at_lifespan() -> None:
    port = free_port()
    container = BackgroundJobContainer()
    container.config.from_dict(
        {
            "store": {
                "backend": "postgres",
                "dsn": f"postgresql://masa:s3cret@127.0.0.1:{port}/jobs",
                "connect_timeout": 2,
            },
            "options": {"disable_background_job": True},
        }
    )
    MasaApp.build(container)

    with anyio.fail_after(LONG_WAIT), pytest.raises(StoreUnavailableError) as caught:
        async with MasaApp.lifespan():
            pass

    message = str(caught.value)
    assert "PostgreSQL" in message
    assert f"127.0.0.1:{port}/jobs" in message
    assert "MASA_JOBS_STORE__DSN" in message
    assert "s3cret" not in message


async def test_a_server_that_never_answers_fails_after_the_connect_timeout() -> None:
    # Accepts TCP connections (the kernel's backlog does) but never speaks.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        store = PostgresJobStore.from_settings(
            {"dsn": f"postgresql://masa@127.0.0.1:{port}/jobs", "connect_timeout": 0.5}
        )

        with anyio.fail_after(LONG_WAIT), pytest.raises(StoreUnavailableError) as caught:
            await store.open()

    assert f"127.0.0.1:{port}/jobs" in str(caught.value)
    assert "no answer within 0.5 s" in str(caught.value)
    with pytest.raises(StoreError, match="not open"):
        await store.get("anything")


# -- schema ------------------------------------------------------------------------------


async def test_first_open_creates_a_versioned_schema_and_reopening_keeps_it(schema: str) -> None:
    async with opened(schema) as store:
        await store.add([job()])
        await store.open()  # idempotent
    async with opened(schema) as again:
        assert len(await again.list()) == 1
    await again.aclose()  # idempotent

    async with raw_connection() as connection:
        versions = await connection.fetch(f'SELECT version FROM "{schema}".schema_version')
    assert [row["version"] for row in versions] == [SCHEMA_VERSION]


async def test_concurrent_first_opens_by_many_processes_do_not_fail(schema: str) -> None:
    stores = [store_for(schema, pool_min_size=1, pool_max_size=1) for _ in range(6)]
    try:
        with anyio.fail_after(LONG_WAIT):
            async with anyio.create_task_group() as tg:
                for store in stores:
                    tg.start_soon(store.open)
        await stores[0].add([job()])
        assert len(await stores[-1].list()) == 1
    finally:
        for store in stores:
            await store.aclose()

    async with raw_connection() as connection:
        rows = await connection.fetchval(f'SELECT count(*) FROM "{schema}".schema_version')
    assert rows == 1


async def test_a_schema_from_a_newer_version_is_refused(schema: str) -> None:
    async with opened(schema):
        pass
    async with raw_connection() as connection:
        await connection.execute(
            f'INSERT INTO "{schema}".schema_version (version) VALUES ($1)', SCHEMA_VERSION + 1
        )
    store = store_for(schema)

    with pytest.raises(SchemaVersionError) as caught:
        await store.open()

    assert f"version {SCHEMA_VERSION + 1}" in str(caught.value)
    assert "upgrade masa-jobs" in str(caught.value)
    with pytest.raises(StoreError, match="not open"):
        await store.list()


async def test_schemas_keep_their_jobs_apart(schema: str, other_schema: str) -> None:
    async with opened(schema) as mine, opened(other_schema) as theirs:
        await mine.add([job()])
        assert await theirs.list() == []
        assert await theirs.claim("worker-1", 10, utcnow(), timedelta(seconds=30)) == []


async def test_strict_commit_mode_works_and_relaxed_mode_leaves_the_session_alone(
    schema: str,
) -> None:
    lease = timedelta(seconds=30)
    for relaxed in (False, True):
        async with opened(schema, relaxed_commit=relaxed, pool_max_size=1) as store:
            await store.add([job()])
            [claimed] = await store.claim("worker-1", 1, utcnow(), lease)
            await store.extend_leases("worker-1", [claimed.id], utcnow() + lease)
            done = JobOutcome(
                claimed.id, JobState.SUCCEEDED, claimed.attempts, utcnow(), finished_at=utcnow()
            )
            assert await store.finish("worker-1", [done]) == 1
            # The one pooled connection ran those statements: its session setting is intact.
            assert await store._require_pool().fetchval("SHOW synchronous_commit") == "on"


# -- wake-up -----------------------------------------------------------------------------


async def add_until_woken(enqueuer: PostgresJobStore, woken: anyio.Event) -> None:
    """Add jobs due in an hour until ``woken``: only a notification can wake the
    waiter's hour-long wait. Adding again covers a notification that raced
    the waiter's start."""
    with anyio.fail_after(PROMPTLY):
        while not woken.is_set():
            await enqueuer.add([job(delay=3600)])
            with anyio.move_on_after(0.5):
                await woken.wait()


async def test_an_add_elsewhere_wakes_an_idle_waiter_through_notify(schema: str) -> None:
    async with opened(schema) as waiter_store, opened(schema) as enqueuer:
        await waiter_store.wait_for_work(0)  # opens the LISTEN connection
        woken = anyio.Event()

        async def waiter() -> None:
            await waiter_store.wait_for_work(3600)
            woken.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await add_until_woken(enqueuer, woken)


async def test_the_listen_connection_comes_back_after_it_is_killed(
    schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    async def listener_pids(connection: asyncpg.Connection) -> list[int]:
        # This test's listeners: the only ones whose queries name its schema.
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'masa-jobs listener' "
            "AND state = 'idle' AND strpos(query, $1) > 0",
            f'"{schema}"',
        )
        return [row["pid"] for row in rows]

    async with (
        opened(schema) as waiter_store,
        opened(schema) as enqueuer,
        raw_connection() as admin,
    ):
        await waiter_store.wait_for_work(0)
        [first] = await listener_pids(admin)
        with caplog.at_level(logging.WARNING, "masa_jobs.stores.postgres"):
            await admin.execute("SELECT pg_terminate_backend($1)", first)
            # The store notices the loss when asyncpg reads the closed socket.
            await wait_until(_logged(caplog, "lost the LISTEN connection"), timeout=PROMPTLY)

        woken = anyio.Event()

        async def waiter() -> None:
            await waiter_store.wait_for_work(3600)
            woken.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await wait_until(lambda: _has_listener(admin, listener_pids), timeout=PROMPTLY)
            await add_until_woken(enqueuer, woken)
        assert (await listener_pids(admin)) != [first]


def _logged(caplog: pytest.LogCaptureFixture, text: str) -> Callable[[], Awaitable[bool]]:
    async def found() -> bool:
        return text in caplog.text

    return found


async def _has_listener(admin: asyncpg.Connection, pids: Any) -> bool:
    return bool(await pids(admin))


async def test_without_a_listen_connection_a_waiter_polls_within_a_second(
    schema: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def refuse(*args: object, **kwargs: object) -> None:
        raise ConnectionRefusedError("the test refuses LISTEN connections")

    async with opened(schema) as store:
        # The pool is open; only the dedicated LISTEN connection fails.
        monkeypatch.setattr(asyncpg, "connect", refuse)
        with caplog.at_level(logging.WARNING, "masa_jobs.stores.postgres"):
            with anyio.fail_after(PROMPTLY):
                await store.wait_for_work(3600)
        assert "cannot listen for new jobs" in caplog.text


# -- recovery and bad records ----------------------------------------------------------------


async def test_an_outage_raises_store_unavailable_and_the_store_recovers_by_itself(
    schema: str,
) -> None:
    target = urlsplit(POSTGRES_DSN)
    with TcpProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        dsn, password = through_proxy(proxy.port)
        store = PostgresJobStore.from_settings({"dsn": dsn, "schema": schema, **OUTAGE_TIMEOUTS})
        await store.open()
        try:
            kept = job()
            await store.add([kept])
            proxy.cut()
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "add": lambda: store.add([job()]),
                "claim": lambda: store.claim("worker-1", 10, utcnow(), timedelta(seconds=30)),
                "get": lambda: store.get(kept.id),
            }
            for name, call in calls.items():
                with anyio.fail_after(PROMPTLY), pytest.raises(StoreUnavailableError) as caught:
                    await call()
                message = str(caught.value)
                assert "PostgreSQL store" in message, name
                assert f"127.0.0.1:{proxy.port}{target.path}" in message, name
                assert "MASA_JOBS_STORE__DSN" in message, name
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

            await wait_until(serving, timeout=LONG_WAIT)
            await store.add([job()])
            assert len(await store.claim("worker-1", 10, utcnow(), timedelta(seconds=30))) == 2
            # An error that is not about the connection keeps its own type.
            with pytest.raises(asyncpg.UniqueViolationError):
                await store.add([kept])
        finally:
            await store.aclose()


async def test_a_cancelled_call_ends_cancelled_not_unavailable(schema: str) -> None:
    async with opened(schema) as store, raw_connection() as admin:
        held = job()
        await store.add([held])
        async with admin.transaction():
            # The row lock makes the store's update wait until it is cancelled.
            await admin.execute(f'SELECT 1 FROM "{schema}".jobs WHERE id = $1 FOR UPDATE', held.id)
            with anyio.fail_after(PROMPTLY), anyio.move_on_after(0.5) as scope:
                await store.transition(held.id, [JobState.ENQUEUED], JobState.CANCELLED, utcnow())
            assert scope.cancelled_caught
        assert await store.get(held.id) is not None


async def test_the_store_recovers_by_itself_when_its_connections_are_killed(schema: str) -> None:
    application = unique_name("masa_app")
    dsn = f"{POSTGRES_DSN}?application_name={application}"
    store = PostgresJobStore.from_settings({"dsn": dsn, "schema": schema, "pool_min_size": 2})
    await store.open()
    try:
        kept = job()
        await store.add([kept])
        await store.wait_for_work(0)
        async with raw_connection() as admin:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = $1",
                application,
            )
            assert killed >= 2

        # Calls may fail while connections are found dead; none needs a restart.
        async def works() -> bool:
            try:
                return await store.get(kept.id) is not None
            except Exception:
                return False

        await wait_until(works, timeout=LONG_WAIT)
        await store.add([job()])
        assert len(await store.claim("worker-1", 10, utcnow(), timedelta(seconds=30))) == 2
    finally:
        await store.aclose()


async def test_a_corrupt_record_ends_dead_and_the_worker_carries_on(schema: str) -> None:
    container = BackgroundJobContainer()
    container.config.from_dict(
        {
            "store": {"backend": "postgres", "dsn": POSTGRES_DSN, "schema": schema},
            "options": {"poll_interval": 0.5},
        }
    )
    MasaApp.build(container)
    async with MasaApp.lifespan():
        manager = MasaApp.job_manager()
        corrupt_id = uuid4().hex
        async with raw_connection() as connection:
            await connection.execute(
                f'INSERT INTO "{schema}".jobs (id, name, payload, state, created_at, next_try_at) '
                "VALUES ($1, 'integration-work', '{\"key\": \"bro', 'enqueued', now(), now())",
                corrupt_id,
            )
        good = await manager.enqueue_many((Work(key=f"good-{i}"), None) for i in range(5))

        async def settled() -> bool:
            infos = [await manager.get(job_id) for job_id in [corrupt_id, *good]]
            return all(info is not None and info.state.is_finished for info in infos)

        await wait_until(settled, timeout=LONG_WAIT)
        dead = await manager.get(corrupt_id)
        assert dead is not None
        assert dead.state is JobState.DEAD
        assert dead.attempts == 1
        assert dead.last_error is not None
        assert "no longer validate" in dead.last_error
        for job_id in good:
            info = await manager.get(job_id)
            assert info is not None
            assert info.state is JobState.SUCCEEDED

        # The worker is still running: a job enqueued afterwards succeeds too.
        later = await manager.enqueue(Work(key="later"))
        await wait_until(lambda: _succeeded(manager, later), timeout=LONG_WAIT)
        assert container.worker().running


async def _succeeded(manager: Any, job_id: str) -> bool:
    info = await manager.get(job_id)
    return info is not None and info.state is JobState.SUCCEEDED
