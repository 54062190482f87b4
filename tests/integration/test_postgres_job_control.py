"""Job control on the PostgreSQL store: the version 5 schema and its migration,
the claim's index reads, unique keys under concurrency, and cancel notices
between store instances.

Plans are checked by their shape and the rows each node read (``EXPLAIN
ANALYZE``, in a transaction rolled back), for the planner's choice with the
given values and for the generic plan a prepared statement falls back to;
never by timings.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import timedelta
from typing import Any

import anyio
import asyncpg
import pytest

from masa_jobs.records import DEFAULT_QUEUE, JobState, ScheduleRecord, UniqueScope
from masa_jobs.stores._postgres_sql import SCHEMA_VERSION, migrations
from masa_jobs.stores.postgres import PostgresJobStore
from tests.integration.test_postgres import (
    _VERSION_1_TABLES,
    LEASE,
    PROMPTLY,
    job,
    opened,
    raw_connection,
    succeeded,
)
from tests.services import POSTGRES_DSN, drop_postgres_schema, require_service, unique_name

pytestmark = pytest.mark.anyio

# The table the plan tests read: most jobs in one big queue or due in an
# hour, so that a claim walking them would show in the rows it read.
QUEUES = ("big", "mail", "sms")
FILL_JOBS = 12_000
CLAIM_LIMIT = 30
# What a claim may read of the due index at most: a batch per served queue at
# the first priority that has due jobs, plus one probe per queue and
# priority, plus the loose scan's probes; far below FILL_JOBS.
MOST_DUE_ENTRIES_READ = CLAIM_LIMIT * len(QUEUES) + 12 * len(QUEUES) + 10
# A probe cancel's notice arrives within this, once the listener is live.
PROBE_SECONDS = 0.5
PROBE_QUEUE = "probe"
CONCURRENT_ROUNDS = 5
KEYS_PER_BATCH = 20

# Every queue gets jobs of every priority; half of them are due in an hour.
_FILL = """
INSERT INTO {s}.jobs (id, name, payload, state, created_at, next_try_at, queue, priority)
SELECT md5(i::text), 'job.fill', '{{}}', 'scheduled', now() - interval '1 hour',
       CASE WHEN i % 2 = 0 THEN now() + interval '1 hour'
            ELSE now() - (i % 600) * interval '1 second' END,
       CASE (i / 2) % 10 WHEN 0 THEN 'mail' WHEN 1 THEN 'sms' ELSE 'big' END,
       (i / 20) % 10
