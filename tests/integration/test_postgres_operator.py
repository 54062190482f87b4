"""The PostgreSQL store's operator reads on a table of many jobs: every page and
count reads index entries in proportion to what it returns, never a whole
state; counts beyond the exact limit are the planner's estimates.

Plans are checked by their shape and the rows each node read (``EXPLAIN
ANALYZE``), never by their timings, with the planner's choice for the given
values and with the generic plan a prepared statement falls back to.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from masa_jobs import JobQuery, JobState
from masa_jobs.queries import EXACT_COUNT_LIMIT
from masa_jobs.records import JobOutcome, JobRecord, utcnow
from masa_jobs.stores._postgres_listing import Listing, count_arguments, list_arguments
from masa_jobs.stores.postgres import PostgresJobStore, _outcome_arguments
from tests.integration.test_postgres import opened, raw_connection, store_for
from tests.services import POSTGRES_DSN, drop_postgres_schema, require_service, unique_name

pytestmark = pytest.mark.anyio

# Jobs in the shared table: enough that the planner would rather scan the table
# than an index for a large state, if nothing but an index served the order.
JOBS = 30_000
NAMES = 7
# Per 100 jobs, in the order they are created over and over (see _FILL).
STATE_MIX = (
    ("succeeded", 62),  # 18,600: above EXACT_COUNT_LIMIT, an estimate
    ("dead", 15),
    ("cancelled", 5),
    ("scheduled", 10),  # every other pending job is due in an hour
    ("enqueued", 5),
    ("processing", 3),
)
PAGE = 50
LEASE = timedelta(seconds=30)

_FILL = """
INSERT INTO {s}.jobs (id, name, payload, state, created_at, next_try_at, attempts,
                      last_try_at, finished_at, lease_owner, lease_expires_at, lease_token)
SELECT md5(i::text), 'job.' || (i % {names}), '{{}}', state,
       now() - ({n} - i) * interval '10 seconds',
       CASE WHEN state IN ('scheduled', 'enqueued') AND i % 2 = 0
            THEN now() + interval '1 hour' ELSE now() - ({n} - i) * interval '10 seconds' END,
       1, now(),
       CASE WHEN state IN ('succeeded', 'dead', 'cancelled') THEN now() END,
       CASE WHEN state = 'processing' THEN 'worker-1' END,
       CASE WHEN state = 'processing' THEN now() + interval '1 hour' END,
       CASE WHEN state = 'processing' THEN 'token' END
