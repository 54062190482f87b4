"""Job control on the SQLite store: what the contract suite leaves out.

The upgrade of a version 4 file in place; the claim, the wait and the counts
reading the claim index (EXPLAIN QUERY PLAN), with work that does not grow
with jobs of other queues, paused queues, later jobs or lower priorities
(counted in SQLite virtual machine steps); claim order against a reference
sort; unique keys, paused queues and cancel notices seen through a second
store object on the same file, which stands for another process.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, closing, contextmanager
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import anyio
import pytest

from masa_jobs import DuplicateJobError, JobRecord, JobState, StoreRejectedError
from masa_jobs.records import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    MAX_PRIORITY,
    UniqueScope,
    utcnow,
)
from masa_jobs.stores._sqlite_schema import MIGRATIONS, SCHEMA_VERSION, Statements, to_us
from masa_jobs.stores.sqlite import SqliteJobStore

from .both_backends import anyio_backend  # noqa: F401 (asyncio and trio)

pytestmark = pytest.mark.anyio

LEASE = timedelta(seconds=60)
PREFIX = "masa_"
SQL = Statements.for_prefix(PREFIX)
# Guards every wait for a condition: far above what it should take.
WAIT_LIMIT_SECONDS = 5.0
# Jobs of each kind that a claim must not walk: enough that walking them
# would cost many times the steps of a claim that does not.
BACKLOG = 2000
# VM steps a statement may take beyond its cost with half the backlog: room
# for a deeper B-tree, far below a walk over the BACKLOG jobs added.
STEP_ALLOWANCE = 50


@pytest.fixture
def database(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


def job(**fields: Any) -> JobRecord:
    now = utcnow()
    values: dict[str, Any] = {
        "id": uuid4().hex,
        "name": "control.job",
        "payload": "{}",
        "state": JobState.ENQUEUED,
        "created_at": now,
        "next_try_at": now,
    }
    return JobRecord(**{**values, **fields})


@asynccontextmanager
async def opened(path: Path) -> AsyncIterator[SqliteJobStore]:
    store = SqliteJobStore(path)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


@contextmanager
def raw_sqlite(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        yield connection


def plan(path: Path, text: str, params: tuple[Any, ...]) -> list[str]:
    """The details of EXPLAIN QUERY PLAN of a statement."""
    with raw_sqlite(path) as connection:
        rows = connection.execute(f"EXPLAIN QUERY PLAN {text}", params).fetchall()
    return [detail for _, _, _, detail in rows]


def steps(path: Path, text: str, params: tuple[Any, ...]) -> int:
    """The virtual machine steps SQLite takes to run a statement to its end:
    a measure of the index entries and rows it reads, exact and repeatable."""
    taken = 0

    def count() -> int:
        nonlocal taken
        taken += 1
        return 0

    with raw_sqlite(path) as connection:
        connection.set_progress_handler(count, 1)
        connection.execute(text, params).fetchall()
    return taken


def assert_reads_the_claim_index(details: list[str]) -> None:
    claim_index = "SEARCH masa_jobs USING INDEX masa_jobs_queue (queue=? AND priority=?"
    assert any(d.startswith(claim_index) for d in details), details
    assert not [d for d in details if d.startswith("SCAN masa_jobs")], details


# -- upgrading a version 4 file ------------------------------------------------------


def create_version_4_file(path: Path, now: datetime) -> dict[str, str]:
    """A file as masa-jobs with schema version 4 left it: a due job, a later
    one, a held one and a dead one."""
    ids = {kind: uuid4().hex for kind in ("due", "later", "held", "dead")}
    now_us = to_us(now)
    hour = 3600 * 1_000_000
    # id, state, created_at, next_try_at, attempts, lease (owner, expiry, token), finished_at
    rows = [
        (ids["due"], "enqueued", now_us, now_us, 0, None, None, None, None),
        (ids["later"], "scheduled", now_us + 1, now_us + hour, 0, None, None, None, None),
        (ids["held"], "processing", now_us + 2, now_us, 1, "w", now_us + hour, "t", None),
        (ids["dead"], "dead", now_us + 3, now_us, 3, None, None, None, now_us),
    ]
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(SQL.create_version_table)
        for step in range(1, 5):
            for statement in MIGRATIONS[step]:
                connection.execute(statement.format(p=PREFIX))
        connection.execute(SQL.write_version, (4,))
        connection.executemany(
            "INSERT INTO masa_jobs (id, name, payload, state, created_at, next_try_at, "
            "attempts, done_handlers, lease_owner, lease_expires_at, lease_token, finished_at) "
            "VALUES (?1, 'old.job', '{}', ?2, ?3, ?4, ?5, '[]', ?6, ?7, ?8, ?9)",
            rows,
        )
        connection.commit()
    return ids


def indexes(path: Path) -> set[str]:
    with raw_sqlite(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        return {name for (name,) in rows}


def schema_version(path: Path) -> int:
    with raw_sqlite(path) as connection:
        (version,) = connection.execute("SELECT version FROM masa_schema_version").fetchone()
    return int(version)


async def test_a_version_4_file_is_upgraded_in_place_to_queues_and_keys(database: Path) -> None:
    ids = create_version_4_file(database, utcnow() - timedelta(minutes=5))
    assert "masa_jobs_due" in indexes(database)

    async with opened(database) as store:
        before = [await store.get(job_id) for job_id in ids.values()]
        counts = await store.count_by_state(await store.now())
        oldest = await store.oldest_due_at()
        [due] = await store.claim("worker-1", 10, LEASE, queues=[DEFAULT_QUEUE])
        keyed = job(unique_key="k", unique_scope=UniqueScope.ACTIVE, queue="mail", priority=3)
        assert await store.add([keyed, replace(keyed, id=uuid4().hex)]) == [keyed.id, keyed.id]
        await store.set_queue_paused("mail", True)
        assert await store.claim("worker-1", 10, LEASE) == []
        assert await store.paused_queues() == {"mail"}

    # Every job stored before the upgrade waits in the default queue, first in
    # priority, and holds no key.
    assert all(r is not None for r in before)
    for record in before:
        assert record is not None
        assert (record.queue, record.priority) == (DEFAULT_QUEUE, DEFAULT_PRIORITY)
        assert (record.unique_key, record.unique_scope, record.unique_until) == (None, None, None)
    assert due.id == ids["due"]
    assert (counts[JobState.ENQUEUED], counts[JobState.SCHEDULED]) == (1, 1)
    assert oldest is not None
    # The claim index replaces the due index; keys have their unique index.
    assert {"masa_jobs_queue", "masa_jobs_unique", "masa_jobs_leases"} <= indexes(database)
    assert "masa_jobs_due" not in indexes(database)
    assert schema_version(database) == SCHEMA_VERSION == 5


async def test_a_priority_beyond_the_range_is_refused_and_nothing_of_the_batch_is_stored(
    database: Path,
) -> None:
    async with opened(database) as store:
        good, bad = job(), job(priority=MAX_PRIORITY + 1)
        with pytest.raises(StoreRejectedError):
            await store.add([good, bad])
        assert await store.get(good.id) is None


async def test_a_keyed_record_with_a_stored_id_is_a_duplicate_not_a_holder(
    database: Path,
) -> None:
    async with opened(database) as store:
        first = job(unique_key="k1", unique_scope=UniqueScope.ACTIVE)
        await store.add([first])
        again = replace(first, unique_key="k2")
        fresh = job(unique_key="k3", unique_scope=UniqueScope.ACTIVE)

        # ON CONFLICT covers the key only: an id stored already still refuses the batch.
        with pytest.raises(DuplicateJobError):
            await store.add([fresh, again])

        assert await store.get(fresh.id) is None
        assert await store.add([fresh]) == [fresh.id]


# -- the claim reads one index, per queue and priority ---------------------------------


async def filled(path: Path) -> None:
    """Jobs of three queues and every priority, due and later, some held."""
    async with opened(path) as store:
        later = utcnow() + timedelta(hours=1)
        await store.add(
            [
                job(
                    queue=("mail", "sms", "bulk")[n % 3],
                    priority=n % (MAX_PRIORITY + 1),
                    next_try_at=later if n % 4 == 0 else utcnow(),
                )
                for n in range(300)
            ]
        )
        await store.claim("worker-1", 30, LEASE)
        await store.set_queue_paused("bulk", True)


async def test_claims_and_waits_read_the_claim_index(database: Path) -> None:
    await filled(database)
    now = to_us(utcnow())
    served = '["mail", "sms"]'

    for text, params in (
        (SQL.claim_one, (now, 10, "mail")),
        (SQL.claim_served, (now, 10, served)),
        (SQL.claim_every, (now, 10)),
        (SQL.earliest_served, (served,)),
        (SQL.earliest_every, ()),
    ):
        assert_reads_the_claim_index(plan(database, text, params))
    # One queue: the index order is the claim order, nothing is sorted.
    assert not [d for d in plan(database, SQL.claim_one, (now, 10, "mail")) if "TEMP B-TREE" in d]
    # Expired leases: a search of the lease index (held jobs are few).
    for text, params in (
        (SQL.expired_one, (now, 10, "mail")),
        (SQL.expired_served, (now, 10, served)),
        (SQL.expired_every, (now, 10)),
    ):
        details = plan(database, text, params)
        assert "SEARCH masa_jobs USING INDEX masa_jobs_leases (lease_expires_at<?)" in details
        assert not [d for d in details if d.startswith("SCAN masa_jobs")], details
    # A key: one probe of the unique index.
    for text in (SQL.key_holder, SQL.release_lapsed_key):
        params = ("k",) if text == SQL.key_holder else ("k", now)
        assert plan(database, text, params) == [
            "SEARCH masa_jobs USING INDEX masa_jobs_unique (unique_key=?)"
        ]


async def add_backlog(store: SqliteJobStore) -> None:
    """Jobs a claim of the queue ``mail`` must not walk: due ones of a paused
    queue, later and lower-priority ones of ``mail``, later ones elsewhere."""
    later = utcnow() + timedelta(hours=1)
    await store.add([job(queue="bulk") for _ in range(BACKLOG)])
    await store.add([job(queue="mail", next_try_at=later) for _ in range(BACKLOG)])
    await store.add([job(queue="mail", priority=MAX_PRIORITY) for _ in range(BACKLOG)])
    await store.add([job(queue="other", next_try_at=later) for _ in range(BACKLOG)])


async def test_a_claim_reads_no_more_with_a_larger_backlog_it_does_not_take(
    database: Path,
) -> None:
    async with opened(database) as store:
        await store.add([job(queue="mail") for _ in range(20)])
        await store.set_queue_paused("bulk", True)
        now = to_us(utcnow())
        statements = (
            (SQL.claim_one, (now, 10, "mail")),
            (SQL.claim_one, (now, 10, "bulk")),
            (SQL.claim_served, (now, 10, '["mail", "bulk"]')),
            (SQL.claim_every, (now, 10)),
            (SQL.earliest_served, ('["mail"]',)),
            (SQL.earliest_every, ()),
            (SQL.count_due, (now, 10)),
        )
        await add_backlog(store)
        once = [steps(database, *statement) for statement in statements]
        await add_backlog(store)
        twice = [steps(database, *statement) for statement in statements]

    # Twice the backlog costs what the backlog cost: a few probes per queue
    # and priority, never a walk over the jobs the claim leaves.
    for cost_once, cost_twice in zip(once, twice, strict=True):
        assert cost_twice <= cost_once + STEP_ALLOWANCE, (once, twice)


async def test_claims_follow_priority_due_time_and_creation_across_queues(
    database: Path,
) -> None:
    rng = random.Random(5)
    now = utcnow()
    records = [
        job(
            queue=rng.choice(["mail", "sms", "push"]),
            priority=rng.randint(0, MAX_PRIORITY),
            next_try_at=now - timedelta(seconds=rng.randint(0, 50)),
            attempts=rng.randint(0, 2),
        )
        for _ in range(400)
    ]
    served = {"mail", "sms"}
    expected = [
        r.id
        for r in sorted(
            (r for r in records if r.queue in served),
            key=lambda r: (r.priority, r.next_try_at, r.attempts, r.created_at),
        )
    ]

    async with opened(database) as store:
        # One batch: the insertion order breaks the ties that Python's stable sort keeps.
        await store.add(records)
        order: list[str] = []
        while claimed := await store.claim("worker-1", 7, LEASE, queues=sorted(served)):
            order.extend(r.id for r in claimed)

    assert order == expected


# -- what another store on the file sees ------------------------------------------------


async def test_one_key_added_through_two_stores_at_once_stores_one_job(database: Path) -> None:
    async with opened(database) as one, opened(database) as two:
        records = [
            job(unique_key="nightly", unique_scope=UniqueScope.ACTIVE, payload=f'{{"n": {n}}}')
            for n in range(40)
        ]
        answers: list[str] = []

        async def enqueue(store: SqliteJobStore, record: JobRecord) -> None:
            answers.extend(await store.add([record]))

        with anyio.fail_after(WAIT_LIMIT_SECONDS):
            async with anyio.create_task_group() as tg:
                for n, record in enumerate(records):
                    tg.start_soon(enqueue, (one, two)[n % 2], record)

        stored = [r.id for r in records if await one.get(r.id) is not None]
    assert len(stored) == 1
    assert set(answers) == set(stored)


async def test_a_pause_holds_for_every_store_on_the_file_and_across_a_restart(
    database: Path,
) -> None:
    record = job(queue="mail")
    async with opened(database) as operator, opened(database) as worker:
        await operator.add([record])
        await operator.set_queue_paused("mail", True)
        assert await worker.claim("worker-1", 10, LEASE, queues=["mail"]) == []
    async with opened(database) as worker:
        assert await worker.paused_queues() == {"mail"}
        assert await worker.claim("worker-1", 10, LEASE) == []
        await worker.set_queue_paused("mail", False)
        assert [r.id for r in await worker.claim("worker-1", 10, LEASE)] == [record.id]


async def test_a_cancel_listener_hears_once_the_cancel_is_committed(database: Path) -> None:
    record = job()
    seen: list[tuple[str, str]] = []

    def listener(job_id: str) -> None:
        # Read through another connection: the cancel is visible to it already.
        with raw_sqlite(database) as connection:
            (state,) = connection.execute(
                "SELECT state FROM masa_jobs WHERE id = ?", (job_id,)
            ).fetchone()
        seen.append((job_id, state))

    async with opened(database) as store:
        store.add_cancel_listener(listener)
        await store.add([record])
        # A pending job's cancel is no notice: no worker runs it.
        other = job()
        await store.add([other])
        now = await store.now()
        assert await store.transition(other.id, [JobState.ENQUEUED], JobState.CANCELLED, now)
        await store.claim("worker-1", 10, LEASE)
        moved = await store.transition(
            record.id, [JobState.PROCESSING], JobState.CANCELLED, await store.now()
        )

    assert moved is not None
    assert seen == [(record.id, "cancelled")]