FROM generate_series(1, {n}) AS i
"""


@pytest.fixture(scope="module")
def full_schema() -> Iterator[str]:
    """A schema holding FILL_JOBS pending jobs, analysed; tests roll back their claims."""
    require_service("PostgreSQL", POSTGRES_DSN)
    name = unique_name()

    async def fill() -> None:
        async with opened(name), raw_connection() as connection:
            await connection.execute(_FILL.format(s=f'"{name}"', n=FILL_JOBS))
            await connection.execute(f'ANALYZE "{name}".jobs')

    anyio.run(fill)
    yield name
    drop_postgres_schema(name)


# -- schema version 5 ----------------------------------------------------------------


async def test_a_version_4_schema_is_migrated_in_place_to_queues_and_unique_keys(
    schema: str,
) -> None:
    waiting, held, dead = job(), job(), job()
    async with raw_connection() as connection:
        # Version 4 is version 1 and its three steps.
        await connection.execute(_VERSION_1_TABLES.format(s=f'"{schema}"'))
        for step in (1, 2, 3):
            await connection.execute(migrations(f'"{schema}"')[step])
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
        kept = [await store.get(record.id) for record in (waiting, held, dead)]
        old_claim = kept[1]
        assert old_claim is not None
        # The version-4 worker's outcome still applies; the waiting job is the default queue's.
        applied = await store.finish("old-worker", [succeeded(old_claim)])
        claimed = await store.claim("worker-1", 10, LEASE, queues=[DEFAULT_QUEUE])
        keyed = replace(job(), unique_key="k", unique_scope=UniqueScope.ACTIVE)
        answers = [await store.add([keyed]), await store.add([replace(job(), unique_key="k")])]
        await store.set_queue_paused("mail", True)
        paused = await store.paused_queues()
    async with opened(schema):  # a second open finds the current version and migrates nothing
        pass

    for record in kept:
        assert record is not None
        assert (record.queue, record.priority) == (DEFAULT_QUEUE, 0)
        assert (record.unique_key, record.unique_scope, record.unique_until) == (None, None, None)
    assert applied == {held.id}
    assert [record.id for record in claimed] == [waiting.id]
    assert answers == [[keyed.id], [keyed.id]]
    assert paused == {"mail"}
    async with raw_connection() as connection:
        indexes = {
            row["indexname"]: row["indexdef"]
            for row in await connection.fetch(
                "SELECT indexname, indexdef FROM pg_indexes "
                "WHERE schemaname = $1 AND tablename = 'jobs'",
                schema,
            )
        }
        versions = await connection.fetch(
            f'SELECT version FROM "{schema}".schema_version ORDER BY version'
        )
    assert "(queue, priority, next_try_at, attempts, seq)" in indexes["jobs_due"]
    assert "UNIQUE" in indexes["jobs_unique_key"]
    assert "WHERE (unique_key IS NOT NULL)" in indexes["jobs_unique_key"]
    assert [row["version"] for row in versions] == [1, 2, 3, 4, 5]
    assert SCHEMA_VERSION == 5


# -- the claim's index reads ---------------------------------------------------------


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _literal(value: object) -> str:
    """``value`` as SQL for EXECUTE, in a test that controls every value."""
    if isinstance(value, list):
        return "ARRAY[" + ", ".join(_literal(item) for item in value) + "]::text[]"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return repr(value)


async def _executed_plans(
    connection: asyncpg.Connection, statement: str, arguments: list[Any]
) -> dict[str, dict[str, Any]]:
    """The executed plans (rolled back) for these values, and of the generic plan."""
    explain = "EXPLAIN (ANALYZE, FORMAT JSON)"
    plans = {}
    for mode in ("custom", "generic"):
        transaction = connection.transaction()
        await transaction.start()
        try:
            if mode == "custom":
                text = await connection.fetchval(f"{explain} {statement}", *arguments)
            else:
                name = unique_name("plan")
                await connection.execute("SET LOCAL plan_cache_mode = force_generic_plan")
                await connection.execute(f"PREPARE {name} AS {statement}")
                values = ", ".join(_literal(argument) for argument in arguments)
                call = f"{name}({values})" if arguments else name
                text = await connection.fetchval(f"{explain} EXECUTE {call}")
                await connection.execute(f"DEALLOCATE {name}")
        finally:
            await transaction.rollback()
        plans[mode] = json.loads(text)[0]["Plan"]
    return plans


def _due_index_reads(plan: dict[str, Any]) -> tuple[int, list[str]]:
    """Entries the plan read from ``jobs_due``, and the other ways it read jobs."""
    read, others = 0, []
    for node in _nodes(plan):
        relation = node.get("Relation Name")
        if relation != "jobs":
            continue
        if node.get("Index Name") == "jobs_due":
            read += int(node["Actual Rows"] + node.get("Rows Removed by Filter", 0)) * int(
                node["Actual Loops"]
            )
        elif node.get("Actual Loops", 0) and node["Node Type"] != "ModifyTable":
            others.append(f"{node['Node Type']} {node.get('Index Name', '')}".strip())
    return read, others


@pytest.mark.parametrize(
    "queues",
    [pytest.param(["mail"], id="one-queue"), pytest.param(None, id="every-queue")],
)
async def test_a_claim_reads_its_batch_from_the_due_index_not_the_table(
    full_schema: str, queues: list[str] | None
) -> None:
    async with opened(full_schema) as store, raw_connection() as connection:
        arguments: list[Any] = ["worker-1", CLAIM_LIMIT, LEASE.total_seconds(), [], "token"]
        if queues is None:
            statement = store._sql.claim_every_queue
        else:
            statement, arguments = store._sql.claim_queues, [*arguments, queues]
        plans = await _executed_plans(connection, statement, arguments)

    for mode, plan in plans.items():
        read, others = _due_index_reads(plan)
        assert 0 < read <= MOST_DUE_ENTRIES_READ, (mode, read)
        # Besides: the claimed rows by id, and the (empty) expired-lease probe.
        assert not any(other.startswith("Seq Scan") for other in others), (mode, others)


@pytest.mark.parametrize(
    "queues",
    [pytest.param(["mail", "sms"], id="named-queues"), pytest.param(None, id="every-queue")],
)
async def test_a_wait_and_the_oldest_due_time_probe_the_due_index(
    full_schema: str, queues: list[str] | None
) -> None:
    async with opened(full_schema) as store, raw_connection() as connection:
        look = store._look_for(queues)
        waits = await _executed_plans(connection, look.statement, list(look.arguments))
        oldest = await _executed_plans(connection, store._sql.oldest_due_at, [])

    for plan in (*waits.values(), *oldest.values()):
        read, others = _due_index_reads(plan)
        # One entry per queue and priority probe (and per loose-scan step).
        assert 0 < read <= 12 * len(QUEUES) + 10, read
        assert not any(other.startswith("Seq Scan") for other in others), others


async def test_claims_of_the_full_table_follow_priority_then_due_time(full_schema: str) -> None:
    async with opened(full_schema) as store, raw_connection() as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            rows = await connection.fetch(
                store._sql.claim_queues,
                "worker-1",
                CLAIM_LIMIT,
                LEASE.total_seconds(),
                [],
                "token",
                ["mail", "sms"],
            )
            order = [(row["priority"], row["next_try_at"]) for row in rows]
            best = await connection.fetch(
                f'SELECT priority, next_try_at FROM "{full_schema}".jobs '
                "WHERE queue IN ('mail', 'sms') AND state = 'scheduled' "
                "AND next_try_at <= now() AND id <> ALL($1::text[]) "
                "ORDER BY priority, next_try_at LIMIT $2",
                [row["id"] for row in rows],
                CLAIM_LIMIT,
            )
        finally:
            await transaction.rollback()

    assert len(order) == CLAIM_LIMIT
    assert order == sorted(order)
    # Nothing left behind ranks before the last job claimed.
    assert not best or (best[0]["priority"], best[0]["next_try_at"]) >= order[-1]


# -- unique keys under concurrency ---------------------------------------------------


async def test_concurrent_batches_of_the_same_keys_in_opposite_orders_store_each_once(
    schema: str,
) -> None:
    async with opened(schema) as one, opened(schema) as other:
        for round_ in range(CONCURRENT_ROUNDS):
            keys = [f"round-{round_}/key-{n}" for n in range(KEYS_PER_BATCH)]
            forward = [replace(job(), unique_key=key) for key in keys]
            backward = [replace(job(), unique_key=key) for key in reversed(keys)]
            answers: dict[str, list[str]] = {}
            with anyio.fail_after(PROMPTLY):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_add_into, answers, one, "forward", forward)
                    tg.start_soon(_add_into, answers, other, "backward", backward)

            # Whoever went first holds every key: the other batch answers its ids.
            holders = dict(zip(keys, answers["forward"], strict=True))
            assert dict(zip(reversed(keys), answers["backward"], strict=True)) == holders
            async with raw_connection() as connection:
                stored = await connection.fetchval(
                    f'SELECT count(*) FROM "{schema}".jobs WHERE unique_key = ANY($1::text[])',
                    keys,
                )
            assert stored == KEYS_PER_BATCH


async def _add_into(
    answers: dict[str, list[str]], store: PostgresJobStore, name: str, batch: list[Any]
) -> None:
    answers[name] = await store.add(batch)


async def test_a_tick_whose_unique_key_is_held_fires_without_a_job(schema: str) -> None:
    async with opened(schema) as store:
        holder = replace(job(), unique_key="nightly")
        await store.add([holder])
        moment = await store.now()
        await store.upsert_schedule(
            ScheduleRecord(
                id="nightly",
                job_class="job:integration-work",
                cron_expression="0 2 * * *",
                timezone="UTC",
                next_fire_at=moment,
                created_at=moment,
                updated_at=moment,
                payload="{}",
            )
        )
        tick = replace(job(), unique_key="nightly")
        fired = await store.fire_schedule("nightly", moment, moment + timedelta(days=1), tick)

        assert fired
        assert await store.get(tick.id) is None
        schedule = await store.get_schedule("nightly")
        assert schedule is not None
        assert schedule.next_fire_at == moment + timedelta(days=1)


# -- cancel notices between store instances --------------------------------------------


class Heard:
    """A cancel listener that keeps the ids it heard."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self._arrival = anyio.Event()

    def __call__(self, job_id: str) -> None:
        self.ids.append(job_id)
        self._arrival.set()

    async def has(self, job_id: str, within: float) -> bool:
        with anyio.move_on_after(within):
            while job_id not in self.ids:
                await self._arrival.wait()
                self._arrival = anyio.Event()
        return job_id in self.ids


