"""What only the PostgreSQL store does: its errors, schema, wake-up, recovery, and
fenced leases on the server's clock under concurrency."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit
from uuid import uuid4

import anyio
import asyncpg
import pytest
from masa_jobs.containers import BackgroundJobContainer

from masa_jobs import JobQuery, JobState, MasaApp, UniqueScope
from masa_jobs.exceptions import (
    ConfigurationError,
    DuplicateJobError,
    SchemaVersionError,
    StoreError,
    StoreRejectedError,
    StoreUnavailableError,
)
from masa_jobs.records import FINISHED_STATES, JobOutcome, JobRecord, ScheduleRecord, utcnow
from masa_jobs.stores import postgres
from masa_jobs.stores._postgres_sql import SCHEMA_VERSION, advisory_lock_key, migrations
from masa_jobs.stores.postgres import PostgresJobStore
from tests.listing import all_jobs
from tests.services import POSTGRES_DSN, unique_name
from tests.tcp_proxy import FaultProxy

from .app import Work
from .harness import wait_until
from .lost_replies import (
    claim_answered_after_a_lost_reply,
    outcome_answered_once_after_a_lost_reply,
)

pytestmark = pytest.mark.anyio

# Generous bounds on conditions, for a loaded machine: never timings asserted.
PROMPTLY = 10.0
LONG_WAIT = 120.0
# Small store timeouts for outage tests: a call fails within them.
OUTAGE_TIMEOUTS = {"connect_timeout": 1, "command_timeout": 2}
LEASE = timedelta(seconds=30)


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


def job(
    *,
    delay: float = 0.0,
    name: str = "integration-work",
    payload: str = "{}",
    skew: timedelta = timedelta(0),
) -> JobRecord:
    """A new job due after ``delay`` seconds, made by a caller whose clock is off by ``skew``."""
    now = utcnow() + skew
    return JobRecord(
        id=uuid4().hex,
        name=name,
        payload=payload,
        state=JobState.SCHEDULED if delay else JobState.ENQUEUED,
        created_at=now,
        next_try_at=now + timedelta(seconds=delay),
    )


def lease_of(*records: JobRecord) -> dict[str, str]:
    """What ``extend_leases`` takes for jobs a claim returned: id -> lease token."""
    leases = {}
    for record in records:
        assert record.lease_token is not None
        leases[record.id] = record.lease_token
    return leases


def succeeded(record: JobRecord) -> JobOutcome:
    return JobOutcome(
        record.id,
        JobState.SUCCEEDED,
        record.attempts,
        utcnow(),
        finished_at=utcnow(),
        lease_token=record.lease_token,
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
        assert len(await all_jobs(again)) == 1
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
        assert len(await all_jobs(stores[-1])) == 1
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
        await all_jobs(store)


# The tables as masa-jobs created them at schema version 1, verbatim: the
# starting point of every deployment that upgrades in place.
_VERSION_1_TABLES = """
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE {s}.schema_version (
    version integer NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE {s}.jobs (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id text PRIMARY KEY,
    name text NOT NULL,
    payload text NOT NULL,
    state text NOT NULL CHECK (state IN ('scheduled', 'enqueued', 'processing', 'succeeded',
                                         'dead', 'cancelled')),
    created_at timestamptz NOT NULL,
    next_try_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_try_at timestamptz,
    last_error text,
    done_handlers jsonb NOT NULL DEFAULT '[]',
    lease_owner text,
    lease_expires_at timestamptz,
    finished_at timestamptz
) WITH (autovacuum_vacuum_scale_factor = 0.02);
CREATE INDEX jobs_due ON {s}.jobs (next_try_at, attempts, seq)
    WHERE state IN ('scheduled', 'enqueued');
CREATE INDEX jobs_leases ON {s}.jobs (lease_expires_at) WHERE state = 'processing';
CREATE INDEX jobs_finished ON {s}.jobs (finished_at)
    WHERE state IN ('succeeded', 'dead', 'cancelled');
CREATE TABLE {s}.schedules (
    id text PRIMARY KEY,
    job_class text NOT NULL,
    cron_expression text NOT NULL,
    timezone text NOT NULL,
    next_fire_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    last_fire_at timestamptz
);
CREATE TABLE {s}.workers (
    id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    running_jobs integer NOT NULL
);
INSERT INTO {s}.schema_version (version) VALUES (1);
"""


async def test_a_version_1_schema_is_migrated_in_place_and_keeps_its_jobs(schema: str) -> None:
    waiting, held = job(), job()
    async with raw_connection() as connection:
        await connection.execute(_VERSION_1_TABLES.format(s=f'"{schema}"'))
        # A job waiting, and one a version-1 worker held when it was cut off.
        await connection.execute(
            f'INSERT INTO "{schema}".jobs (id, name, payload, state, created_at, next_try_at, '
            "attempts, lease_owner, lease_expires_at) VALUES "
            "($1, 'integration-work', '{}', 'enqueued', now(), now(), 0, NULL, NULL), "
            "($2, 'integration-work', '{}', 'processing', now(), now(), 1, 'old-worker', now())",
            waiting.id,
            held.id,
        )

    async with opened(schema) as store:
        # The old worker's job has no token: it is due again once its lease ends.
        before = await _stored(store, held.id)
        assert (before.state, before.lease_owner, before.lease_token) == (
            JobState.PROCESSING,
            "old-worker",
            None,
        )
        claimed = await store.claim("worker-1", 10, LEASE)
    async with opened(schema):  # a second open finds the current version and migrates nothing
        pass

    assert {record.id for record in claimed} == {waiting.id, held.id}
    assert all(record.lease_token for record in claimed)
    assert {record.id: record.attempts for record in claimed} == {waiting.id: 1, held.id: 2}
    async with raw_connection() as connection:
        column = await connection.fetchval(
            "SELECT data_type FROM information_schema.columns "
            "WHERE table_schema = $1 AND table_name = 'jobs' AND column_name = 'lease_token'",
            schema,
        )
        versions = await connection.fetch(
            f'SELECT version FROM "{schema}".schema_version ORDER BY version'
        )
    assert column == "text"
    assert [row["version"] for row in versions] == [1, 2, 3, 4, 5]
    assert SCHEMA_VERSION == 5


async def test_a_version_2_schema_is_migrated_in_place_to_schedule_payloads(
    schema: str,
) -> None:
    async with raw_connection() as connection:
        # Version 2 is version 1 and its one step.
        await connection.execute(_VERSION_1_TABLES.format(s=f'"{schema}"'))
        await connection.execute(migrations(f'"{schema}"')[1])
        await connection.execute(
            f'INSERT INTO "{schema}".schedules (id, job_class, cron_expression, timezone, '
            "next_fire_at, created_at, updated_at) VALUES "
            "('old', 'app.Nightly', '0 2 * * *', 'UTC', now(), now(), now())"
        )

    async with opened(schema) as store:
        old = await store.get_schedule("old")
        assert old is not None
        # Nor is a schedule stored before the upgrade paused.
        assert (old.job_class, old.payload, old.paused) == ("app.Nightly", None, False)
        moment = await store.now()
        await store.upsert_schedule(
            ScheduleRecord(
                id="new",
                job_class="job:integration-work",
                cron_expression="0 2 * * *",
                timezone="UTC",
                next_fire_at=moment,
                created_at=moment,
                updated_at=moment,
                payload='{"n": 1}',
            )
        )
        new = await store.get_schedule("new")
    async with opened(schema):  # a second open finds the current version and migrates nothing
        pass

    assert new is not None
    assert new.payload == '{"n": 1}'
    async with raw_connection() as connection:
        versions = await connection.fetch(
            f'SELECT version FROM "{schema}".schema_version ORDER BY version'
        )
    assert [row["version"] for row in versions] == [1, 2, 3, 4, 5]


async def test_a_version_3_schema_is_migrated_in_place_to_history_and_listing_indexes(
    schema: str,
) -> None:
    waiting, held, dead = job(), job(), job()
    async with raw_connection() as connection:
        # Version 3 is version 1 and its two steps.
        await connection.execute(_VERSION_1_TABLES.format(s=f'"{schema}"'))
        for step in (1, 2):
            await connection.execute(migrations(f'"{schema}"')[step])
        # A job waiting, one a version-3 worker holds, and one that died: created in turn.
        await connection.execute(
            f'INSERT INTO "{schema}".jobs (id, name, payload, state, created_at, next_try_at, '
            "attempts, last_try_at, lease_owner, lease_expires_at, lease_token, finished_at) "
            "VALUES "
            "($1, 'integration-work', '{}', 'enqueued', now() - interval '3 s', now(), 0, "
            "NULL, NULL, NULL, NULL, NULL), "
            "($2, 'integration-work', '{}', 'processing', now() - interval '2 s', now(), 1, "
            "now(), 'old-worker', now() + interval '1 hour', 'old-token', NULL), "
            "($3, 'integration-work', '{}', 'dead', now() - interval '1 s', now(), 1, "
            "now(), NULL, NULL, NULL, now())",
            waiting.id,
            held.id,
            dead.id,
        )

    async with opened(schema) as store:
        kept = await all_jobs(store)
        # The version-3 worker's outcome still applies, and is the job's first event.
        applied = await store.finish("old-worker", [succeeded(await _stored(store, held.id))])
        after = await _stored(store, held.id)
        dead_jobs = await store.list_jobs(JobQuery.of(JobState.DEAD), await store.now())
    async with opened(schema):  # a second open finds the current version and migrates nothing
        pass

    assert [record.id for record in kept] == [dead.id, held.id, waiting.id]
    assert all(record.headers is None and record.history == () for record in kept)
    assert applied == {held.id}
    assert [(event.state, event.worker) for event in after.history] == [
        (JobState.SUCCEEDED, "old-worker")
    ]
    assert [record.id for record in dead_jobs.items] == [dead.id]
    async with raw_connection() as connection:
        indexes = await connection.fetch(
            "SELECT indexname FROM pg_indexes WHERE schemaname = $1 AND tablename = 'jobs'",
            schema,
        )
        versions = await connection.fetch(
            f'SELECT version FROM "{schema}".schema_version ORDER BY version'
        )
    assert {"jobs_by_state", "jobs_by_name"} <= {row["indexname"] for row in indexes}
    assert [row["version"] for row in versions] == [1, 2, 3, 4, 5]


async def _stored(store: PostgresJobStore, job_id: str) -> JobRecord:
    record = await store.get(job_id)
    assert record is not None
    return record


async def test_schemas_keep_their_jobs_apart(schema: str, other_schema: str) -> None:
    async with opened(schema) as mine, opened(other_schema) as theirs:
        await mine.add([job()])
        assert await all_jobs(theirs) == []
        assert await theirs.claim("worker-1", 10, LEASE) == []


async def test_strict_commit_mode_works_and_relaxed_mode_leaves_the_session_alone(
    schema: str,
) -> None:
    for relaxed in (False, True):
        async with opened(schema, relaxed_commit=relaxed, pool_max_size=1) as store:
            await store.add([job()])
            [claimed] = await store.claim("worker-1", 1, LEASE)
            renewed = await store.extend_leases("worker-1", lease_of(claimed), LEASE)
            assert renewed == {claimed.id}
            assert await store.finish("worker-1", [succeeded(claimed)]) == {claimed.id}
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
    with FaultProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        dsn, password = through_proxy(proxy.port)
        store = PostgresJobStore.from_settings({"dsn": dsn, "schema": schema, **OUTAGE_TIMEOUTS})
        await store.open()
        try:
            kept = job()
            await store.add([kept])
            proxy.refuse()
            calls: dict[str, Callable[[], Awaitable[object]]] = {
                "add": lambda: store.add([job()]),
                "claim": lambda: store.claim("worker-1", 10, LEASE),
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
            assert len(await store.claim("worker-1", 10, LEASE)) == 2
            # An error that is not about the connection is a DuplicateJobError.
            with pytest.raises(DuplicateJobError):
                await store.add([kept])
        finally:
            await store.aclose()


@asynccontextmanager
async def on_one_proxied_connection(
    schema: str,
) -> AsyncIterator[tuple[PostgresJobStore, FaultProxy]]:
    """A store whose one pool connection goes through a proxy. A statement
    prepared on it once is sent alone after: the reply a test loses is then
    the one of the statement that ran."""
    target = urlsplit(POSTGRES_DSN)
    with FaultProxy(target.hostname or "127.0.0.1", target.port or 5432) as proxy:
        dsn, _ = through_proxy(proxy.port)
        settings = {"dsn": dsn, "schema": schema, "pool_min_size": 1, "pool_max_size": 1}
        store = PostgresJobStore.from_settings(settings)
        await store.open()
        try:
            yield store, proxy
        finally:
            await store.aclose()


async def test_a_claim_whose_reply_was_lost_gets_the_jobs_it_took(schema: str) -> None:
    async with on_one_proxied_connection(schema) as (store, proxy), opened(schema) as direct:
        # Prepared on the one connection: the reply lost is the claim's.
        assert await store.claim("worker-1", 2, LEASE) == []
        jobs = [job() for _ in range(3)]
        await store.add(jobs)

        await claim_answered_after_a_lost_reply(store, direct, proxy, jobs, PROMPTLY)


async def test_an_add_whose_reply_was_lost_answers_as_stored_and_stores_once(
    schema: str,
) -> None:
    # Told that nothing was stored, the caller would enqueue the job again;
    # sent again as it was, the add would refuse it as a duplicate of itself.
    async with on_one_proxied_connection(schema) as (store, proxy), opened(schema) as direct:
        await store.add([job()])
        await store.add([job(), job()])
        single, pair = job(), [job(), job()]

        proxy.lose_next_reply()
        with anyio.fail_after(PROMPTLY):
            assert await store.add([single]) == [single.id]
        proxy.lose_next_reply()
        with anyio.fail_after(PROMPTLY):
            assert await store.add(pair) == [record.id for record in pair]

        assert (await direct.count_by_state(utcnow()))[JobState.ENQUEUED] == 6
        # With unique keys the add is a transaction: the reply lost is its
        # first statement's, and nothing was stored before it is sent again.
        holder = replace(job(), unique_key="k1", unique_scope=UniqueScope.ACTIVE)
        await store.add([holder])
        keyed, plain = replace(job(), unique_key="k1", unique_scope=UniqueScope.ACTIVE), job()
        proxy.lose_next_reply()
        with anyio.fail_after(PROMPTLY):
            assert await store.add([keyed, plain]) == [holder.id, plain.id]
        assert await direct.get(keyed.id) is None
        assert (await direct.count_by_state(utcnow()))[JobState.ENQUEUED] == 8
        # A later add of a stored id is still refused: only a lost reply is answered.
        with pytest.raises(DuplicateJobError):
            await store.add([single])


async def test_an_outcome_whose_reply_was_lost_is_answered_as_applied_once(
    schema: str,
) -> None:
    async with on_one_proxied_connection(schema) as (store, proxy), opened(schema) as direct:
        await store.add([job()])
        [claimed] = await store.claim("worker-1", 1, LEASE)
        outcome = succeeded(claimed)
        # Prepared on the one connection: the reply lost is the outcome's.
        assert await store.finish("worker-1", [replace(outcome, lease_token="stale")]) == set()

        await outcome_answered_once_after_a_lost_reply(
            store, direct, proxy, "worker-1", outcome, PROMPTLY
        )


async def test_an_operator_move_whose_reply_was_lost_answers_as_made(schema: str) -> None:
    # Made again, a cancel, a retry or a delete that was made would be refused:
    # the job is no longer cancellable or cancelled, or no longer there.
    async with on_one_proxied_connection(schema) as (store, proxy), opened(schema) as direct:
        cancelled, retried, deleted = job(), job(), job()
        await store.add([cancelled, retried, deleted])
        await direct.transition(retried.id, [JobState.ENQUEUED], JobState.CANCELLED, utcnow())
        # Each statement prepared on the one connection: the replies lost are the moves'.
        unknown = uuid4().hex
        assert (
            await store.transition(unknown, [JobState.ENQUEUED], JobState.CANCELLED, utcnow())
            is None
        )
        assert (
            await store.transition(unknown, [JobState.CANCELLED], JobState.ENQUEUED, utcnow())
            is None
        )
        assert not await store.delete(unknown)

        proxy.lose_next_reply()
        with anyio.fail_after(PROMPTLY):
            moved = await store.transition(
                cancelled.id, [JobState.ENQUEUED], JobState.CANCELLED, utcnow()
            )
        proxy.lose_next_reply()
        with anyio.fail_after(PROMPTLY):
            requeued = await store.transition(
                retried.id, [JobState.CANCELLED], JobState.ENQUEUED, utcnow()
            )
        proxy.lose_next_reply()
        with anyio.fail_after(PROMPTLY):
            assert await store.delete(deleted.id)

        assert moved is not None
        assert moved.state is JobState.CANCELLED
        assert requeued is not None
        assert requeued.state is JobState.ENQUEUED
        for record, state in ((cancelled, JobState.CANCELLED), (retried, JobState.ENQUEUED)):
            stored = await direct.get(record.id)
            assert stored is not None
            assert stored.state is state
            # Made once: one event of the move in the history.
            assert [event.state for event in stored.history].count(state) == 1
        assert await direct.get(deleted.id) is None
        # A move that was not made is still refused.
        assert (
            await store.transition(cancelled.id, [JobState.ENQUEUED], JobState.CANCELLED, utcnow())
            is None
        )
        assert not await store.delete(deleted.id)


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
        assert len(await store.claim("worker-1", 10, LEASE)) == 2
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


# -- fenced leases on the server's clock ----------------------------------------------------

HOURS_OFF = timedelta(hours=3)


async def test_new_jobs_are_rebased_on_the_servers_clock(schema: str) -> None:
    # Callers whose clocks are hours off: "now" and "in 60 s" mean the server's.
    ahead, behind = job(skew=HOURS_OFF), job(delay=60, skew=-HOURS_OFF)
    async with opened(schema) as store:
        before = await store.now()
        await store.add([ahead, behind])
        after = await store.now()

        claimed = await store.claim("worker-1", 10, LEASE)
        waiting = await _stored(store, behind.id)

    assert [record.id for record in claimed] == [ahead.id]
    assert before <= claimed[0].created_at <= after
    assert before <= waiting.created_at <= after
    assert waiting.next_try_at - waiting.created_at == timedelta(seconds=60)


async def test_a_claim_stamps_the_servers_time_and_a_new_token(schema: str) -> None:
    async with opened(schema) as store:
        await store.add([job(), job()])
        before = await store.now()
        claimed = await store.claim("worker-1", 10, LEASE)
        after = await store.now()

    assert len(claimed) == 2
    tokens = {record.lease_token for record in claimed}
    assert len(tokens) == 1  # one claim, one token
    assert None not in tokens
    for record in claimed:
        assert record.last_try_at is not None
        assert record.lease_expires_at is not None
        assert before <= record.last_try_at <= after
        assert record.lease_expires_at - record.last_try_at == LEASE


async def test_an_expired_lease_stays_its_holders_until_claimed_again_unless_excluded(
    schema: str,
) -> None:
    async with opened(schema) as store:
        await store.add([job()])
        [first] = await store.claim("worker-1", 1, timedelta(0))  # expires at once
        # The holder is still running it: its own claims pass it by.
        assert await store.claim("worker-1", 1, LEASE, exclude=[first.id]) == []
        # Expired but not claimed again: the token still holds it.
        assert await store.extend_leases("worker-1", lease_of(first), timedelta(0)) == {first.id}

        [second] = await store.claim("worker-2", 1, LEASE)

        assert (second.id, second.attempts) == (first.id, 2)
        assert second.lease_token != first.lease_token
        assert await store.extend_leases("worker-1", lease_of(first), LEASE) == set()
        assert await store.finish("worker-1", [succeeded(first)]) == set()
        assert (await _stored(store, first.id)).lease_token == second.lease_token
        assert await store.finish("worker-2", [succeeded(second)]) == {second.id}
        done = await _stored(store, second.id)
        assert done.state is JobState.SUCCEEDED
        assert (done.lease_owner, done.lease_expires_at, done.lease_token) == (None, None, None)
        assert done.finished_at is not None


async def test_a_final_outcome_is_stamped_with_the_servers_time(schema: str) -> None:
    async with opened(schema) as store:
        await store.add([job()])
        [claimed] = await store.claim("worker-1", 1, LEASE)
        before = await store.now()
        outcome = replace(succeeded(claimed), finished_at=utcnow() - HOURS_OFF)
        assert await store.finish("worker-1", [outcome]) == {claimed.id}
        after = await store.now()

        finished_at = (await _stored(store, claimed.id)).finished_at

    assert finished_at is not None
    assert before <= finished_at <= after


async def test_the_wait_for_work_is_counted_on_the_servers_clock(schema: str) -> None:
    async with opened(schema) as store:
        pool, wake_ups, every_queue = store._require_pool(), store._wake_ups, store._look_for(None)
        assert await wake_ups.seconds_to_wait(pool, 600, every_queue) == 600  # nothing to wait for
        await store.add([job(delay=300, skew=-HOURS_OFF)])
        # Due in 300 s of the server's time, whatever the caller's clock said.
        assert 0 < await wake_ups.seconds_to_wait(pool, 600, every_queue) <= 300
        await store.add([job(skew=HOURS_OFF)])
        assert await wake_ups.seconds_to_wait(pool, 600, every_queue) <= 0
        with anyio.fail_after(PROMPTLY):
            await store.wait_for_work(3600)


# -- refused values ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_text",
    [
        pytest.param("boom\x00tail", id="nul"),  # the server refuses NUL in text
        pytest.param("boom\ud800tail", id="lone-surrogate"),  # asyncpg cannot encode it
    ],
)
async def test_a_refused_value_in_an_outcome_writes_nothing_of_the_batch(
    schema: str, bad_text: str
) -> None:
    async with opened(schema) as store:
        await store.add([job(), job()])
        claimed = await store.claim("worker-1", 2, LEASE)
        good, bad = (succeeded(record) for record in claimed)
        bad = replace(bad, state=JobState.DEAD, last_error=bad_text)

        with pytest.raises(StoreRejectedError) as caught:
            await store.finish("worker-1", [good, bad])

        message = str(caught.value)
        assert "PostgreSQL store" in message
        assert "finish" in message
        assert "nothing was written" in message
        assert isinstance(caught.value.__cause__, asyncpg.DataError)
        for record in claimed:  # both still held, as claimed
            assert await store.get(record.id) == record
        # The same batch with the value cleaned applies whole.
        cleaned = replace(bad, last_error="boom tail")
        assert await store.finish("worker-1", [good, cleaned]) == {r.id for r in claimed}


async def test_refused_values_in_other_writes_store_nothing(schema: str) -> None:
    async with opened(schema) as store:
        with pytest.raises(StoreRejectedError, match=r"refused the values of add"):
            await store.add([job(), job(payload='{"key": "a\x00b"}')])
        # In JSON, where the server refuses the escaped \u0000.
        with pytest.raises(StoreRejectedError, match=r"refused the values of add"):
            await store.add([replace(job(), done_handlers=("on_done\x00",))])
        assert await all_jobs(store) == []

        now = utcnow()
        schedule = ScheduleRecord("nightly", "app.Nightly", "0 0 * * *\x00", "UTC", now, now, now)
        with pytest.raises(StoreRejectedError, match=r"refused the values of upsert_schedule"):
            await store.upsert_schedule(schedule)
        assert await store.list_schedules() == []


# -- locks: purge and concurrent writers --------------------------------------------------


async def finished_jobs(store: PostgresJobStore, count: int) -> list[JobRecord]:
    await store.add([job() for _ in range(count)])
    claimed = await store.claim("worker-1", count, LEASE)
    assert len(claimed) == count
    assert len(await store.finish("worker-1", [succeeded(r) for r in claimed])) == count
    return claimed


async def count_jobs(schema: str) -> int:
    async with raw_connection() as connection:
        count: int = await connection.fetchval(f'SELECT count(*) FROM "{schema}".jobs')
    return count


async def test_a_bounded_purge_removes_at_most_its_limit_and_nothing_without_the_lock(
    schema: str,
) -> None:
    cutoff = utcnow() + timedelta(hours=1)
    async with opened(schema) as store, raw_connection() as other_purger:
        await finished_jobs(store, 7)
        await store.add([job()])  # pending: never purged

        assert await store.purge(FINISHED_STATES, cutoff, limit=3) == 3
        assert await count_jobs(schema) == 5

        key = advisory_lock_key(schema, "purge")
        await other_purger.execute("SELECT pg_advisory_lock($1)", key)
        assert await store.purge(FINISHED_STATES, cutoff, limit=3) == 0
        assert await count_jobs(schema) == 5
        await other_purger.execute("SELECT pg_advisory_unlock($1)", key)

        assert await store.purge(FINISHED_STATES, cutoff, limit=3) == 3
        assert await store.purge(FINISHED_STATES, cutoff, limit=3) == 1
        assert await store.purge(FINISHED_STATES, cutoff, limit=3) == 0
        assert [record.state for record in await all_jobs(store)] == [JobState.ENQUEUED]


def test_the_purge_lock_is_the_schemas_own() -> None:
    # Neither the set-up lock of the schema nor another schema's purge lock.
    keys = {
        advisory_lock_key("masa_jobs"),
        advisory_lock_key("masa_jobs", "purge"),
        advisory_lock_key("masa_jobs_2", "purge"),
    }
    assert len(keys) == 3


async def test_a_full_purge_removes_everything_in_chunks_and_waits_its_turn(
    schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres, "PURGE_CHUNK_ROWS", 2)
    cutoff = utcnow() + timedelta(hours=1)
    async with opened(schema) as store, raw_connection() as other_purger:
        await finished_jobs(store, 7)
        await store.add([job()])
        key = advisory_lock_key(schema, "purge")
        await other_purger.execute("SELECT pg_advisory_lock($1)", key)
        purged: list[int] = []

        async def purge_all() -> None:
            purged.append(await store.purge(FINISHED_STATES, cutoff))

        async def waiting_for_the_lock() -> bool:
            waiting: int = await other_purger.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
                "AND ((classid::bigint << 32) | objid::bigint) = $1",
                key,
            )
            return waiting > 0

        async with anyio.create_task_group() as tg:
            tg.start_soon(purge_all)
            await wait_until(waiting_for_the_lock, timeout=PROMPTLY)
            assert purged == []
            await other_purger.execute("SELECT pg_advisory_unlock($1)", key)

        assert purged == [7]
        assert await count_jobs(schema) == 1


async def test_renewals_and_outcomes_in_opposite_orders_never_deadlock(schema: str) -> None:
    # Two workers' statements on the same 50 rows, one batch in ascending id
    # order and one descending, round after round: rows locked in the order of
    # each batch would deadlock within a few rounds. Fencing decides that each
    # outcome applies once: the later send finds it applied (as a send again
    # after a lost reply does) and answers so, with no second history event.
    rounds = 200
    async with (
        opened(schema) as coordinator,
        opened(schema) as one,
        opened(schema) as other,
        raw_connection() as reader,
    ):
        await hold_jobs_elsewhere(schema, 5000)
        await coordinator.add([job() for _ in range(50)])
        for _ in range(rounds):
            claimed = sorted(await coordinator.claim("worker-1", 50, LEASE), key=_job_id)
            assert len(claimed) == 50
            applied: list[set[str]] = []
            with anyio.fail_after(LONG_WAIT):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_renew_and_finish, one, claimed, applied)
                    tg.start_soon(_renew_and_finish, other, claimed[::-1], applied)

            ids = [record.id for record in claimed]
            assert applied == [set(ids), set(ids)]
            applied_twice = await reader.fetchval(
                f'SELECT count(*) FROM "{schema}".jobs WHERE id = ANY($1::text[]) '
                "AND history->-1->>'attempt' = history->-2->>'attempt'",
                ids,
            )
            assert applied_twice == 0


async def hold_jobs_elsewhere(schema: str, count: int) -> None:
    """Jobs other workers hold for a day, statistics up to date: the planner then
    reaches a batch's rows through the primary key, in the batch's order, as it
    does on a busy production table (on a tiny one it scans every held job)."""
    async with raw_connection() as connection:
        await connection.execute(
            f'INSERT INTO "{schema}".jobs (id, name, payload, state, created_at, next_try_at, '
            "attempts, lease_owner, lease_expires_at, lease_token) "
            "SELECT 'elsewhere-' || n, 'integration-work', '{}', 'processing', now(), now(), 1, "
            "'worker-' || n % 7, now() + interval '1 day', md5(n::text) "
            "FROM generate_series(1, $1) AS n",
            count,
        )
        await connection.execute(f'ANALYZE "{schema}".jobs')


async def _renew_and_finish(
    store: PostgresJobStore, batch: Sequence[JobRecord], applied: list[set[str]]
) -> None:
    leases = lease_of(*batch)
    assert await store.extend_leases("worker-1", leases, LEASE) <= set(leases)
    applied.append(await store.finish("worker-1", [retried(r) for r in batch]))


def _job_id(record: JobRecord) -> str:
    return record.id


def retried(record: JobRecord) -> JobOutcome:
    """Put back to run again at once: the next round claims it again."""
    return JobOutcome(
        record.id,
        JobState.SCHEDULED,
        record.attempts,
        _long_ago(),
        last_error="retry",
        lease_token=record.lease_token,
    )


def _long_ago() -> datetime:
    return utcnow() - HOURS_OFF


# -- recurring jobs ------------------------------------------------------------------------


async def test_a_schedule_update_keeps_the_fired_tick_unless_the_cron_changes(
    schema: str,
) -> None:
    created = utcnow() - timedelta(days=1)
    first_tick = created + timedelta(hours=1)
    schedule = ScheduleRecord(
        "nightly", "app.Nightly", "0 * * * *", "UTC", first_tick, created, created
    )
    async with opened(schema) as store:
        await store.upsert_schedule(schedule)
        next_tick = first_tick + timedelta(hours=1)
        assert await store.fire_schedule("nightly", first_tick, next_tick, job())

        # A deploy re-declares the same schedule with the tick it computed before the fire.
        same = replace(schedule, job_class="app.Renamed", created_at=utcnow(), updated_at=utcnow())
        await store.upsert_schedule(same)
        kept = await store.get_schedule("nightly")
        assert kept == replace(
            schedule,
            job_class="app.Renamed",
            next_fire_at=next_tick,
            updated_at=same.updated_at,
            last_fire_at=first_tick,
        )

        changed = replace(same, cron_expression="30 * * * *", next_fire_at=first_tick)
        await store.upsert_schedule(changed)
        moved = await store.get_schedule("nightly")
        assert moved is not None
        assert (moved.next_fire_at, moved.created_at, moved.last_fire_at) == (
            first_tick,
            created,
            first_tick,
        )
