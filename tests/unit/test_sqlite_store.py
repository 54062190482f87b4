"""What the SQLite store adds to the contract: settings, files, schema versions, processes."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import anyio
import pytest
from masa_jobs.containers import BackgroundJobContainer, load_env

from masa_jobs import (
    ConfigurationError,
    DuplicateJobError,
    JobOutcome,
    JobQuery,
    JobRecord,
    JobState,
    SchemaVersionError,
    StoreError,
    StoreRejectedError,
    StoreUnavailableError,
)
from masa_jobs.queries import encode_cursor
from masa_jobs.records import (
    FINISHED_STATES,
    MAX_HISTORY_EVENTS,
    ScheduleRecord,
    decode_history,
    display_state,
    encode_history,
    utcnow,
)
from masa_jobs.stores import _sqlite_connection as sqlite_connection
from masa_jobs.stores import sqlite as sqlite_module
from masa_jobs.stores._sqlite_listing import list_statement
from masa_jobs.stores._sqlite_schema import MIGRATIONS, SCHEMA_VERSION, Statements
from masa_jobs.stores.base import PURGE_CHUNK_ROWS, Store
from masa_jobs.stores.sqlite import SqliteJobStore
from tests.listing import all_jobs

REPO_ROOT = Path(__file__).resolve().parents[2]
LEASE = timedelta(seconds=60)
T0 = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)


def job(**fields: Any) -> JobRecord:
    now = utcnow()
    values: dict[str, Any] = {
        "id": uuid4().hex,
        "name": "sqlite.job",
        "payload": "{}",
        "state": JobState.ENQUEUED,
        "created_at": now,
        "next_try_at": now,
    }
    return JobRecord(**{**values, **fields})


@asynccontextmanager
async def opened(path: Path, **settings: Any) -> AsyncIterator[SqliteJobStore]:
    store = SqliteJobStore(path, **settings)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


def tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        return {name for (name,) in rows}


# -- settings ----------------------------------------------------------------------


def test_settings_come_from_the_store_section_as_strings(tmp_path: Path) -> None:
    store = SqliteJobStore.from_settings(
        {
            "backend": "sqlite",
            "path": str(tmp_path / "jobs.db"),
            "busy_timeout": "2.5",
            "synchronous": "FULL",
            "table_prefix": "app_",
        }
    )

    assert store.path == tmp_path / "jobs.db"
    assert "jobs.db" in repr(store)


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"backend": "sqlite"}, "store.path"),
        ({"path": ""}, "store.path"),
        ({"path": "x.db", "busy_timeout": "soon"}, "store.busy_timeout"),
        ({"path": "x.db", "busy_timeout": -1}, "store.busy_timeout"),
        ({"path": "x.db", "synchronous": "off"}, "store.synchronous"),
        ({"path": "x.db", "table_prefix": "drop table;"}, "store.table_prefix"),
        ({"path": "x.db", "pth": "y.db"}, "pth"),
    ],
    ids=["no-path", "empty-path", "busy-text", "busy-negative", "sync", "prefix", "unknown"],
)
def test_bad_settings_are_a_configuration_error(settings: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        SqliteJobStore.from_settings(settings)


def test_the_container_builds_the_sqlite_store_from_the_environment(tmp_path: Path) -> None:
    container = BackgroundJobContainer()
    path = tmp_path / "env.db"
    load_env(
        container.config,
        {"MASA_JOBS_STORE__BACKEND": "sqlite", "MASA_JOBS_STORE__PATH": str(path)},
    )

    store = container.job_store()

    assert isinstance(store, SqliteJobStore)
    assert store.path == path


# -- opening -----------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_missing_directory_is_named_and_nothing_is_created(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "jobs.db"
    store = SqliteJobStore(path)

    with pytest.raises(StoreUnavailableError, match="does not exist") as caught:
        await store.open()

    assert str(path) in str(caught.value)
    assert not path.parent.exists()


@pytest.mark.anyio
async def test_a_path_that_is_a_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailableError) as caught:
        await SqliteJobStore(tmp_path).open()

    assert str(tmp_path) in str(caught.value)


@pytest.mark.anyio
async def test_a_file_that_is_not_a_database_is_named_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    text = "not a database, " * 100
    path.write_text(text)

    with pytest.raises(StoreUnavailableError) as caught:
        await SqliteJobStore(path).open()

    assert str(path) in str(caught.value)
    assert path.read_text() == text


@pytest.mark.anyio
async def test_an_sqlite_without_json_functions_is_refused_at_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stands for an SQLite library built without JSON: the probe names a missing function.
    monkeypatch.setattr(sqlite_connection, "_JSON_PROBE", "SELECT json_nowhere('[]')")
    path = tmp_path / "jobs.db"

    with pytest.raises(StoreError, match="JSON functions") as caught:
        await SqliteJobStore(path).open()

    assert str(path) in str(caught.value)
    assert not isinstance(caught.value, StoreUnavailableError)


@pytest.mark.anyio
async def test_a_store_that_is_not_open_says_so(tmp_path: Path) -> None:
    store = SqliteJobStore(tmp_path / "jobs.db")

    with pytest.raises(StoreError, match="not open"):
        await store.get("x")
    async with opened(tmp_path / "jobs.db"):
        pass
    with pytest.raises(StoreError, match="not open"):
        await store.claim("worker-1", 1, LEASE)


@pytest.mark.anyio
async def test_open_and_aclose_are_idempotent_and_jobs_outlive_the_connection(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    store = SqliteJobStore(path)
    record = job(payload='{"kept": true}')
    await store.open()
    await store.open()
    await store.add([record])
    await store.aclose()
    await store.aclose()

    async with opened(path) as again:
        found = await again.get(record.id)

    assert found is not None
    assert found.payload == record.payload


# -- schema ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_first_open_creates_a_versioned_schema_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"

    async with opened(path):
        pass

    assert {"masa_jobs", "masa_workers", "masa_schema_version"} <= tables(path)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT version FROM masa_schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.anyio
async def test_a_newer_schema_version_is_refused_and_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with opened(path) as store:
        await store.add([job()])
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE masa_schema_version SET version = 99")

    with pytest.raises(SchemaVersionError, match="99") as caught:
        await SqliteJobStore(path).open()

    assert str(path) in str(caught.value)
    assert "upgrade masa-jobs" in str(caught.value)
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT version FROM masa_schema_version").fetchall() == [(99,)]
        assert connection.execute("SELECT COUNT(*) FROM masa_jobs").fetchone() == (1,)


@pytest.mark.anyio
async def test_table_prefixes_keep_two_stores_apart_in_one_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with opened(path, table_prefix="one_") as one, opened(path, table_prefix="two_") as two:
        await one.add([job()])

        assert len(await all_jobs(one)) == 1
        assert await all_jobs(two) == []

    assert {"one_jobs", "two_jobs", "one_schema_version", "two_schema_version"} <= tables(path)


# -- behaviour specific to SQLite --------------------------------------------------


@pytest.mark.anyio
async def test_a_duplicate_id_names_the_job(tmp_path: Path) -> None:
    async with opened(tmp_path / "jobs.db") as store:
        existing = job()
        await store.add([existing])

        with pytest.raises(ValueError, match=existing.id):
            await store.add([job(), existing])

        assert len(await all_jobs(store)) == 1


@pytest.mark.anyio
async def test_a_write_lock_held_too_long_elsewhere_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with opened(path, busy_timeout=0.05) as store:
        await store.add([job()])
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreUnavailableError, match="locked") as caught:
                await store.claim("worker-1", 10, LEASE)
            assert str(path) in str(caught.value)
            other.execute("ROLLBACK")
        finally:
            other.close()

        assert len(await store.claim("worker-1", 10, LEASE)) == 1


@pytest.mark.anyio
async def test_a_job_added_by_another_connection_wakes_a_waiter_by_polling(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    # Two stores on one file stand for two processes: no in-process event links them.
    async with opened(path) as waiting, opened(path) as adding:
        woken_after: list[float] = []

        async def waiter() -> None:
            started = anyio.current_time()
            await waiting.wait_for_work(30)
            woken_after.append(anyio.current_time() - started)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.1)
                await adding.add([job()])

    assert woken_after
    assert woken_after[0] <= 0.1 + 1.5


class FakeClock:
    """A clock that moves only when told to: the store's time in these tests."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def outcome(record: JobRecord, state: JobState, **fields: Any) -> JobOutcome:
    values: dict[str, Any] = {
        "job_id": record.id,
        "state": state,
        "attempts": record.attempts,
        "next_try_at": record.next_try_at,
        "finished_at": utcnow() if state.is_finished else None,
        "lease_token": record.lease_token,
    }
    return JobOutcome(**{**values, **fields})


