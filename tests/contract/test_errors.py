"""What a store raises: every error is a ``MasaJobsError``, of the same type on every store.

A duplicate id is ``DuplicateJobError`` and stores nothing of its batch. The
last tests provoke driver errors that are no connection failure on the stores
that have a driver (a full disk, a constraint, a deadlock, a dropped table, a
missing permission) and check the exact type each becomes, with the driver's
exception attached as ``__cause__``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import pytest

from masa_jobs import (
    DuplicateJobError,
    JobRecord,
    JobState,
    JobStore,
    MasaJobsError,
    StoreError,
    StoreRejectedError,
    StoreUnavailableError,
)
from masa_jobs.records import ScheduleRecord, utcnow
from masa_jobs.stores.base import Store
from masa_jobs.stores.sqlite import SqliteJobStore
from tests.contract.conftest import StoreSpec
from tests.services import POSTGRES_DSN, REDIS_URL, require_service, unique_name

pytestmark = pytest.mark.anyio

TICK = datetime(2024, 5, 1, 12, 5, 0, tzinfo=UTC)
NEXT_TICK = TICK + timedelta(minutes=5)
# The stores with a driver run these on asyncio only: asyncpg and redis.asyncio do.
ASYNCIO_ONLY = pytest.mark.parametrize(
    "anyio_backend", [pytest.param(("asyncio", {}), id="asyncio")]
)


def a_job(job_id: str | None = None, payload: str = '{"n": 1}') -> JobRecord:
    now = utcnow().replace(microsecond=0)
    return JobRecord(
        id=job_id or uuid4().hex,
        name="contract.job",
        payload=payload,
        state=JobState.ENQUEUED,
        created_at=now,
        next_try_at=now,
    )


async def total(store: JobStore) -> int:
    return sum((await store.count_by_state(utcnow())).values())


def assert_driver_cause(error: BaseException, spec: StoreSpec) -> None:
    """The driver's exception is attached for the logs (the memory store has no driver)."""
    if spec.name == "memory":
        return
    assert isinstance(error.__cause__, Exception)
    assert not isinstance(error.__cause__, MasaJobsError)


# -- duplicate ids, on every store -------------------------------------------------


def test_a_duplicate_id_is_a_store_error_and_a_value_error() -> None:
    assert issubclass(DuplicateJobError, StoreError)
    assert issubclass(DuplicateJobError, MasaJobsError)
    assert issubclass(DuplicateJobError, ValueError)
    assert not issubclass(DuplicateJobError, StoreRejectedError | StoreUnavailableError)


async def test_a_duplicate_id_alone(store: JobStore, store_spec: StoreSpec) -> None:
    existing = a_job()
    await store.add([existing])

    with pytest.raises(DuplicateJobError) as caught:
        await store.add([a_job(existing.id, payload='{"n": 2}')])

    assert type(caught.value) is DuplicateJobError
    message = str(caught.value)
    assert f"the job id {existing.id!r} is stored already" in message
    assert "job ids are unique" in message
    assert "nothing of the batch was stored" in message
    assert "enqueue the job again without an id" in message.lower()
    assert_driver_cause(caught.value, store_spec)
    kept = await store.get(existing.id)
    assert kept is not None
    assert kept.payload == existing.payload
    assert await total(store) == 1


async def test_an_id_named_twice_in_one_batch(store: JobStore) -> None:
    twice = a_job()
    other = a_job()

    with pytest.raises(DuplicateJobError) as caught:
        await store.add([twice, other, replace(twice, payload='{"n": 2}')])

    assert type(caught.value) is DuplicateJobError
    assert f"the batch names the job id {twice.id!r} twice" in str(caught.value)
    assert await store.get(twice.id) is None
    assert await store.get(other.id) is None
    assert await total(store) == 0


async def test_a_batch_with_an_id_that_exists_stores_none_of_it(
    store: JobStore, store_spec: StoreSpec
) -> None:
    existing = a_job()
    await store.add([existing])
    before, after = a_job(), a_job()

    with pytest.raises(DuplicateJobError) as caught:
        await store.add([before, a_job(existing.id), after])

    assert type(caught.value) is DuplicateJobError
    assert f"the job id {existing.id!r} is stored already" in str(caught.value)
    assert_driver_cause(caught.value, store_spec)
    assert await store.get(before.id) is None
    assert await store.get(after.id) is None
    assert await total(store) == 1
    # The store goes on as before.
    await store.add([before, after])
    assert await total(store) == 3


