"""Jobs stored and completed in the application's own SQLite transaction.

The application's connection is a plain ``sqlite3`` connection in its default
transaction mode, or SQLAlchemy's on pysqlite, on the store's file, beside a
table of the application's own (``orders``, ``effects``). It writes in the
event loop's thread while the store's own connection works in a thread of its
own: the application's first write holds the file's write lock until it
commits, so each test commits (or rolls back) before it awaits the store or a
worker, and reads what is stored meanwhile through a connection of its own.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, closing, contextmanager
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal
from uuid import uuid4

import anyio
import pytest
from pydantic import BaseModel
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.orm import Session

from masa_jobs import (
    BackgroundJob,
    BackgroundJobOptions,
    DefaultJobManager,
    DuplicateJobError,
    JobOutcome,
    JobRecord,
    JobRegistry,
    JobState,
    StoreRejectedError,
    current_job,
    job_name,
)
from masa_jobs.exceptions import LeaseLostError, TransactionError
from masa_jobs.jobs import handler_name
from masa_jobs.records import utcnow
from masa_jobs.stores.sqlite import SqliteJobStore
from masa_jobs.worker import Worker

from .both_backends import anyio_backend  # noqa: F401 (asyncio and trio)
from .harness import wait_until

pytestmark = pytest.mark.anyio

# Guards every wait for a condition: far above what it should take.
WAIT_LIMIT_SECONDS = 10.0
# How long the application's connection waits for the write lock that the
# store's thread may hold for a moment (a claim, an outcome).
APP_BUSY_TIMEOUT_SECONDS = 10.0
# A worker's own poll interval, set so long that only a wake-up or the
# store's poll (at least once a second) can end its wait.
NO_POLL_SECONDS = 60.0
# A commit seen by an idle worker within the store's poll, plus slack for a
# busy machine.
PICKUP_LIMIT_SECONDS = 1.0 + 2.0


# -- jobs and handlers ------------------------------------------------------------------

# Handler runs, by key: what each run did (reset for every test).
RUNS: list[tuple[str, str]] = []


@pytest.fixture(autouse=True)
def _fresh_runs() -> Iterator[None]:
    RUNS.clear()
    yield
    RUNS.clear()


@job_name("sqlite-tx.note")
class Note(BaseModel):
    key: str


class NoteJob(BackgroundJob[Note]):
    async def execute(self, args: Note) -> None:
        RUNS.append((args.key, "ran"))


# What an effect's handler does after writing its effect and before its commit.
Plan = Literal["complete", "complete-then-fail-once", "steal-the-lease-once"]


@job_name("sqlite-tx.effect")
class Effect(BaseModel):
    database: str
    key: str
    plan: Plan = "complete"


async def write_effect_and_complete_in(args: Effect, handler: str) -> None:
    """Write one effect row in the handler's own transaction and complete the
    job in it, then follow the args' plan."""
    running = current_job()
    first = running.attempt == 1
    if args.plan == "steal-the-lease-once" and first:
        # Another worker's claim, committed before this transaction starts.
        with raw_sqlite(Path(args.database)) as other:
            other.execute("UPDATE masa_jobs SET lease_token = 'stolen' WHERE id = ?", (running.id,))
    with app_connection(Path(args.database)) as connection:
        try:
            with connection:  # commits on success, rolls back on an exception
                connection.execute(
                    "INSERT INTO effects (key, handler, attempt) VALUES (?, ?, ?)",
                    (args.key, handler, running.attempt),
                )
                await running.complete_in(connection)
                if args.plan == "complete-then-fail-once" and first:
                    raise RuntimeError("the handler failed after complete_in")
        except LeaseLostError:
            RUNS.append((args.key, "lease-lost"))
            raise
    RUNS.append((args.key, f"committed {handler}"))


class EffectJob(BackgroundJob[Effect]):
    async def execute(self, args: Effect) -> None:
        await write_effect_and_complete_in(args, "first")


@job_name("sqlite-tx.two-effects")
class TwoEffects(BaseModel):
    database: str
    key: str


class FirstEffectJob(BackgroundJob[TwoEffects]):
    async def execute(self, args: TwoEffects) -> None:
        await write_effect_and_complete_in(Effect(database=args.database, key=args.key), "first")


class SecondEffectJob(BackgroundJob[TwoEffects]):
    async def execute(self, args: TwoEffects) -> None:
        # What the first handler's transaction left: its name done, the job still held.
        with raw_sqlite(Path(args.database)) as reader:
            state, done = reader.execute(
                "SELECT state, done_handlers FROM masa_jobs WHERE id = ?", (current_job().id,)
            ).fetchone()
        RUNS.append((args.key, f"second saw {state} {done}"))
        await write_effect_and_complete_in(Effect(database=args.database, key=args.key), "second")