FROM (SELECT i, CASE {cases} END AS state FROM generate_series(1, {n}) AS i) AS numbered
"""


def _state_cases() -> str:
    cases, upper = [], 0
    for state, share in STATE_MIX:
        upper += share
        cases.append(f"WHEN i % 100 < {upper} THEN '{state}'")
    return " ".join(cases)


def _expected_counts() -> dict[JobState, int]:
    counts = dict.fromkeys(JobState, 0)
    lower = 0
    for state, share in STATE_MIX:
        members = [i for i in range(1, JOBS + 1) if lower <= i % 100 < lower + share]
        lower += share
        if state in ("scheduled", "enqueued"):
            due_later = sum(1 for i in members if i % 2 == 0)
            counts[JobState.SCHEDULED] += due_later
            counts[JobState.ENQUEUED] += len(members) - due_later
        else:
            counts[JobState(state)] += len(members)
    return counts


@pytest.fixture(scope="module")
def big_schema() -> Iterator[str]:
    """A schema holding JOBS jobs, analysed: shared by the tests that only read it."""
    require_service("PostgreSQL", POSTGRES_DSN)
    name = unique_name()

    async def fill() -> None:
        store = store_for(name)
        await store.open()
        await store.aclose()
        connection = await asyncpg.connect(POSTGRES_DSN)
        try:
            s = f'"{name}"'
            await connection.execute(_FILL.format(s=s, n=JOBS, names=NAMES, cases=_state_cases()))
            await connection.execute(f"VACUUM ANALYZE {s}.jobs")
        finally:
            await connection.close()

    asyncio.run(fill())
    yield name
    drop_postgres_schema(name)


# -- plans --------------------------------------------------------------------------


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _switched_off(node: dict[str, Any]) -> bool:
    """A branch the planner knows is empty (its state was not asked for)."""
    return any(n.get("One-Time Filter") == "false" for n in _nodes(node))


def _problems(plan: dict[str, Any], most: int) -> list[str]:
    """What makes a plan read more than ``most`` entries of any one scan, or
    read a table or a whole state: described for the assertion message."""
    found = []
    for node in _nodes(plan):
        kind = node["Node Type"]
        if kind in ("Seq Scan", "Bitmap Heap Scan"):
            found.append(f"{kind} on {node.get('Relation Name')}")
        if kind == "Sort" and not _switched_off(node):
            found.append(f"Sort of {node['Plans'][0].get('Actual Rows')} rows")
        if kind in ("Index Scan", "Index Only Scan"):
            read = node.get("Actual Rows", 0) + node.get("Rows Removed by Filter", 0)
            if read > most:
                found.append(f"{kind} using {node['Index Name']} read {read} entries")
    return found


def _literal(value: object) -> str:
    """A parameter as SQL text, for EXECUTE (which takes no parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(_literal(item) for item in value) + "]::text[]"
    if isinstance(value, datetime):
        if value == datetime.max.replace(tzinfo=UTC):
            return "'infinity'::timestamptz"
        if value == datetime.min.replace(tzinfo=UTC):
            return "'-infinity'::timestamptz"
        return f"'{value.isoformat()}'::timestamptz"
    return "'" + str(value).replace("'", "''") + "'"


async def _plans(
    connection: asyncpg.Connection, statement: str, arguments: list[Any]
) -> dict[str, dict[str, Any]]:
    """The executed plan for these values, and the generic plan of the statement."""
    explain = "EXPLAIN (ANALYZE, FORMAT JSON)"
    custom = json.loads(await connection.fetchval(f"{explain} {statement}", *arguments))
    name = unique_name("plan")
    await connection.execute("SET plan_cache_mode = force_generic_plan")
    await connection.execute(f"PREPARE {name} AS {statement}")
    try:
        values = ", ".join(_literal(argument) for argument in arguments)
        generic = json.loads(await connection.fetchval(f"{explain} EXECUTE {name}({values})"))
    finally:
        await connection.execute(f"DEALLOCATE {name}")
        await connection.execute("RESET plan_cache_mode")
    return {"custom": custom[0]["Plan"], "generic": generic[0]["Plan"]}


async def _page_plans(schema: str, query: JobQuery, now: datetime) -> dict[str, dict[str, Any]]:
    shape, arguments = list_arguments(query, now)
    statement = Listing.for_schema(schema).pages[shape]
    async with raw_connection() as connection:
        return await _plans(connection, statement, arguments)


async def _deep_cursor(store: PostgresJobStore, now: datetime) -> str:
    """The cursor of a page 10,000 jobs down the list of every job."""
    query = JobQuery(limit=500)
    for _ in range(20):
        page = await store.list_jobs(query, now)
        query = replace(query, cursor=page.next_cursor)
    assert query.cursor is not None
    return query.cursor


def _queries(deep: str, now: datetime) -> dict[str, JobQuery]:
    """A page of every kind the dashboard and the CLI ask for."""
    week_ago, day_ago = now - timedelta(days=7), now - timedelta(days=1)
    return {
        "every state": JobQuery(limit=PAGE),
        "every state, deep": JobQuery(limit=PAGE, cursor=deep),
        "every state, oldest first, deep": JobQuery(limit=PAGE, newest_first=False, cursor=deep),
        "one state": JobQuery.of(JobState.DEAD, limit=PAGE),
        "one small state": JobQuery.of(JobState.PROCESSING, limit=PAGE),
        "two states, deep": JobQuery.of(
            [JobState.DEAD, JobState.SUCCEEDED], limit=PAGE, cursor=deep
        ),
        "pending": JobQuery.of([JobState.SCHEDULED, JobState.ENQUEUED], limit=PAGE),
        "one name": JobQuery(name="job.3", limit=PAGE),
        "one name, one state, deep": JobQuery.of(JobState.DEAD, name="job.3", cursor=deep),
        "an unknown name": JobQuery(name="nobody", limit=PAGE),
        "a creation range": JobQuery(created_from=week_ago, created_until=day_ago, limit=PAGE),
        "a creation range, oldest first, deep": JobQuery(
            created_from=week_ago, newest_first=False, limit=PAGE, cursor=deep
        ),
    }


async def test_every_page_reads_a_page_of_index_entries_whatever_the_table_holds(
    big_schema: str,
) -> None:
    async with opened(big_schema) as store:
        now = await store.now()
        deep = await _deep_cursor(store, now)
    # Each state's scan reads at most the page and the one row that tells
    # another page follows.
    most = PAGE + 1

    problems = {}
    for label, query in _queries(deep, now).items():
        for kind, plan in (await _page_plans(big_schema, query, now)).items():
            found = _problems(plan, most)
            if found:
                problems[f"{label} ({kind} plan)"] = found

    assert problems == {}


async def test_a_page_of_one_pending_kind_reads_pending_entries_but_never_the_table(
    big_schema: str,
) -> None:
    # Enqueued and scheduled jobs share stored states: a page of one walks
    # the pending entries of the index, skipping the other kind (here every
    # other one), and still reads no table and sorts nothing.
    async with opened(big_schema) as store:
        now = await store.now()
        for state in (JobState.ENQUEUED, JobState.SCHEDULED):
            query = JobQuery.of(state, limit=PAGE)
            page = await store.list_jobs(query, now)
            for kind, plan in (await _page_plans(big_schema, query, now)).items():
                assert _problems(plan, most=4 * PAGE) == [], f"{state} ({kind} plan)"
            assert len(page.items) == PAGE
            assert all(record.state.is_pending for record in page.items)
            due = [record.next_try_at <= now for record in page.items]
            assert due == [state is JobState.ENQUEUED] * PAGE


async def test_counts_are_exact_up_to_the_limit_and_estimates_above_it(big_schema: str) -> None:
    expected = _expected_counts()
    assert expected[JobState.SUCCEEDED] > EXACT_COUNT_LIMIT  # the table is big enough
    async with opened(big_schema) as store:
        counts = await store.count_by_state(await store.now())

    for state in JobState:
        if expected[state] <= EXACT_COUNT_LIMIT:
            assert counts[state] == expected[state], state
    estimate, truth = counts[JobState.SUCCEEDED], expected[JobState.SUCCEEDED]
    assert estimate > EXACT_COUNT_LIMIT
    assert abs(estimate - truth) <= truth // 10  # fresh statistics: close


async def test_a_count_reads_at_most_the_exact_limit_of_index_entries_per_state(
    big_schema: str,
) -> None:
    async with opened(big_schema) as store:
        now = await store.now()
    listing = Listing.for_schema(big_schema)

    async with raw_connection() as connection:
        plans = await _plans(connection, listing.count, list(count_arguments(now)))

    for kind, plan in plans.items():
        assert _problems(plan, most=EXACT_COUNT_LIMIT + 1) == [], kind


# -- the overview -------------------------------------------------------------------


def _job(*, delay: float = 0.0) -> JobRecord:
    now = utcnow()
    return JobRecord(
        id=unique_name("job"),
        name="overview-work",
        payload="{}",
        state=JobState.SCHEDULED if delay else JobState.ENQUEUED,
        created_at=now,
        next_try_at=now + timedelta(seconds=delay),
    )


async def test_the_oldest_due_time_is_the_first_pending_jobs(schema: str) -> None:
    later, overdue = _job(delay=600), _job(delay=-600)
    async with opened(schema) as store:
        none_pending = await store.oldest_due_at()
        await store.add([later, overdue])
        due_times = {job_id: await _due_time(store, job_id) for job_id in (later.id, overdue.id)}
        oldest = await store.oldest_due_at()
        # A held job is not pending: the oldest is then the one left.
        claimed = await store.claim("worker-1", 1, LEASE)
        oldest_left = await store.oldest_due_at()

    assert none_pending is None
    assert oldest == due_times[overdue.id]
    assert [record.id for record in claimed] == [overdue.id]
    assert oldest_left == due_times[later.id]


async def _due_time(store: PostgresJobStore, job_id: str) -> datetime:
    record = await store.get(job_id)
    assert record is not None
    return record.next_try_at


async def test_finished_jobs_are_counted_per_whole_utc_minute(schema: str) -> None:
    async with opened(schema) as store:
        since = await store.now()
        await store.add([_job() for _ in range(3)])
        held = await store.claim("worker-1", 3, LEASE)
        await store.finish(
            "worker-1",
            [
                JobOutcome(
                    record.id,
                    JobState.SUCCEEDED,
                    record.attempts,
                    record.next_try_at,
                    finished_at=utcnow(),
                    lease_token=record.lease_token,
                )
                for record in held
            ],
        )
        counted = await store.finished_per_minute(since)
        later = await store.finished_per_minute(since + timedelta(hours=1))
        finished = [await store.get(record.id) for record in held]

    minutes = {
        record.finished_at.replace(second=0, microsecond=0)
        for record in finished
        if record is not None and record.finished_at is not None
    }
    assert sum(count for _, count in counted) == 3
    assert {minute for minute, _ in counted} == minutes
    assert all(minute.utcoffset() == timedelta(0) for minute, _ in counted)
    assert later == []


# -- the worker's writes on a table of many jobs --------------------------------------

# Outcomes or renewals in one write, and the jobs in the table around them: a
# size at which a plan made for the batch hashed the whole table.
WRITE_BATCH = 200
WRITE_TABLE_JOBS = 20_000


async def test_outcomes_and_renewals_read_each_job_by_id_on_a_plan_for_the_batch(
    schema: str,
) -> None:
    # A prepared statement's first runs on each connection are planned for
    # the batch's real size; such a plan must still read each job by its id.
    async with opened(schema) as store:
        for _ in range(WRITE_TABLE_JOBS // 1000):
            await store.add([_job() for _ in range(1000)])
        held = await store.claim("worker-1", WRITE_BATCH, LEASE)
        assert len(held) == WRITE_BATCH
        outcomes = [
            JobOutcome(
                record.id,
                JobState.SUCCEEDED,
                record.attempts,
                record.next_try_at,
                finished_at=utcnow(),
                lease_token=record.lease_token,
            )
            for record in held
        ]
        statements = store._sql
        writes = {
            "finish": (
                statements.finish,
                [*_outcome_arguments("worker-1", outcomes), statements.channel],
            ),
            "extend_leases": (
                statements.extend_leases,
                [
                    "worker-1",
                    [record.id for record in held],
                    [record.lease_token for record in held],
                    LEASE.total_seconds(),
                ],
            ),
        }
        async with raw_connection() as connection:
            await connection.execute(f'ANALYZE "{schema}".jobs')
            for name, (statement, arguments) in writes.items():
                explained = await connection.fetchval(
                    f"EXPLAIN (FORMAT JSON) {statement}", *arguments
                )
                plan = json.loads(explained)[0]["Plan"]
                whole_table = [
                    node["Node Type"]
                    for node in _nodes(plan)
                    if node["Node Type"] in ("Seq Scan", "Bitmap Heap Scan")
                    and node.get("Relation Name") == "jobs"
                ]
                assert whole_table == [], f"{name} reads the jobs table with {whole_table}"