@pytest.mark.anyio
async def test_an_injected_clock_decides_due_times_and_leases(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with opened(tmp_path / "jobs.db", clock=clock) as store:
        assert await store.now() == T0
        later = job(state=JobState.SCHEDULED, created_at=T0, next_try_at=T0 + timedelta(hours=1))
        await store.add([later])
        assert await store.claim("worker-1", 10, LEASE) == []

        clock.advance(3600)
        [held] = await store.claim("worker-1", 10, LEASE)
        assert held.last_try_at == T0 + timedelta(hours=1)
        assert held.lease_expires_at == held.last_try_at + LEASE
        assert held.lease_token is not None

        clock.advance(59)
        assert await store.claim("worker-2", 10, LEASE) == []
        assert await store.extend_leases("worker-1", {held.id: held.lease_token}, LEASE) == {
            held.id
        }
        assert await store.get(held.id) == replace(held, lease_expires_at=clock.now + LEASE)

        clock.advance(61)
        [again] = await store.claim("worker-2", 10, LEASE)
        assert (again.id, again.attempts, again.last_try_at) == (held.id, 2, clock.now)
        assert again.lease_token not in (None, held.lease_token)
        assert await store.finish("worker-1", [outcome(held, JobState.SUCCEEDED)]) == set()


@pytest.mark.anyio
async def test_wait_for_work_reads_the_injected_clock(tmp_path: Path) -> None:
    clock = FakeClock(T0)
    async with opened(tmp_path / "jobs.db", clock=clock) as store:
        await store.add(
            [job(state=JobState.SCHEDULED, created_at=T0, next_try_at=T0 + timedelta(days=1))]
        )
        started = anyio.current_time()
        await store.wait_for_work(0.1)
        assert anyio.current_time() - started >= 0.05

        clock.advance(86400)
        with anyio.fail_after(1):
            await store.wait_for_work(30)


@pytest.mark.anyio
async def test_claim_looks_past_any_number_of_excluded_jobs(tmp_path: Path) -> None:
    created = utcnow()
    # In claim order: the first is the most overdue.
    records = [
        job(created_at=created, next_try_at=created - timedelta(seconds=10 - i)) for i in range(10)
    ]
    async with opened(tmp_path / "jobs.db") as store:
        await store.add(records)

        claimed = await store.claim(
            "worker-1", 2, LEASE, exclude=[r.id for r in records[:5]] + ["unknown"]
        )

        assert [r.id for r in claimed] == [records[5].id, records[6].id]
        assert [r.id for r in await store.claim("worker-1", 10, LEASE)] == [
            r.id for r in records[:5] + records[7:]
        ]


@pytest.mark.anyio
async def test_a_value_sqlite_cannot_store_is_refused_and_nothing_of_the_batch_is_written(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    async with opened(path) as store:
        await store.add([job(), job()])
        held = await store.claim("worker-1", 2, LEASE)
        # A lone surrogate is not UTF-8: sqlite3 cannot bind it.
        errors = ["a plain error", "a lone \ud800 surrogate"]
        outcomes = [
            outcome(record, JobState.DEAD, last_error=error)
            for record, error in zip(held, errors, strict=True)
        ]

        with pytest.raises(StoreRejectedError) as caught:
            await store.finish("worker-1", outcomes)

        assert str(path) in str(caught.value)
        for record in held:
            after = await store.get(record.id)
            assert after is not None
            assert (after.state, after.last_error) == (JobState.PROCESSING, None)
            assert after.lease_token == record.lease_token
        assert await store.finish("worker-1", outcomes[:1]) == {held[0].id}

        refused = job(payload='{"text": "\udfff"}')
        with pytest.raises(StoreRejectedError):
            await store.add([job(), refused])
        assert len(await all_jobs(store)) == 2


def finished(count: int) -> list[JobRecord]:
    done_at = utcnow() - timedelta(hours=1)
    return [
        job(state=JobState.SUCCEEDED, attempts=1, finished_at=done_at, next_try_at=done_at)
        for _ in range(count)
    ]


@pytest.mark.anyio
async def test_purge_without_a_limit_removes_everything_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "PURGE_CHUNK_ROWS", 2)
    async with opened(tmp_path / "jobs.db") as store:
        await store.add(finished(5))

        assert await store.purge(FINISHED_STATES, utcnow()) == 5
        assert await all_jobs(store) == []


@pytest.mark.anyio
async def test_purge_with_a_limit_removes_one_chunk(tmp_path: Path) -> None:
    async with opened(tmp_path / "jobs.db") as store:
        await store.add(finished(5))

        assert await store.purge(FINISHED_STATES, utcnow(), limit=3) == 3
        assert await store.purge(FINISHED_STATES, utcnow(), limit=0) == 0
        assert await store.purge(FINISHED_STATES, utcnow(), limit=3) == 2
        assert await all_jobs(store) == []


# -- operator reads and history -------------------------------------------------------

CURSOR = encode_cursor(job(id="m"))
LIST_QUERIES = {
    "every job": JobQuery(),
    "every job, oldest first, after a cursor": JobQuery(newest_first=False, cursor=CURSOR),
    "one state": JobQuery.of(JobState.DEAD),
    "one state after a cursor": JobQuery.of(JobState.SUCCEEDED, cursor=CURSOR),
    "enqueued": JobQuery.of(JobState.ENQUEUED),
    "scheduled of one name": JobQuery.of(JobState.SCHEDULED, name="mail"),
    "several states in a time range": JobQuery.of(
        [JobState.DEAD, JobState.CANCELLED], created_from=T0, created_until=T0 + LEASE
    ),
    "one name, every state, after a cursor": JobQuery(name="mail", cursor=CURSOR),
    "one name and state, oldest first, in a range": JobQuery.of(
        JobState.PROCESSING, name="mail", created_from=T0, newest_first=False, cursor=CURSOR
    ),
}


def query_plan(path: Path, text: str, params: tuple[Any, ...]) -> list[tuple[int, int, str]]:
    """EXPLAIN QUERY PLAN of a statement: (id, parent, detail) per step."""
    with closing(sqlite3.connect(path)) as connection:
        rows = connection.execute(f"EXPLAIN QUERY PLAN {text}", params).fetchall()
    return [(node, parent, detail) for node, parent, _, detail in rows]


def details(plan: list[tuple[int, int, str]]) -> list[str]:
    return [detail for _, _, detail in plan]


async def filled_file(path: Path) -> None:
    """A file with jobs of every state and two names, so the planner has rows to weigh."""
    async with opened(path) as store:
        records = [
            job(name=("mail", "report")[n % 2], next_try_at=utcnow() + timedelta(hours=n % 3))
            for n in range(300)
        ]
        await store.add(records)
        held = await store.claim("worker-1", 60, LEASE)
        await store.finish("worker-1", [outcome(r, JobState.DEAD) for r in held[:30]])


@pytest.mark.anyio
@pytest.mark.parametrize("query", LIST_QUERIES.values(), ids=LIST_QUERIES.keys())
async def test_every_list_reads_its_page_from_an_index(tmp_path: Path, query: JobQuery) -> None:
    path = tmp_path / "jobs.db"
    await filled_file(path)

    plan = query_plan(path, *list_statement("masa_", query, utcnow()))

    tables = [detail for _, _, detail in plan if "masa_jobs " in detail]
    assert tables, plan
    index = "masa_jobs_list" if query.name is None else "masa_jobs_list_name"
    # A search of the list index per state: never a scan of the table or an index.
    assert all(d.startswith(f"SEARCH masa_jobs USING INDEX {index} (") for d in tables), plan
    # Nothing sorts a state's rows: a sort only merges the few rows of each
    # state's subquery (a step beside the scan of that subquery's result).
    for node, parent, detail in plan:
        if "TEMP B-TREE" in detail:
            beside = [d for n, p, d in plan if p == parent and n != node]
            assert any(d.startswith("SCAN (subquery-") for d in beside), plan


@pytest.mark.anyio
async def test_counts_due_times_and_finish_rates_read_indexes(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    await filled_file(path)
    sql = Statements.for_prefix("masa_")

    stored = query_plan(path, sql.count_stored, ())
    due = query_plan(path, sql.count_due, (0, 10))
    later = query_plan(path, sql.count_later, (0, 10))
    oldest = query_plan(path, sql.oldest_due, ())
    rate = query_plan(path, sql.finished_per_minute, (0,))

    # Counting per state reads the counts the triggers keep, never the jobs.
    assert [d for _, _, d in stored] == ["SCAN masa_job_counts"]
    # Either side of the pending jobs is a bounded search of the claim index,
    # one range per queue and priority; nothing walks the jobs.
    claim_index = "SEARCH masa_jobs USING INDEX masa_jobs_queue"
    assert f"{claim_index} (queue=? AND priority=? AND next_try_at<?)" in details(due)
    assert f"{claim_index} (queue=? AND priority=? AND next_try_at>?)" in details(later)
    assert f"{claim_index} (queue=? AND priority=?)" in details(oldest)
    for plan in (due, later, oldest):
        assert not [d for d in details(plan) if d.startswith("SCAN masa_jobs")], plan
    assert next(d for _, _, d in rate).startswith(
        "SEARCH masa_jobs USING COVERING INDEX masa_jobs_finished (state=? AND finished_at>?)"
    )


@pytest.mark.anyio
async def test_the_stored_history_is_the_json_of_encode_history(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with opened(path) as store:
        record = job()
        await store.add([record])
        [held] = await store.claim("worker-1", 1, LEASE)
        await store.finish(
            "worker-1", [outcome(held, JobState.SCHEDULED, last_error='a "quoted"\nerror')]
        )
        await store.transition(record.id, [JobState.SCHEDULED], JobState.CANCELLED, utcnow())
    with closing(sqlite3.connect(path)) as connection:
        (text,) = connection.execute("SELECT history FROM masa_jobs").fetchone()

    events = decode_history(text)
    assert text == encode_history(events)
    assert [(e.state, e.worker, e.error) for e in events] == [
        (JobState.SCHEDULED, "worker-1", 'a "quoted"\nerror'),
        (JobState.CANCELLED, None, None),
    ]
    assert events[0].started_at == held.last_try_at


@pytest.mark.anyio
@pytest.mark.parametrize("damage", ["not json", '{"an": "object"}'])
async def test_a_damaged_history_starts_again_and_the_outcome_is_recorded(
    tmp_path: Path, damage: str
) -> None:
    path = tmp_path / "jobs.db"
    async with opened(path) as store:
        record = job()
        await store.add([record])
        [held] = await store.claim("worker-1", 1, LEASE)
        with closing(sqlite3.connect(path)) as raw:
            raw.execute("UPDATE masa_jobs SET history = ?", (damage,))
            raw.commit()
        assert (await store.get(record.id)) == replace(held, history=())

        assert await store.finish("worker-1", [outcome(held, JobState.SUCCEEDED)]) == {held.id}

        after = await store.get(record.id)
    assert after is not None
    assert [e.state for e in after.history] == [JobState.SUCCEEDED]


@pytest.mark.anyio
async def test_transitions_keep_the_newest_events(tmp_path: Path) -> None:
    async with opened(tmp_path / "jobs.db") as store:
        record = job()
        await store.add([record])
        moves = [JobState.CANCELLED, JobState.ENQUEUED] * (MAX_HISTORY_EVENTS // 2 + 2)
        for state in moves:
            await store.transition(record.id, list(JobState), state, utcnow())

        history = (await store.get(record.id) or record).history

    assert len(history) == MAX_HISTORY_EVENTS
    assert [e.state for e in history] == moves[-MAX_HISTORY_EVENTS:]
    assert all(e.worker is None and e.attempt == 0 for e in history)


@pytest.mark.anyio
async def test_a_claim_answers_without_the_history(tmp_path: Path) -> None:
    async with opened(tmp_path / "jobs.db") as store:
        record = job()
        await store.add([record])
        [held] = await store.claim("worker-1", 1, LEASE)
        retry = outcome(held, JobState.SCHEDULED, next_try_at=utcnow(), last_error="boom")
        await store.finish("worker-1", [retry])

        [again] = await store.claim("worker-1", 1, LEASE)
        stored = await store.get(record.id)

    # No worker reads it, and a job retried often would carry it on every claim.
    assert again.history == ()
    assert stored is not None
    assert [e.error for e in stored.history] == ["boom"]
    assert replace(stored, history=()) == again


@pytest.mark.anyio
async def test_operator_reads_of_an_empty_file(tmp_path: Path) -> None:
    async with opened(tmp_path / "jobs.db") as store:
        assert await store.oldest_due_at() is None
        assert await store.finished_per_minute(T0) == []
        assert await store.count_by_state(utcnow()) == dict.fromkeys(JobState, 0)


# -- counts kept by triggers ------------------------------------------------------------


def stored_counts(path: Path, prefix: str = "masa_") -> dict[str, int]:
    """The counts the triggers keep, without the states no job holds."""
    with closing(sqlite3.connect(path)) as connection:
        rows = connection.execute(f"SELECT state, n FROM {prefix}job_counts").fetchall()
    return {state: n for state, n in rows if n}


def counted_rows(path: Path, prefix: str = "masa_") -> dict[str, int]:
    """The jobs per stored state, counted row by row."""
    with closing(sqlite3.connect(path)) as connection:
        rows = connection.execute(f"SELECT state, COUNT(*) FROM {prefix}jobs GROUP BY state")
        return dict(rows.fetchall())


async def assert_counts_are_right(store: SqliteJobStore, path: Path) -> None:
    """The kept counts match the rows, and ``count_by_state`` a scan of every job."""
    assert stored_counts(path) == counted_rows(path)
    now = await store.now()
    scanned = dict.fromkeys(JobState, 0)
    for record in await all_jobs(store):
        scanned[display_state(record, now)] += 1
    assert await store.count_by_state(now) == scanned


@pytest.mark.anyio
async def test_counts_follow_every_write(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    later = utcnow() + timedelta(hours=1)
    async with opened(path) as store:
        await store.add([job() for _ in range(4)] + [job(next_try_at=later)] + finished(3))
        await assert_counts_are_right(store, path)

        held = await store.claim("worker-1", 3, LEASE)
        await assert_counts_are_right(store, path)
        # A lease renewal changes no state, so no count.
        await store.extend_leases("worker-1", {r.id: str(r.lease_token) for r in held}, LEASE)
        await assert_counts_are_right(store, path)

        retry = outcome(held[1], JobState.SCHEDULED, next_try_at=later, finished_at=None)
        await store.finish("worker-1", [outcome(held[0], JobState.SUCCEEDED), retry])
        await assert_counts_are_right(store, path)

        await store.transition(held[2].id, [JobState.PROCESSING], JobState.CANCELLED, utcnow())
        await store.transition(held[1].id, [JobState.SCHEDULED], JobState.ENQUEUED, utcnow())
        await assert_counts_are_right(store, path)

        assert await store.delete(held[2].id) is True
        await assert_counts_are_right(store, path)

        assert await store.purge(FINISHED_STATES, utcnow() - timedelta(minutes=1)) == 3
        await assert_counts_are_right(store, path)

        await store.upsert_schedule(schedule())
        assert await store.fire_schedule("nightly", T0, T0 + timedelta(days=1), job()) is True
        await assert_counts_are_right(store, path)

    assert stored_counts(path) == {"enqueued": 4, "succeeded": 1}


@pytest.mark.anyio
async def test_a_refused_batch_leaves_the_counts_as_they_were(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with opened(path) as store:
        first = job()
        await store.add([first])
        with pytest.raises(DuplicateJobError):
            await store.add([job(), first])

        assert stored_counts(path) == {"enqueued": 1}
        await assert_counts_are_right(store, path)


# Jobs due now and later, per case, for a limit of 2 exact counts: each case
# takes one way of splitting the pending jobs.
PENDING_SPLITS = {
    "few due: the due ones counted": (1, 5),
    "few later: the later ones counted": (5, 2),
    "many of both: every due one counted": (4, 3),
    "none": (0, 0),
}


@pytest.mark.anyio
@pytest.mark.parametrize(("due", "later"), PENDING_SPLITS.values(), ids=PENDING_SPLITS.keys())
async def test_pending_jobs_split_into_enqueued_and_scheduled_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, due: int, later: int
) -> None:
    monkeypatch.setattr(sqlite_module, "EXACT_COUNT_LIMIT", 2)
    path = tmp_path / "jobs.db"
    now = utcnow()
    async with opened(path) as store:
        # Stored as either pending state: the clock decides which one shows.
        await store.add(
            [job(state=JobState.SCHEDULED, next_try_at=now) for _ in range(due)]
            + [job(next_try_at=now + timedelta(hours=1)) for _ in range(later)]
            + finished(1)
        )
        counts = await store.count_by_state(now)

    assert counts[JobState.ENQUEUED] == due
    assert counts[JobState.SCHEDULED] == later
    assert counts[JobState.SUCCEEDED] == 1


@pytest.mark.anyio
async def test_table_prefixes_keep_two_stores_counts_apart(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    async with opened(path, table_prefix="one_") as one, opened(path, table_prefix="two_") as two:
        await one.add([job(), job()])
        await two.add(finished(1))
        now = utcnow()

        one_counts = await one.count_by_state(now)
        two_counts = await two.count_by_state(now)

    assert (one_counts[JobState.ENQUEUED], one_counts[JobState.SUCCEEDED]) == (2, 0)
    assert (two_counts[JobState.ENQUEUED], two_counts[JobState.SUCCEEDED]) == (0, 1)
    assert stored_counts(path, "one_") == {"enqueued": 2}
    assert stored_counts(path, "two_") == {"succeeded": 1}


# -- upgrading a file ----------------------------------------------------------------


def create_version_1_file(path: Path, now: datetime) -> tuple[str, str]:
    """A file as masa-jobs with schema version 1 left it: one pending job, one held."""
    sql = Statements.for_prefix("masa_")
    pending, held = uuid4().hex, uuid4().hex
    now_us = int(now.timestamp() * 1_000_000)
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(sql.create_version_table)
        for statement in MIGRATIONS[1]:
            connection.execute(statement.format(p="masa_"))
        connection.execute(sql.write_version, (1,))
        insert = (
            "INSERT INTO masa_jobs (id, name, payload, state, created_at, next_try_at, "
            "attempts, done_handlers, lease_owner, lease_expires_at) "
            "VALUES (?, 'old.job', '{}', ?, ?, ?, ?, '[]', ?, ?)"
        )
        connection.execute(insert, (pending, "enqueued", now_us, now_us, 0, None, None))
        # Held by a worker of the older version, whose lease ran out.
        expired = now_us - 1_000_000
        connection.execute(insert, (held, "processing", now_us, now_us, 1, "old-worker", expired))
        connection.commit()
    return pending, held


@pytest.mark.anyio
async def test_a_version_1_file_is_upgraded_in_place_to_lease_tokens(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    pending, held = create_version_1_file(path, utcnow() - timedelta(minutes=5))

    async with opened(path) as store:
        before = await store.get(held)
        assert before is not None
        assert (before.state, before.lease_owner, before.lease_token) == (
            JobState.PROCESSING,
            "old-worker",
            None,
        )
        # No token holds a job claimed before the upgrade: no outcome applies to it.
        assert await store.finish("old-worker", [outcome(before, JobState.SUCCEEDED)]) == set()

        claimed = {record.id: record for record in await store.claim("worker-1", 10, LEASE)}

    assert set(claimed) == {pending, held}
    assert claimed[held].attempts == 2
    assert all(record.lease_token for record in claimed.values())
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT version FROM masa_schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]
        tokens = connection.execute("SELECT DISTINCT lease_token FROM masa_jobs").fetchall()
    assert tokens == [(claimed[held].lease_token,)]


@pytest.mark.anyio
async def test_a_version_2_file_is_upgraded_in_place_to_schedule_payloads(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    sql = Statements.for_prefix("masa_")
    fire_us = int(datetime(2030, 1, 1, tzinfo=UTC).timestamp() * 1_000_000)
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(sql.create_version_table)
        for step in (1, 2):
            for statement in MIGRATIONS[step]:
                connection.execute(statement.format(p="masa_"))
        connection.execute(sql.write_version, (2,))
        connection.execute(
            "INSERT INTO masa_schedules (id, job_class, cron_expression, timezone, "
            "next_fire_at, created_at, updated_at) VALUES ('old', 'app.Nightly', "
            "'0 2 * * *', 'UTC', ?, ?, ?)",
            (fire_us, fire_us, fire_us),
        )
        connection.commit()

    async with opened(path) as store:
        old = await store.get_schedule("old")
        assert old is not None
        # Nor is a schedule stored before the upgrade paused.
        assert (old.job_class, old.payload, old.paused) == ("app.Nightly", None, False)
        now = utcnow()
        await store.upsert_schedule(
            ScheduleRecord(
                id="new",
                job_class="job:send_report",
                cron_expression="0 2 * * *",
                timezone="UTC",
                next_fire_at=now,
                created_at=now,
                updated_at=now,
                payload='{"to":"ops"}',
            )
        )
        new = await store.get_schedule("new")
        assert new is not None
        assert new.payload == '{"to":"ops"}'

    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT version FROM masa_schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]


def create_version_3_file(path: Path, now: datetime) -> dict[str, str]:
    """A file as masa-jobs with schema version 3 left it: a due job, a held
    one and a dead one, of two job names."""
    sql = Statements.for_prefix("masa_")
    ids = {"due": uuid4().hex, "held": uuid4().hex, "dead": uuid4().hex}
    now_us = int(now.timestamp() * 1_000_000)
    until = now_us + 3600 * 1_000_000
    # id, name, state, created_at, attempts, last_try_at, lease (owner, expiry, token), finished_at
    rows = [
        (ids["due"], "old.mail", "enqueued", now_us, 0, None, None, None, None, None),
        (ids["held"], "old.mail", "processing", now_us + 1, 1, now_us, "w", until, "t", None),
        (ids["dead"], "old.report", "dead", now_us + 2, 3, now_us, None, None, None, now_us),
    ]
    with closing(sqlite3.connect(path)) as connection:
        connection.execute(sql.create_version_table)
        for step in (1, 2, 3):
            for statement in MIGRATIONS[step]:
                connection.execute(statement.format(p="masa_"))
        connection.execute(sql.write_version, (3,))
        connection.executemany(
            "INSERT INTO masa_jobs (id, name, payload, state, created_at, next_try_at, "
            "attempts, last_try_at, done_handlers, lease_owner, lease_expires_at, lease_token, "
            "finished_at) VALUES (?1, ?2, '{}', ?3, ?4, ?4, ?5, ?6, '[]', ?7, ?8, ?9, ?10)",
            rows,
        )
        connection.commit()
    return ids


def indexes(path: Path) -> set[str]:
    with closing(sqlite3.connect(path)) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
        return {name for (name,) in rows}


@pytest.mark.anyio
async def test_a_version_3_file_is_upgraded_in_place_to_history_and_headers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "jobs.db"
    ids = create_version_3_file(path, utcnow() - timedelta(minutes=5))

    async with opened(path) as store:
        before = {job_id: await store.get(job_id) for job_id in ids.values()}
        listed = [r.id for r in await all_jobs(store)]
        dead = [r.id for r in await all_jobs(store, [JobState.DEAD])]
        mails = await store.list_jobs(JobQuery(name="old.mail"), await store.now())
        [due] = await store.claim("worker-1", 10, LEASE)
        await store.finish("worker-1", [outcome(due, JobState.SUCCEEDED)])
        after = await store.get(due.id)

    assert all(r is not None and (r.headers, r.history) == (None, ()) for r in before.values())
    assert listed == [ids["dead"], ids["held"], ids["due"]]
    assert dead == [ids["dead"]]
    assert [r.id for r in mails.items] == [ids["held"], ids["due"]]
    assert after is not None
    assert [(e.state, e.worker) for e in after.history] == [(JobState.SUCCEEDED, "worker-1")]
    # The list indexes replace the ones that listed by state or by time alone.
    assert {"masa_jobs_list", "masa_jobs_list_name"} <= indexes(path)
    assert not {"masa_jobs_state", "masa_jobs_created"} & indexes(path)
    # The jobs stored before the upgrade are counted, and so is every later write.
    assert stored_counts(path) == counted_rows(path) == {"processing": 1, "dead": 1, "succeeded": 1}
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT version FROM masa_schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]


@pytest.mark.anyio
async def test_a_version_3_file_holding_jobs_is_counted_when_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    create_version_3_file(path, utcnow() - timedelta(minutes=5))

    async with opened(path) as store:
        assert stored_counts(path) == {"enqueued": 1, "processing": 1, "dead": 1}
        await assert_counts_are_right(store, path)
        await store.add([job(), job(next_try_at=utcnow() + timedelta(hours=1))])
        await assert_counts_are_right(store, path)


# -- several processes -------------------------------------------------------------

CLAIMER = """
import json, sys, time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from masa_jobs import JobOutcome, JobState
from masa_jobs.records import ScheduleRecord, utcnow
from masa_jobs.stores.base import PURGE_CHUNK_ROWS, Store
from masa_jobs.stores.sqlite import SqliteJobStore


async def main(path: str, worker: str, go: str) -> None:
    store = SqliteJobStore(path, busy_timeout=30)
    await store.open()
    Path(go + "." + worker).touch()
    while not Path(go).exists():
        time.sleep(0.005)
    taken = []
    try:
        while batch := await store.claim(worker, 7, timedelta(seconds=60)):
            taken.extend(job.id for job in batch)
            outcomes = [
                JobOutcome(job.id, JobState.SUCCEEDED, job.attempts, job.next_try_at,
                           finished_at=utcnow(), lease_token=job.lease_token)
                for job in batch
            ]
            assert await store.finish(worker, outcomes) == {job.id for job in batch}
    finally:
        await store.aclose()
    print(json.dumps(taken))


anyio.run(main, *sys.argv[1:])
"""


def start_claimers(path: Path, go: Path, count: int) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [sys.executable, "-c", CLAIMER, str(path), f"worker-{n}", str(go)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(count)
    ]


def test_processes_claiming_from_one_file_never_share_a_job(tmp_path: Path) -> None:
    path, go, count, jobs = tmp_path / "jobs.db", tmp_path / "go", 4, 2000
    records = [job(payload=json.dumps({"i": i})) for i in range(jobs)]

    async def fill() -> None:
        async with opened(path) as store:
            await store.add(records)

    anyio.run(fill)
    processes = start_claimers(path, go, count)
    try:
        deadline = time.monotonic() + 60
        while not all((tmp_path / f"go.worker-{n}").exists() for n in range(count)):
            assert time.monotonic() < deadline, "the claimers did not start"
            assert all(p.poll() is None for p in processes), processes[0].communicate()
            time.sleep(0.01)
        go.touch()  # every claimer starts at once, so they contend for the lock
        outputs = [p.communicate(timeout=120) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    assert [p.returncode for p in processes] == [0] * count, [err for _, err in outputs]

    taken = [job_id for out, _ in outputs for job_id in json.loads(out)]
    assert len(taken) == len(set(taken)) == jobs
    assert set(taken) == {record.id for record in records}

    async def counts() -> dict[JobState, int]:
        async with opened(path) as store:
            return await store.count_by_state(utcnow())

    assert anyio.run(counts)[JobState.SUCCEEDED] == jobs


OPENER = """
import sys
import anyio
from masa_jobs.stores.sqlite import SqliteJobStore
from tests.unit.test_sqlite_store import job


async def main(path: str) -> None:
    store = SqliteJobStore(path, busy_timeout=30)
    await store.open()
    await store.add([job()])
    await store.aclose()


anyio.run(main, sys.argv[1])
"""


def test_processes_opening_a_new_file_at_once_create_one_schema(tmp_path: Path) -> None:
    path, count = tmp_path / "fresh.db", 4
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", OPENER, str(path)],
            cwd=REPO_ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    errors = [p.communicate(timeout=120)[1] for p in processes]

    assert [p.returncode for p in processes] == [0] * count, errors
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT COUNT(*) FROM masa_jobs").fetchone() == (count,)
        assert connection.execute("SELECT version FROM masa_schema_version").fetchall() == [
            (SCHEMA_VERSION,)
        ]


def test_a_new_file_whose_write_lock_is_held_is_switched_to_wal_once_it_is_free(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SQLite refuses the switch of a rollback-mode file at once, busy timeout
    # or not, while another process writes it: the opener must try again.
    path = tmp_path / "fresh.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    pauses: list[float] = []

    def pause_then_free_the_lock(seconds: float) -> None:
        pauses.append(seconds)
        if other.in_transaction:
            other.execute("COMMIT")

    monkeypatch.setattr(sqlite_connection.time, "sleep", pause_then_free_the_lock)
    settings = sqlite_connection.SqliteSettings.of(path, busy_timeout=30)
    try:
        fresh = sqlite_connection.connect(settings, Statements.for_prefix("masa_"))
        with closing(fresh) as connection:
            assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        other.close()

    assert len(pauses) == 1


def test_a_new_file_locked_past_the_busy_timeout_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    settings = sqlite_connection.SqliteSettings.of(path, busy_timeout=0.05)
    try:
        with pytest.raises(StoreUnavailableError, match="locked") as caught:
            sqlite_connection.connect(settings, Statements.for_prefix("masa_"))
    finally:
        other.close()

    assert str(path) in str(caught.value)


# -- schedules -----------------------------------------------------------------------


def schedule(schedule_id: str = "nightly", **fields: Any) -> ScheduleRecord:
    values: dict[str, Any] = {
        "id": schedule_id,
        "job_class": "app.jobs.Nightly",
        "cron_expression": "0 3 * * *",
        "timezone": "Europe/Berlin",
        "next_fire_at": T0,
        "created_at": T0 - timedelta(days=1),
        "updated_at": T0 - timedelta(hours=1),
    }
    return ScheduleRecord(**{**values, **fields})


@pytest.mark.anyio
async def test_schedules_round_trip_and_are_listed_by_id(tmp_path: Path) -> None:
    async with opened(tmp_path / "jobs.db") as store:
        assert isinstance(store, Store)
        later = schedule("b-report", last_fire_at=T0 - timedelta(days=1))
        await store.upsert_schedule(later)
        await store.upsert_schedule(schedule("a-cleanup"))
        changed = schedule("a-cleanup", cron_expression="*/5 * * * *", timezone="UTC")
        await store.upsert_schedule(changed)

        assert await store.get_schedule("b-report") == later
        assert await store.list_schedules() == [changed, later]
        assert await store.get_schedule("missing") is None
        assert await store.delete_schedule("a-cleanup") is True
        assert await store.delete_schedule("a-cleanup") is False
        assert [s.id for s in await store.list_schedules()] == ["b-report"]


@pytest.mark.anyio
async def test_a_tick_fires_once_with_its_job(tmp_path: Path) -> None:
    async with opened(tmp_path / "jobs.db") as store:
        await store.upsert_schedule(schedule())
        tick = job(created_at=T0, next_try_at=T0)
        next_tick = T0 + timedelta(days=1)

        assert await store.fire_schedule("nightly", T0, next_tick, tick) is True
        assert await store.fire_schedule("nightly", T0, next_tick, job()) is False
        assert await store.fire_schedule("missing", T0, next_tick, job()) is False

        fired = await store.get_schedule("nightly")
        assert fired is not None
        assert fired.next_fire_at == next_tick
        assert fired.last_fire_at == T0
        assert [record.id for record in await all_jobs(store)] == [tick.id]


@pytest.mark.anyio
async def test_a_skipped_tick_moves_on_without_a_job(tmp_path: Path) -> None:
    async with opened(tmp_path / "jobs.db") as store:
        await store.upsert_schedule(schedule(last_fire_at=T0 - timedelta(days=1)))

        assert await store.fire_schedule("nightly", T0, T0 + timedelta(days=1), None) is True

        skipped = await store.get_schedule("nightly")
        assert skipped is not None
        assert skipped.next_fire_at == T0 + timedelta(days=1)
        assert skipped.last_fire_at == T0 - timedelta(days=1)
        assert await all_jobs(store) == []


@pytest.mark.anyio
async def test_a_tick_whose_job_cannot_be_stored_does_not_fire(tmp_path: Path) -> None:
    async with opened(tmp_path / "jobs.db") as store:
        existing = job()
        await store.add([existing])
        await store.upsert_schedule(schedule())

        with pytest.raises(ValueError, match=existing.id):
            await store.fire_schedule("nightly", T0, T0 + timedelta(days=1), existing)

        assert await store.get_schedule("nightly") == schedule()
        assert len(await all_jobs(store)) == 1


@pytest.mark.anyio
async def test_a_maintenance_purge_truncates_the_write_ahead_log(tmp_path: Path) -> None:
    path = tmp_path / "wal.sqlite3"
    store = SqliteJobStore(path)
    await store.open()
    try:
        now = utcnow()
        records = [
            JobRecord(
                id=f"job-{n}",
                name="n",
                payload="x" * 2000,
                state=JobState.ENQUEUED,
                created_at=now,
                next_try_at=now,
            )
            for n in range(2000)
        ]
        await store.add(records)
        wal = path.with_name(path.name + "-wal")
        assert wal.stat().st_size > 1024 * 1024
        await store.purge(FINISHED_STATES, now - timedelta(days=1), limit=PURGE_CHUNK_ROWS)
        assert wal.stat().st_size == 0
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_a_row_with_an_unknown_state_is_a_store_error_not_a_crash(tmp_path: Path) -> None:
    path = tmp_path / "bogus.sqlite3"
    store = SqliteJobStore(path)
    await store.open()
    try:
        now = utcnow()
        records = [
            JobRecord(
                id=job_id,
                name="n",
                payload="{}",
                state=JobState.ENQUEUED,
                created_at=now,
                next_try_at=now,
            )
            for job_id in ("bogus", "fine")
        ]
        await store.add(records)
        with closing(sqlite3.connect(path)) as raw:
            raw.execute("UPDATE masa_jobs SET state = 'bogus' WHERE id = 'bogus'")
            raw.commit()

        counts = await store.count_by_state(now)
        with pytest.raises(StoreError, match="'bogus' cannot be read"):
            await store.get("bogus")
        [claimed] = await store.claim("w", 10, LEASE)
    finally:
        await store.aclose()

    assert counts[JobState.ENQUEUED] == 1
    assert sum(counts.values()) == 1
    assert claimed.id == "fine"