HANDLERS = (NoteJob, EffectJob, FirstEffectJob, SecondEffectJob)


# -- the file, the store, a worker ------------------------------------------------------------


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "app.sqlite3"


@pytest.fixture
async def store(database: Path) -> AsyncIterator[SqliteJobStore]:
    """The store on the application's file, which also holds the application's tables."""
    opened = SqliteJobStore(database)
    await opened.open()
    with raw_sqlite(database) as connection:
        connection.execute("CREATE TABLE orders (id TEXT PRIMARY KEY)")
        connection.execute("CREATE TABLE effects (key TEXT, handler TEXT, attempt INTEGER)")
    try:
        yield opened
    finally:
        await opened.aclose()


def options(**values: Any) -> BackgroundJobOptions:
    settings: dict[str, Any] = {
        "poll_interval": 0.5,
        "max_retry_times": 1,
        "first_wait_duration": 0.05,
        **values,
    }
    return BackgroundJobOptions(**settings)


def manager_of(store: SqliteJobStore) -> DefaultJobManager:
    return DefaultJobManager(store, JobRegistry(HANDLERS), options())


@asynccontextmanager
async def running_worker(
    store: SqliteJobStore, handlers: Sequence[type[BackgroundJob[Any]]], **values: Any
) -> AsyncIterator[Worker]:
    worker = Worker(store, JobRegistry(handlers), options(**values))
    async with anyio.create_task_group() as group:
        await group.start(worker.run)
        try:
            yield worker
        finally:
            worker.stop()


@contextmanager
def app_connection(database: Path, **options: Any) -> Iterator[sqlite3.Connection]:
    """The application's connection, in sqlite3's default transaction mode
    unless ``options`` say otherwise."""
    with closing(sqlite3.connect(database, timeout=APP_BUSY_TIMEOUT_SECONDS, **options)) as conn:
        yield conn


@contextmanager
def raw_sqlite(database: Path) -> Iterator[sqlite3.Connection]:
    """A connection that autocommits each statement: another process's view."""
    with closing(
        sqlite3.connect(database, timeout=APP_BUSY_TIMEOUT_SECONDS, isolation_level=None)
    ) as connection:
        yield connection


def stored_jobs(database: Path) -> dict[str, str]:
    """Every committed job's state, by id, as another process reads them."""
    with raw_sqlite(database) as reader:
        return dict(reader.execute("SELECT id, state FROM masa_jobs").fetchall())


def stored_orders(database: Path) -> list[str]:
    with raw_sqlite(database) as reader:
        return [order for (order,) in reader.execute("SELECT id FROM orders ORDER BY id")]


def stored_effects(database: Path) -> list[tuple[str, str, int]]:
    with raw_sqlite(database) as reader:
        rows = reader.execute("SELECT key, handler, attempt FROM effects ORDER BY rowid")
        return [(key, handler, attempt) for key, handler, attempt in rows]


def place_order(connection: sqlite3.Connection, order: str) -> None:
    connection.execute("INSERT INTO orders (id) VALUES (?)", (order,))


async def wait_for_state(store: SqliteJobStore, job_id: str, state: JobState) -> JobRecord:
    with anyio.fail_after(WAIT_LIMIT_SECONDS):
        while True:
            record = await store.get(job_id)
            if record is not None and record.state is state:
                return record
            await anyio.sleep(0.02)


async def wait_for_run(key: str, what: str) -> None:
    async def ran() -> bool:
        return (key, what) in RUNS

    await wait_until(ran, timeout=WAIT_LIMIT_SECONDS, interval=0.02)


def job(**fields: Any) -> JobRecord:
    now = utcnow()
    values: dict[str, Any] = {
        "id": uuid4().hex,
        "name": "sqlite-tx.note",
        "payload": '{"key": "direct"}',
        "state": JobState.ENQUEUED,
        "created_at": now,
        "next_try_at": now,
    }
    return JobRecord(**{**values, **fields})


# -- enqueue in the application's transaction -----------------------------------------------


async def test_a_job_exists_only_if_the_transaction_commits_and_then_runs(
    store: SqliteJobStore, database: Path
) -> None:
    manager = manager_of(store)
    async with running_worker(store, [NoteJob]):
        with app_connection(database) as connection:
            place_order(connection, "rolled-back")
            dropped = await manager.enqueue(Note(key="rolled-back"), connection=connection)
            connection.rollback()

            place_order(connection, "committed")
            kept = await manager.enqueue(Note(key="committed"), connection=connection)
            # Not visible to anyone else before the commit.
            assert kept not in stored_jobs(database)
            connection.commit()

        await wait_for_state(store, kept, JobState.SUCCEEDED)
        assert await store.get(dropped) is None
    assert stored_orders(database) == ["committed"]
    assert RUNS == [("committed", "ran")]