async def test_an_odd_duplicate_id_is_shown_escaped_and_short(store: JobStore) -> None:
    odd = "line\nbreak\ttab\x1b[31m" + "x" * 1000
    await store.add([a_job(odd)])

    with pytest.raises(DuplicateJobError) as caught:
        await store.add([a_job(odd)])

    message = str(caught.value)
    assert "\n" not in message
    assert "\x1b" not in message
    assert repr(odd)[:100] in message
    assert len(message) < 700


async def test_a_tick_whose_job_id_exists_does_not_fire(store: JobStore) -> None:
    assert isinstance(store, Store)
    schedule = ScheduleRecord(
        id="reports.nightly",
        job_class="app.reports.NightlyReport",
        cron_expression="*/5 * * * *",
        timezone="UTC",
        next_fire_at=TICK,
        created_at=TICK - timedelta(days=1),
        updated_at=TICK - timedelta(days=1),
    )
    await store.upsert_schedule(schedule)
    existing = a_job()
    await store.add([existing])

    with pytest.raises(DuplicateJobError) as caught:
        await store.fire_schedule(schedule.id, TICK, NEXT_TICK, a_job(existing.id))

    assert type(caught.value) is DuplicateJobError
    assert "the tick did not fire" in str(caught.value)
    kept = await store.get_schedule(schedule.id)
    assert kept is not None
    assert kept.next_fire_at == TICK
    assert kept.last_fire_at is None
    assert await total(store) == 1


# -- driver errors that are no connection failure ---------------------------------------


@asynccontextmanager
async def opened_sqlite(tmp_path: Path) -> AsyncIterator[SqliteJobStore]:
    store = SqliteJobStore(tmp_path / "jobs.sqlite3")
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


async def test_sqlite_disk_full_is_unavailable_not_refused(tmp_path: Path) -> None:
    async with opened_sqlite(tmp_path) as store:
        # SQLite's own limit on the file's size: the same SQLITE_FULL as a full disk.
        connection = store._connection
        assert connection is not None
        (pages,) = connection.execute("PRAGMA page_count").fetchone()
        connection.execute(f"PRAGMA max_page_count = {pages}")
        batch = [a_job(payload="x" * 100_000) for _ in range(5)]

        with pytest.raises(StoreUnavailableError) as caught:
            await store.add(batch)

        assert type(caught.value) is StoreUnavailableError
        message = str(caught.value)
        assert "the disk is full" in message
        assert "Free space" in message
        assert isinstance(caught.value.__cause__, sqlite3.OperationalError)
        connection.execute("PRAGMA max_page_count = 1073741823")
        assert await store.get(batch[0].id) is None
        await store.add(batch)  # once there is room, the same call succeeds


async def test_sqlite_a_refused_insert_is_rejected(tmp_path: Path) -> None:
    async with opened_sqlite(tmp_path) as store:
        with sqlite3.connect(store.path) as admin:
            admin.execute(
                "CREATE TRIGGER sabotage BEFORE INSERT ON masa_jobs "
                "BEGIN SELECT RAISE(ABORT, 'no new jobs today'); END"
            )
        job = a_job()

        with pytest.raises(StoreRejectedError) as caught:
            await store.add([job])

        assert type(caught.value) is StoreRejectedError
        assert "no new jobs today" in str(caught.value)
        assert isinstance(caught.value.__cause__, sqlite3.IntegrityError)
        assert await store.get(job.id) is None


@asynccontextmanager
async def opened_postgres() -> AsyncIterator[tuple[JobStore, str]]:
    import asyncpg

    from masa_jobs.stores.postgres import PostgresJobStore

    require_service("PostgreSQL", POSTGRES_DSN)
    schema = unique_name()
    store = PostgresJobStore.from_settings({"dsn": POSTGRES_DSN, "schema": schema})
    await store.open()
    try:
        yield store, schema
    finally:
        await store.aclose()
        connection = await asyncpg.connect(POSTGRES_DSN)
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()