async def _cancel_running(store: PostgresJobStore, queue: str = DEFAULT_QUEUE) -> str:
    record = replace(job(), queue=queue)
    await store.add([record])
    [held] = await store.claim("worker-1", 1, LEASE, queues=[queue])
    assert held.id == record.id
    now = await store.now()
    moved = await store.transition(record.id, [JobState.PROCESSING], JobState.CANCELLED, now)
    assert moved is not None
    return record.id


async def _live(listener: Heard, operator: PostgresJobStore) -> None:
    """Return once ``listener``'s store hears cancels: probes until one is heard."""
    with anyio.fail_after(PROMPTLY):
        while not await listener.has(await _cancel_running(operator, PROBE_QUEUE), PROBE_SECONDS):
            pass


@asynccontextmanager
async def _two_stores(schema: str) -> AsyncIterator[tuple[PostgresJobStore, PostgresJobStore]]:
    async with opened(schema) as worker, opened(schema) as operator:
        yield worker, operator


async def test_a_cancel_in_one_store_reaches_the_listener_of_another(schema: str) -> None:
    async with _two_stores(schema) as (worker, operator):
        heard = Heard()
        # The worker never waits for work: the listener alone keeps it listening.
        worker.add_cancel_listener(heard)
        await _live(heard, operator)
        pending = job()
        await operator.add([pending])
        now = await operator.now()
        assert await operator.transition(pending.id, [JobState.ENQUEUED], JobState.CANCELLED, now)

        running = await _cancel_running(operator)

        assert await heard.has(running, PROMPTLY)
        # Notices arrive in commit order: the pending job's cancel, earlier, told nobody.
        assert pending.id not in heard.ids


async def test_cancel_notices_resume_after_the_listen_connection_is_killed(schema: str) -> None:
    async with _two_stores(schema) as (worker, operator):
        heard = Heard()
        worker.add_cancel_listener(heard)
        await _live(heard, operator)
        listener = worker._wake_ups._listener
        assert listener is not None
        async with raw_connection() as connection:
            await connection.execute("SELECT pg_terminate_backend($1)", listener.get_server_pid())

        # Reconnected in the background, with no wait for work to do it.
        await _live(heard, operator)
        running = await _cancel_running(operator)
        assert await heard.has(running, PROMPTLY)


async def test_no_listener_is_called_after_its_store_closed(schema: str) -> None:
    heard, seen = Heard(), Heard()
    async with _two_stores(schema) as (witness, operator):
        witness.add_cancel_listener(seen)
        await _live(seen, operator)
        async with opened(schema) as worker:
            worker.add_cancel_listener(heard)
            await _live(heard, operator)
        before = list(heard.ids)

        running = await _cancel_running(operator)

        # A store still open hears it; the closed one, had it still listened, by then too.
        assert await seen.has(running, PROMPTLY)
        assert heard.ids == before