async def test_a_worker_idle_before_the_commit_picks_the_job_up_after_it(
    store: SqliteJobStore, database: Path
) -> None:
    manager = manager_of(store)
    async with running_worker(store, [NoteJob], poll_interval=NO_POLL_SECONDS):
        with app_connection(database) as connection:
            job_id = await manager.enqueue(Note(key="late-commit"), connection=connection)
            # The application's work after the enqueue, before its commit: the
            # worker woken by the enqueue reads meanwhile and finds nothing.
            await anyio.sleep(0.3)
            assert stored_jobs(database) == {}
            committed = anyio.current_time()
            connection.commit()

        await wait_for_run("late-commit", "ran")
        picked_up = anyio.current_time() - committed
        await wait_for_state(store, job_id, JobState.SUCCEEDED)
    # Found by the store's poll, at least once a second whatever poll_interval says.
    assert picked_up < PICKUP_LIMIT_SECONDS


async def test_enqueue_many_in_a_transaction_stores_all_or_none(
    store: SqliteJobStore, database: Path
) -> None:
    manager = manager_of(store)
    with app_connection(database) as connection:
        await manager.enqueue_many(
            ((Note(key=f"none-{i}"), None) for i in range(3)), connection=connection
        )
        connection.rollback()
        ids = await manager.enqueue_many(
            ((Note(key=f"all-{i}"), None) for i in range(3)), connection=connection
        )
        place_order(connection, "batch")
        connection.commit()

    assert stored_jobs(database) == dict.fromkeys(ids, "enqueued")
    assert stored_orders(database) == ["batch"]


async def test_a_unique_key_in_a_transaction_answers_its_first_job_and_goes_with_a_rollback(
    store: SqliteJobStore, database: Path
) -> None:
    manager = manager_of(store)
    with app_connection(database) as connection:
        first = await manager.enqueue(Note(key="a"), unique_key="k", connection=connection)
        second = await manager.enqueue(Note(key="b"), unique_key="k", connection=connection)
        assert (second, second.duplicate, first.duplicate) == (first, True, False)
        connection.rollback()

        # The rollback took the key's holder with it: the key is free again.
        again = await manager.enqueue(Note(key="c"), unique_key="k", connection=connection)
        assert not again.duplicate
        connection.commit()

    assert stored_jobs(database) == {again: "enqueued"}
    outside = await manager.enqueue(Note(key="d"), unique_key="k")
    assert (outside, outside.duplicate) == (again, True)


@pytest.mark.parametrize("keyed", [False, True], ids=["plain", "keyed"])
async def test_a_refused_duplicate_id_undoes_only_its_own_add(
    store: SqliteJobStore, database: Path, keyed: bool
) -> None:
    def keyed_as(key: str) -> dict[str, Any]:
        return {"unique_key": key, "unique_scope": "active"} if keyed else {}

    stored_before = job()
    await store.add([stored_before])
    earlier, newer = job(), job(**keyed_as("newer"))
    with app_connection(database) as connection:
        place_order(connection, "kept")
        assert await store.add_in(connection, [earlier]) == [earlier.id]

        # A batch whose second id is in this transaction already, then one
        # whose id was committed before: each refused whole, nothing else undone.
        with pytest.raises(DuplicateJobError) as in_transaction:
            await store.add_in(connection, [newer, replace(earlier, **keyed_as("again"))])
        with pytest.raises(DuplicateJobError) as committed:
            await store.add_in(connection, [newer, replace(stored_before, **keyed_as("again"))])
        assert connection.in_transaction
        connection.commit()

    assert earlier.id in str(in_transaction.value)
    assert stored_before.id in str(committed.value)
    assert stored_jobs(database) == {stored_before.id: "enqueued", earlier.id: "enqueued"}
    assert stored_orders(database) == ["kept"]


async def test_a_refused_value_undoes_only_its_own_add(
    store: SqliteJobStore, database: Path
) -> None:
    kept = job()
    with app_connection(database) as connection:
        place_order(connection, "kept")
        await store.add_in(connection, [kept])
        # A lone surrogate: text SQLite cannot hold.
        with pytest.raises(StoreRejectedError, match="refused a value"):
            await store.add_in(connection, [job(), job(payload='{"key": "\udc80"}')])
        connection.commit()

    assert stored_jobs(database) == {kept.id: "enqueued"}
    assert stored_orders(database) == ["kept"]


