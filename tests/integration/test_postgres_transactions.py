"""Jobs in the application's transaction on the PostgreSQL store: ``enqueue(...,
connection=...)`` stores them if and only if the transaction commits, and wakes
idle workers at the commit; ``current_job().complete_in(connection)`` finishes
a job in the handler's own transaction, fenced by its lease.

Every test has a schema of its own, with a table ``effects`` for what handlers
write beside their completion. Workers run in this process, on the test's
store, with a 30 s poll interval: a job is picked up within the tests'
deadlines only because a commit's ``NOTIFY`` woke the worker.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import anyio
import asyncpg
import pytest
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from masa_jobs import (
    BackgroundJob,
    BackgroundJobOptions,
    DefaultJobManager,
    DuplicateJobError,
    JobRegistry,
    JobState,
    LeaseLostError,
    StoreError,
    StoreRejectedError,
    TransactionError,
    Worker,
    current_job,
    job_name,
)
from masa_jobs.jobs import handler_name
from masa_jobs.records import JobRecord
from masa_jobs.stores.postgres import LISTENER_APPLICATION_NAME, PostgresJobStore
from tests.integration.harness import wait_until
from tests.integration.test_postgres import LEASE, job, opened, raw_connection, succeeded
from tests.services import POSTGRES_DSN, unique_name
from tests.unit.support import running

pytestmark = pytest.mark.anyio

# Longer than every deadline below: a worker that picks a job up within one
# was woken by the commit's NOTIFY, not by its poll.
IDLE_POLL_SECONDS = 30.0
# How long a woken worker may take to run a job, on a loaded machine.
WAKE_UP_SECONDS = 10.0
# Bounds on conditions that hold at once on an idle machine.
PROMPTLY = 10.0
# A failed job waits this long before its retry: it stays scheduled while a test looks.
RETRY_WAIT_SECONDS = 600.0
# The failure a handler raises after completing its job in its transaction.
FAILURE = "the handler failed after complete_in"
# What a second claim would write over the stale handler's lease token.
STOLEN_TOKEN = "token-of-a-second-claim"
SQLALCHEMY_DSN = POSTGRES_DSN.replace("postgresql://", "postgresql+asyncpg://", 1)
# A database of the same server without the store's tables.
OTHER_DATABASE_DSN = urlunsplit(urlsplit(POSTGRES_DSN)._replace(path="/root"))

# What the handlers did, by key: runs, and what they saw.
RUNS: Counter[str] = Counter()
SEEN: dict[str, Any] = {}


@job_name("tx-mail")
class Mail(BaseModel):
    key: str


class MailJob(BackgroundJob[Mail]):
    async def execute(self, args: Mail) -> None:
        RUNS[args.key] += 1


@job_name("tx-effect")
class Effect(BaseModel):
    store_schema: str
    key: str
    # After writing its effect: complete and commit; raise after completing;
    # or find its lease taken by a second claim before completing.
    then: Literal["commit", "raise", "steal"] = "commit"


class EffectJob(BackgroundJob[Effect]):
    async def execute(self, args: Effect) -> None:
        RUNS[args.key] += 1
        async with raw_connection() as connection, connection.transaction():
            await write_effect(connection, args.store_schema, args.key)
            if args.then == "steal":
                await steal_lease(args.store_schema, current_job().id)
            try:
                await current_job().complete_in(connection)
            except LeaseLostError as exc:
                SEEN[args.key] = exc
                raise
            if args.then == "raise":
                raise RuntimeError(FAILURE)
        # Committed, the handler still running: the job is finished already.
        SEEN[args.key] = await job_state(args.store_schema, current_job().id)


@job_name("tx-two-steps")
class TwoSteps(BaseModel):
    store_schema: str
    key: str


class FirstStep(BackgroundJob[TwoSteps]):
    async def execute(self, args: TwoSteps) -> None:
        await complete_step(args, "first")


class SecondStep(BackgroundJob[TwoSteps]):
    async def execute(self, args: TwoSteps) -> None:
        # What the first step's transaction left, before this one completes.
        async with raw_connection() as connection:
            SEEN[args.key] = await connection.fetchrow(
                f'SELECT state, done_handlers::text AS done, lease_token FROM "{args.store_schema}"'
                ".jobs WHERE id = $1",
                current_job().id,
            )
        await complete_step(args, "second")


REGISTRY = JobRegistry([MailJob, EffectJob, FirstStep, SecondStep])


async def complete_step(args: TwoSteps, step: str) -> None:
    RUNS[f"{args.key}-{step}"] += 1
    async with raw_connection() as connection:
        # A jsonb codec of the application's own, as many asyncpg applications
        # install: the store's JSON must not go through it.
        await connection.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        async with connection.transaction():
            await write_effect(connection, args.store_schema, f"{args.key}-{step}")
            await current_job().complete_in(connection)


async def write_effect(connection: asyncpg.Connection, schema: str, key: str) -> None:
    await connection.execute(f'INSERT INTO "{schema}".effects (key) VALUES ($1)', key)


async def steal_lease(schema: str, job_id: str) -> None:
    async with raw_connection() as thief:
        await thief.execute(
            f'UPDATE "{schema}".jobs SET lease_token = $2 WHERE id = $1', job_id, STOLEN_TOKEN
        )


async def job_state(schema: str, job_id: str) -> str:
    async with raw_connection() as connection:
        state: str = await connection.fetchval(
            f'SELECT state FROM "{schema}".jobs WHERE id = $1', job_id
        )
    return state


async def effects(schema: str) -> set[str]:
    async with raw_connection() as connection:
        rows = await connection.fetch(f'SELECT key FROM "{schema}".effects')
    return {row["key"] for row in rows}


async def stored_jobs(schema: str) -> int:
    """How many jobs the schema holds, as any other connection sees them."""
    async with raw_connection() as connection:
        count: int = await connection.fetchval(f'SELECT count(*) FROM "{schema}".jobs')
    return count


async def listener_waiting(schema: str) -> bool:
    """Whether a worker on ``schema`` sleeps on its LISTEN connection: that
    connection is idle after the look at the schema's next due time, which a
    wait makes just before it sleeps (see _postgres_wakeup)."""
    async with raw_connection() as connection:
        found: int = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
            "AND state = 'idle' AND position($2 IN query) > 0",
            LISTENER_APPLICATION_NAME,
            f'"{schema}".',
        )
    return found > 0


async def settled(store: PostgresJobStore, job_id: str, state: JobState) -> JobRecord:
    """The job once it is in ``state``; fails after PROMPTLY seconds."""
    found: list[JobRecord] = []

    async def reached() -> bool:
        record = await store.get(job_id)
        if record is not None and record.state is state:
            found.append(record)
        return bool(found)

    await wait_until(reached, timeout=PROMPTLY)
    return found[0]


@asynccontextmanager
async def engine() -> AsyncIterator[AsyncEngine]:
    sqlalchemy = create_async_engine(SQLALCHEMY_DSN)
    try:
        yield sqlalchemy
    finally:
        await sqlalchemy.dispose()


@asynccontextmanager
async def temporary_role(schema: str, *grants: str) -> AsyncIterator[str]:
    """A role (no login) with ``grants`` on the store's jobs table, and
    USAGE on its schema; removed afterwards."""
    role = unique_name("masa_role")
    async with raw_connection() as admin:
        await admin.execute(f"CREATE ROLE {role}")
        await admin.execute(f'GRANT USAGE ON SCHEMA "{schema}" TO {role}')
        for grant in grants:
            await admin.execute(f'GRANT {grant} ON "{schema}".jobs TO {role}')
        try:
            yield role
        finally:
            await admin.execute(f"DROP OWNED BY {role}")
            await admin.execute(f"DROP ROLE {role}")


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _clean_runs() -> Iterator[None]:
    RUNS.clear()
    SEEN.clear()
    yield
    RUNS.clear()
    SEEN.clear()


@pytest.fixture
async def store(schema: str) -> AsyncIterator[PostgresJobStore]:
    async with opened(schema) as opened_store, raw_connection() as connection:
        await connection.execute(f'CREATE TABLE "{schema}".effects (key text PRIMARY KEY)')
        yield opened_store


@pytest.fixture
def options() -> BackgroundJobOptions:
    return BackgroundJobOptions(
        poll_interval=IDLE_POLL_SECONDS,
        lease_timeout=LEASE.total_seconds(),
        shutdown_timeout=1,
        first_wait_duration=RETRY_WAIT_SECONDS,
    )


@pytest.fixture
def manager(store: PostgresJobStore, options: BackgroundJobOptions) -> DefaultJobManager:
    return DefaultJobManager(store, REGISTRY, options)


@pytest.fixture
def worker(store: PostgresJobStore, options: BackgroundJobOptions) -> Worker:
    return Worker(store, REGISTRY, options, worker_id="tx-worker")


# -- enqueue in the application's transaction ------------------------------------------------


async def test_a_job_enqueued_in_a_transaction_exists_only_once_it_commits(
    schema: str, store: PostgresJobStore, manager: DefaultJobManager, worker: Worker
) -> None:
    async with running(worker), raw_connection() as connection:
        transaction = connection.transaction()
        await transaction.start()
        rolled_back = await manager.enqueue(Mail(key="rolled-back"), connection=connection)
        assert await store.get(rolled_back) is None  # not before the commit
        await transaction.rollback()

        assert await store.get(rolled_back) is None
        assert await stored_jobs(schema) == 0

        async with connection.transaction():
            committed = await manager.enqueue(Mail(key="committed"), connection=connection)
            assert await store.get(committed) is None
        done = await settled(store, committed, JobState.SUCCEEDED)

    assert RUNS == {"committed": 1}
    assert done.attempts == 1
    assert await stored_jobs(schema) == 1


async def test_an_idle_worker_is_woken_by_the_commit(
    schema: str, store: PostgresJobStore, manager: DefaultJobManager, worker: Worker
) -> None:
    async with running(worker):
        # Asleep for IDLE_POLL_SECONDS after a look that found nothing due.
        await wait_until(lambda: listener_waiting(schema), timeout=PROMPTLY)
        async with raw_connection() as connection, connection.transaction():
            job_id = await manager.enqueue(Mail(key="woken"), connection=connection)

        await wait_until(lambda: _true(RUNS["woken"] > 0), timeout=WAKE_UP_SECONDS)

    assert (await settled(store, job_id, JobState.SUCCEEDED)).attempts == 1


async def test_enqueue_many_and_unique_keys_in_one_transaction(
    schema: str, store: PostgresJobStore, manager: DefaultJobManager
) -> None:
    pool = await asyncpg.create_pool(POSTGRES_DSN, min_size=1, max_size=1)
    try:
        async with pool.acquire() as connection, connection.transaction():  # a pool's proxy
            many = await manager.enqueue_many(
                [(Mail(key=f"many-{i}"), None) for i in range(3)], connection=connection
            )
            first = await manager.enqueue(
                Mail(key="report-1"), unique_key="report", connection=connection
            )
            again = await manager.enqueue(
                Mail(key="report-2"), unique_key="report", connection=connection
            )
            assert await stored_jobs(schema) == 0  # not before the commit
    finally:
        await pool.close()

    assert (first.duplicate, again.duplicate) == (False, True)
    assert again == first
    assert await stored_jobs(schema) == 4
    for job_id in [*many, first]:
        record = await store.get(job_id)
        assert record is not None
        assert record.state is JobState.ENQUEUED
        assert (record.done_handlers, record.history) == ((), ())
    keyed = await store.get(first)
    assert keyed is not None
    assert keyed.unique_key == "tx-mail/report"


async def test_a_key_enqueued_in_a_transaction_is_held_for_others_until_it_ends(
    store: PostgresJobStore, manager: DefaultJobManager
) -> None:
    answers: list[str] = []

    async def enqueue_elsewhere() -> None:
        answers.append(await manager.enqueue(Mail(key="elsewhere"), unique_key="nightly"))

    async def waits_for_the_key() -> bool:
        async with raw_connection() as observer:
            waiting: int = await observer.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            )
        return waiting > 0

    # Left in reverse: the transaction commits, then the other enqueue ends.
    async with (
        raw_connection() as connection,
        anyio.create_task_group() as tg,
        connection.transaction(),
    ):
        held = await manager.enqueue(
            Mail(key="in-transaction"), unique_key="nightly", connection=connection
        )
        tg.start_soon(enqueue_elsewhere)
        await wait_until(waits_for_the_key, timeout=PROMPTLY)
        assert answers == []

    # Committed: the other enqueue finds the key held by the job of the transaction.
    assert answers == [held]
    assert getattr(answers[0], "duplicate", None) is True


async def test_a_transaction_begun_by_hand_takes_keys_and_an_applications_jsonb_codec(
    schema: str, store: PostgresJobStore, manager: DefaultJobManager
) -> None:
    async with raw_connection() as connection:
        await connection.set_type_codec(
            "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )
        await connection.execute("BEGIN")
        plain = await manager.enqueue(Mail(key="plain"), connection=connection)
        keyed = await manager.enqueue(Mail(key="keyed"), unique_key="k", connection=connection)
        await connection.execute("COMMIT")

    for job_id in (plain, keyed):
        record = await store.get(job_id)
        assert record is not None
        assert (record.done_handlers, record.history) == ((), ())
    async with raw_connection() as connection:
        kinds = await connection.fetch(
            f"SELECT DISTINCT jsonb_typeof(done_handlers), jsonb_typeof(history) "
            f'FROM "{schema}".jobs'
        )
    assert [tuple(row) for row in kinds] == [("array", "array")]


# -- SQLAlchemy ---------------------------------------------------------------------------------


async def test_a_sqlalchemy_async_connection_carries_the_enqueue(
    schema: str, store: PostgresJobStore, manager: DefaultJobManager
) -> None:
    async with engine() as sqlalchemy:
        async with sqlalchemy.connect() as connection, connection.begin() as transaction:
            rolled_back = await manager.enqueue(Mail(key="gone"), connection=connection)
            await transaction.rollback()
        assert await stored_jobs(schema) == 0

        async with sqlalchemy.begin() as connection:
            begun = await manager.enqueue(Mail(key="begun"), connection=connection)
            keyed = await manager.enqueue(Mail(key="keyed"), unique_key="k", connection=connection)
            again = await manager.enqueue(Mail(key="again"), unique_key="k", connection=connection)
        async with sqlalchemy.connect() as connection:  # commit as you go
            as_you_go = await manager.enqueue(Mail(key="as-you-go"), connection=connection)
            await connection.commit()

    assert await store.get(rolled_back) is None
    assert again == keyed
    assert again.duplicate
    for job_id in (begun, keyed, as_you_go):
        record = await store.get(job_id)
        assert record is not None
        assert (record.done_handlers, record.history) == ((), ())
    assert await stored_jobs(schema) == 3


async def test_a_sqlalchemy_async_session_carries_the_enqueue(
    schema: str, store: PostgresJobStore, manager: DefaultJobManager
) -> None:
    async with engine() as sqlalchemy:
        async with AsyncSession(sqlalchemy) as session:
            rolled_back = await manager.enqueue_many([(Mail(key="gone"), None)], connection=session)
            await session.rollback()
        assert await stored_jobs(schema) == 0

        async with AsyncSession(sqlalchemy) as session, session.begin():
            committed = await manager.enqueue(Mail(key="kept"), unique_key="k", connection=session)

    assert await store.get(rolled_back[0]) is None
    record = await store.get(committed)
    assert record is not None
    assert record.unique_key == "tx-mail/k"
    assert await stored_jobs(schema) == 1


# -- connections that cannot carry it ------------------------------------------------------------


async def test_a_connection_without_a_transaction_is_refused(
    schema: str, manager: DefaultJobManager
) -> None:
    async with raw_connection() as connection:
        with pytest.raises(TransactionError, match="open a transaction first"):
            await manager.enqueue(Mail(key="autocommitted"), connection=connection)
    async with engine() as sqlalchemy, sqlalchemy.connect() as connection:
        autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
        with pytest.raises(TransactionError, match="open a transaction first"):
            await manager.enqueue(Mail(key="autocommitted"), connection=autocommit)
    assert await stored_jobs(schema) == 0


async def test_a_transaction_aborted_by_an_earlier_error_is_named(
    schema: str, manager: DefaultJobManager
) -> None:
    async with raw_connection() as connection:
        transaction = connection.transaction()
        await transaction.start()
        with pytest.raises(asyncpg.DivisionByZeroError):
            await connection.execute("SELECT 1 / 0")
        with pytest.raises(TransactionError, match="aborted by an earlier error"):
            await manager.enqueue(Mail(key="too-late"), connection=connection)
        await transaction.rollback()
    assert await stored_jobs(schema) == 0


@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "unique-key"])
async def test_a_connection_to_another_database_is_refused(
    schema: str, manager: DefaultJobManager, keyed: bool
) -> None:
    connection = await asyncpg.connect(OTHER_DATABASE_DSN)
    try:
        transaction = connection.transaction()
        await transaction.start()
        with pytest.raises(TransactionError, match="Connect to the store's database") as caught:
            await manager.enqueue(
                Mail(key="lost"), unique_key="k" if keyed else None, connection=connection
            )
        if keyed:
            # Under its savepoint: the application's transaction goes on.
            assert await connection.fetchval("SELECT 1") == 1
        await transaction.rollback()
    finally:
        await connection.close()
    assert f"schema {schema!r}" in str(caught.value)
    assert isinstance(caught.value.__cause__, asyncpg.UndefinedTableError)
    assert await stored_jobs(schema) == 0


@pytest.mark.parametrize(
    "kind", ["object", "dsn", "engine"], ids=["an-object", "a-dsn", "a-sqlalchemy-engine"]
)
async def test_an_object_of_another_kind_is_refused(
    schema: str, manager: DefaultJobManager, kind: str
) -> None:
    async with engine() as sqlalchemy:
        connection = {"object": object(), "dsn": POSTGRES_DSN, "engine": sqlalchemy}[kind]
        with pytest.raises(TransactionError, match="asyncpg connection") as caught:
            await manager.enqueue(Mail(key="nowhere"), connection=connection)
    assert "SQLAlchemy AsyncConnection or AsyncSession" in str(caught.value)
    assert await stored_jobs(schema) == 0


async def test_add_in_raises_what_add_raises(schema: str, store: PostgresJobStore) -> None:
    stored, twice = job(), job()
    await store.add([stored])
    async with raw_connection() as connection:
        for batch in ([twice, twice], [stored]):
            with pytest.raises(DuplicateJobError):
                async with connection.transaction():
                    await store.add_in(connection, batch)
        with pytest.raises(StoreRejectedError, match="nothing was written"):
            async with connection.transaction():
                await store.add_in(connection, [job(payload='{"text": "nul \x00"}')])
    assert await stored_jobs(schema) == 1


async def test_the_documented_grants_are_enough_and_a_missing_one_is_named(
    schema: str, store: PostgresJobStore
) -> None:
    await store.add([job()])
    [claimed] = await store.claim("worker-1", 1, LEASE)
    async with temporary_role(schema, "SELECT, INSERT") as enqueue_only:
        async with raw_connection() as connection, connection.transaction():
            await connection.execute(f"SET LOCAL ROLE {enqueue_only}")
            await store.add_in(connection, [job()])
        # A unique key frees expired ones (an UPDATE); a completion is one.
        async with raw_connection() as connection, connection.transaction():
            await connection.execute(f"SET LOCAL ROLE {enqueue_only}")
            with pytest.raises(StoreError, match=r"add_in was refused .* grant it USAGE"):
                await store.add_in(connection, [replace(job(), unique_key="k")])
        async with raw_connection() as connection, connection.transaction():
            await connection.execute(f"SET LOCAL ROLE {enqueue_only}")
            with pytest.raises(StoreError, match=r"finish_in was refused .* grant it USAGE"):
                await store.finish_in(connection, "worker-1", succeeded(claimed))
    async with (
        temporary_role(schema, "SELECT, INSERT, UPDATE") as application,
        raw_connection() as connection,
        connection.transaction(),
    ):
        await connection.execute(f"SET LOCAL ROLE {application}")
        await store.add_in(connection, [replace(job(), unique_key="k")])
        assert await store.finish_in(connection, "worker-1", succeeded(claimed))
    finished = await store.get(claimed.id)
    assert finished is not None
    assert finished.state is JobState.SUCCEEDED
    assert await stored_jobs(schema) == 3


async def test_finish_in_never_relaxes_the_applications_commit(schema: str) -> None:
    async with opened(schema, relaxed_commit=True) as relaxed:
        await relaxed.add([job()])
        [claimed] = await relaxed.claim("worker-1", 1, LEASE)
        async with raw_connection() as connection, connection.transaction():
            assert await relaxed.finish_in(connection, "worker-1", succeeded(claimed))
            mode = await connection.fetchval("SELECT current_setting('synchronous_commit')")
    assert mode == "on"


# -- completing a job in the handler's transaction -----------------------------------------------


async def test_a_handler_completes_its_job_with_its_effect_exactly_once(
    schema: str,
    store: PostgresJobStore,
    manager: DefaultJobManager,
    worker: Worker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, "masa_jobs"):
        async with running(worker):
            job_id = await manager.enqueue(Effect(store_schema=schema, key="paid"))
            done = await settled(store, job_id, JobState.SUCCEEDED)
        # Stopped: the worker has recorded its own outcome of the run (refused).

    assert RUNS == {"paid": 1}
    assert SEEN["paid"] == JobState.SUCCEEDED.value
    assert await effects(schema) == {"paid"}
    assert done.attempts == 1
    assert [event.state for event in done.history] == [JobState.SUCCEEDED]
    assert done.done_handlers == (handler_name(EffectJob),)
    assert (done.lease_owner, done.lease_token) == (None, None)
    assert worker.leases_lost == 0
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text


async def test_a_handler_that_raises_after_complete_in_rolls_back_and_is_retried(
    schema: str, store: PostgresJobStore, manager: DefaultJobManager, worker: Worker
) -> None:
    async with running(worker):
        job_id = await manager.enqueue(Effect(store_schema=schema, key="flaky", then="raise"))
        retried = await settled(store, job_id, JobState.SCHEDULED)

    assert RUNS == {"flaky": 1}
    assert await effects(schema) == set()
    assert retried.last_error is not None
    assert FAILURE in retried.last_error
    assert [event.state for event in retried.history] == [JobState.SCHEDULED]
    assert worker.leases_lost == 0


async def test_a_stale_handler_cannot_complete_and_its_transaction_rolls_back(
    schema: str,
    store: PostgresJobStore,
    manager: DefaultJobManager,
    worker: Worker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, "masa_jobs"):
        async with running(worker):
            job_id = await manager.enqueue(Effect(store_schema=schema, key="stale", then="steal"))
            await wait_until(lambda: _true("stale" in SEEN), timeout=PROMPTLY)
            await wait_until(lambda: _true(worker.leases_lost == 1), timeout=PROMPTLY)

    assert isinstance(SEEN["stale"], LeaseLostError)
    assert await effects(schema) == set()
    record = await store.get(job_id)
    assert record is not None
    assert (record.state, record.lease_token, record.history) == (
        JobState.PROCESSING,
        STOLEN_TOKEN,
        (),
    )
    assert "complete_in refused" in caplog.text


async def test_each_of_two_handlers_completes_in_its_own_transaction(
    schema: str,
    store: PostgresJobStore,
    manager: DefaultJobManager,
    worker: Worker,
) -> None:
    async with running(worker):
        job_id = await manager.enqueue(TwoSteps(store_schema=schema, key="order"))
        done = await settled(store, job_id, JobState.SUCCEEDED)

    first, second = handler_name(FirstStep), handler_name(SecondStep)
    # Between the two: the first step's done, the job still held.
    between = SEEN["order"]
    assert between["state"] == JobState.PROCESSING.value
    assert json.loads(between["done"]) == [first]
    assert between["lease_token"] is not None
    assert done.done_handlers == (first, second)
    assert [event.state for event in done.history] == [JobState.SUCCEEDED]
    assert RUNS == {"order-first": 1, "order-second": 1}
    assert await effects(schema) == {"order-first", "order-second"}
    assert worker.leases_lost == 0


async def _true(condition: bool) -> bool:
    return condition