async def postgres_admin(statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_DSN)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@ASYNCIO_ONLY
@pytest.mark.parametrize(
    ("errcode", "driver_error", "error", "says"),
    [
        ("disk_full", "DiskFullError", StoreUnavailableError, "out of disk space"),
        ("out_of_memory", "OutOfMemoryError", StoreUnavailableError, "out of disk space"),
        (
            "read_only_sql_transaction",
            "ReadOnlySQLTransactionError",
            StoreUnavailableError,
            "primary",
        ),
        ("deadlock_detected", "DeadlockDetectedError", StoreUnavailableError, "retried"),
        ("check_violation", "CheckViolationError", StoreRejectedError, "refused the values"),
        ("raise_exception", "RaiseError", StoreError, "check the server's log"),
    ],
)
async def test_postgres_server_errors(
    errcode: str, driver_error: str, error: type[StoreError], says: str
) -> None:
    async with opened_postgres() as (store, schema):
        await postgres_admin(
            f'CREATE FUNCTION "{schema}".sabotage() RETURNS trigger LANGUAGE plpgsql AS $$ '
            f"BEGIN RAISE EXCEPTION 'sabotage' USING ERRCODE = '{errcode}'; END $$; "
            f'CREATE TRIGGER sabotage BEFORE INSERT ON "{schema}".jobs '
            f'FOR EACH ROW EXECUTE FUNCTION "{schema}".sabotage()'
        )
        job = a_job()

        with pytest.raises(StoreError) as caught:
            await store.add([job])

        assert type(caught.value) is error
        assert says in str(caught.value)
        assert "sabotage" in str(caught.value)
        assert type(caught.value.__cause__).__name__ == driver_error
        assert await store.get(job.id) is None


@ASYNCIO_ONLY
async def test_postgres_a_dropped_table_is_a_store_error() -> None:
    async with opened_postgres() as (store, schema):
        await postgres_admin(f'DROP TABLE "{schema}".jobs')

        with pytest.raises(StoreError) as caught:
            await store.get("any")

        assert type(caught.value) is StoreError
        assert "UndefinedTableError" in str(caught.value)
        assert f"schema {schema!r}" in str(caught.value)
        assert type(caught.value.__cause__).__name__ == "UndefinedTableError"


@asynccontextmanager
async def opened_redis(url: str = REDIS_URL) -> AsyncIterator[tuple[JobStore, str]]:
    import redis.asyncio

    from masa_jobs.stores.redis import RedisJobStore

    require_service("Redis", REDIS_URL)
    prefix = unique_name()
    store = RedisJobStore.from_settings({"url": url, "prefix": prefix})
    await store.open()
    try:
        yield store, prefix
    finally:
        await store.aclose()
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            keys = [key async for key in client.scan_iter(match=f"{{{prefix}}}:*", count=1000)]
            if keys:
                await client.delete(*keys)
        finally:
            await client.aclose()


@ASYNCIO_ONLY
async def test_redis_a_key_of_the_wrong_type_is_a_store_error() -> None:
    import redis.asyncio
    from redis.exceptions import ResponseError

    async with opened_redis() as (store, prefix):
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            await client.set(f"{{{prefix}}}:job:squatter", "not a hash")
        finally:
            await client.aclose()

        with pytest.raises(StoreError) as caught:
            await store.get("squatter")

        assert type(caught.value) is StoreError
        assert "WRONGTYPE" in str(caught.value)
        assert isinstance(caught.value.__cause__, ResponseError)


@ASYNCIO_ONLY
async def test_redis_a_missing_permission_is_a_store_error() -> None:
    import redis.asyncio
    from redis.exceptions import NoPermissionError

    require_service("Redis", REDIS_URL)
    user, password = unique_name("masa_acl"), uuid4().hex
    admin = redis.asyncio.Redis.from_url(REDIS_URL)
    # Everything but HMGET, which get() needs.
    await admin.acl_setuser(
        user,
        enabled=True,
        passwords=[f"+{password}"],
        keys=["*"],
        channels=["*"],
        categories=["+@all"],
        commands=["-hmget"],
    )
    host_part = REDIS_URL.split("://", 1)[1]
    try:
        async with opened_redis(f"redis://{user}:{password}@{host_part}") as (store, _):
            with pytest.raises(StoreError) as caught:
                await store.get("any")

        assert type(caught.value) is StoreError
        message = str(caught.value)
        assert "may not run get" in message
        assert "ACL" in message
        assert password not in message
        assert isinstance(caught.value.__cause__, NoPermissionError)
    finally:
        await admin.acl_deluser(user)
        await admin.aclose()