# -- SQLAlchemy --------------------------------------------------------------------------------


@pytest.fixture
def engine(database: Path) -> Iterator[Engine]:
    made = create_engine(f"sqlite:///{database}")
    try:
        yield made
    finally:
        made.dispose()


ORDER = text("INSERT INTO orders (id) VALUES (:id)")


@pytest.mark.parametrize("outcome", ["rollback", "commit"])
async def test_a_sqlalchemy_connection_carries_the_job(
    store: SqliteJobStore, database: Path, engine: Engine, outcome: str
) -> None:
    manager = manager_of(store)
    # Commit-as-you-go: the enqueue is the connection's first write, before
    # SQLAlchemy began anything; its commit or rollback still decides.
    with engine.connect() as connection:
        job_id = await manager.enqueue(Note(key="sa-connection"), connection=connection)
        connection.commit() if outcome == "commit" else connection.rollback()
    with engine.begin() as begun:
        begun.execute(ORDER, {"id": "sa-begun"})
        begun_id = await manager.enqueue(Note(key="sa-begun"), connection=begun)
        if outcome == "rollback":
            begun.rollback()

    if outcome == "commit":
        assert stored_jobs(database) == {job_id: "enqueued", begun_id: "enqueued"}
        assert stored_orders(database) == ["sa-begun"]
    else:
        assert stored_jobs(database) == {}
        assert stored_orders(database) == []


@pytest.mark.parametrize("outcome", ["rollback", "commit"])
async def test_a_sqlalchemy_session_carries_the_job(
    store: SqliteJobStore, database: Path, engine: Engine, outcome: str
) -> None:
    manager = manager_of(store)
    with Session(engine) as session:
        session.execute(ORDER, {"id": "sa-session"})
        job_id = await manager.enqueue(Note(key="sa-session"), connection=session)
        many = await manager.enqueue_many([(Note(key="sa-many"), None)], connection=session)
        session.commit() if outcome == "commit" else session.rollback()

    if outcome == "commit":
        assert stored_jobs(database) == {job_id: "enqueued", many[0]: "enqueued"}
        assert stored_orders(database) == ["sa-session"]
    else:
        assert stored_jobs(database) == {}
        assert stored_orders(database) == []


# -- connections refused ------------------------------------------------------------------------


async def test_a_connection_on_another_file_is_refused_naming_both_files(
    store: SqliteJobStore, database: Path, tmp_path: Path
) -> None:
    manager = manager_of(store)
    elsewhere = tmp_path / "other.sqlite3"
    with app_connection(elsewhere) as connection:
        with pytest.raises(TransactionError) as caught:
            await manager.enqueue(Note(key="elsewhere"), connection=connection)
        assert not connection.in_transaction
    with app_connection(Path(":memory:")) as memory, pytest.raises(TransactionError):
        await manager.enqueue(Note(key="in-memory"), connection=memory)

    message = str(caught.value)
    assert str(elsewhere) in message
    assert str(database) in message
    assert stored_jobs(database) == {}


async def test_a_connection_that_autocommits_is_refused_until_it_opens_a_transaction(
    store: SqliteJobStore, database: Path
) -> None:
    manager = manager_of(store)
    with app_connection(database, isolation_level=None) as connection:
        with pytest.raises(TransactionError, match="autocommits each statement"):
            await manager.enqueue(Note(key="autocommit"), connection=connection)
        assert stored_jobs(database) == {}

        # With a transaction open explicitly, the same connection is accepted.
        connection.execute("BEGIN")
        job_id = await manager.enqueue(Note(key="explicit"), connection=connection)
        connection.execute("ROLLBACK")
    assert await store.get(job_id) is None


async def test_other_kinds_of_objects_are_refused_naming_what_is_accepted(
    store: SqliteJobStore, database: Path, engine: Engine
) -> None:
    manager = manager_of(store)
    closed = sqlite3.connect(database)
    closed.close()
    for connection in (object(), str(database), engine, closed):
        with pytest.raises(TransactionError) as caught:
            await manager.enqueue(Note(key="refused"), connection=connection)
        assert "sqlite3" in str(caught.value)
    assert stored_jobs(database) == {}
    assert "sqlite3.Connection" in store.transaction_connections


# -- complete_in ---------------------------------------------------------------------------------


def lease_lost_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and "lease lost" in r.getMessage()
    ]


async def test_complete_in_commits_the_effect_and_the_success_together(
    store: SqliteJobStore, database: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="masa_jobs")
    manager = manager_of(store)
    async with running_worker(store, [EffectJob]) as worker:
        job_id = await manager.enqueue(Effect(database=str(database), key="once"))
        record = await wait_for_state(store, job_id, JobState.SUCCEEDED)
        await wait_for_run("once", "committed first")
        # The worker's own outcome, refused since the handler's commit finished
        # the job, is written before the worker stops.
    assert record.attempts == 1
    assert record.done_handlers == (handler_name(EffectJob),)
    assert record.lease_owner is None
    assert [event.state for event in record.history] == [JobState.SUCCEEDED]
    assert record.history[0].worker == worker.worker_id
    assert stored_effects(database) == [("once", "first", 1)]
    assert worker.leases_lost == 0
    assert lease_lost_warnings(caplog) == []


async def test_a_handler_that_rolls_back_after_complete_in_leaves_the_job_to_be_retried(
    store: SqliteJobStore, database: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = manager_of(store)
    async with running_worker(store, [EffectJob]) as worker:
        job_id = await manager.enqueue(
            Effect(database=str(database), key="retried", plan="complete-then-fail-once")
        )
        record = await wait_for_state(store, job_id, JobState.SUCCEEDED)
    # The first attempt's effect and completion rolled back together; the
    # worker recorded its failure, and the retry completed.
    assert record.attempts == 2
    assert [event.state for event in record.history] == [JobState.SCHEDULED, JobState.SUCCEEDED]
    assert stored_effects(database) == [("retried", "first", 2)]
    assert worker.leases_lost == 0
    assert lease_lost_warnings(caplog) == []


async def test_complete_in_after_the_lease_was_lost_is_refused_and_rolls_the_effect_back(
    store: SqliteJobStore, database: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="masa_jobs")
    manager = manager_of(store)
    async with running_worker(store, [EffectJob]) as worker:
        job_id = await manager.enqueue(
            Effect(database=str(database), key="stale", plan="steal-the-lease-once")
        )
        await wait_for_run("stale", "lease-lost")

        # The handler's failure, refused too: the lease is the other claim's.
        async def lost() -> bool:
            return worker.leases_lost == 1

        await wait_until(lost, timeout=WAIT_LIMIT_SECONDS, interval=0.02)
        record = await store.get(job_id)

    assert record is not None
    assert (record.state, record.lease_token, record.done_handlers) == (
        JobState.PROCESSING,
        "stolen",
        (),
    )
    assert stored_effects(database) == []
    refused = [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "complete_in refused" in r.getMessage()
    ]
    assert len(refused) == 1
    assert job_id in refused[0]


async def test_two_handlers_complete_in_turn_the_first_recording_only_itself(
    store: SqliteJobStore, database: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manager = manager_of(store)
    first, second = handler_name(FirstEffectJob), handler_name(SecondEffectJob)
    async with running_worker(store, [FirstEffectJob, SecondEffectJob]) as worker:
        job_id = await manager.enqueue(TwoEffects(database=str(database), key="pair"))
        record = await wait_for_state(store, job_id, JobState.SUCCEEDED)
        await wait_for_run("pair", "committed second")

    assert ("pair", f'second saw processing ["{first}"]') in RUNS
    assert record.done_handlers == (first, second)
    assert record.attempts == 1
    assert [event.state for event in record.history] == [JobState.SUCCEEDED]
    assert stored_effects(database) == [("pair", "first", 1), ("pair", "second", 1)]
    assert worker.leases_lost == 0
    assert lease_lost_warnings(caplog) == []


async def test_finish_in_is_fenced_by_worker_and_token(
    store: SqliteJobStore, database: Path
) -> None:
    """The store's side of complete_in, without a worker: a `processing`
    outcome writes done_handlers only, under the claim's worker and token."""
    await store.add([job()])
    (claimed,) = await store.claim("w1", 1, lease=timedelta(seconds=60))
    assert claimed.lease_token is not None
    partial = JobOutcome(
        job_id=claimed.id,
        state=JobState.PROCESSING,
        attempts=claimed.attempts,
        next_try_at=claimed.next_try_at,
        done_handlers=("h1",),
        lease_token=claimed.lease_token,
    )
    with app_connection(database) as connection:
        assert not await store.finish_in(connection, "another-worker", partial)
        assert not await store.finish_in(connection, "w1", replace(partial, lease_token="other"))
        assert await store.finish_in(connection, "w1", partial)
        connection.commit()
    record = await store.get(claimed.id)
    assert record is not None
    assert (record.state, record.done_handlers, record.lease_token, record.history) == (
        JobState.PROCESSING,
        ("h1",),
        claimed.lease_token,
        (),
    )
    assert Counter(stored_jobs(database).values()) == {"processing": 1}
