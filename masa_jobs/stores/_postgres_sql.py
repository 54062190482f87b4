"""SQL text of the PostgreSQL store, built once per store for one schema.

The only name spliced into SQL is the schema, validated by
``check_schema_name`` and double-quoted; every value travels as a query
parameter. Arrays passed through ``unnest`` carry whole batches, so that a
batch costs one round trip.

Time is the server's: due times, lease deadlines and finish stamps come from
``now()``, never from the caller's clock, and durations travel as seconds
(``$n * interval '1 second'``), so that a day-long lease is 86,400 s even
across a daylight-saving change of the session's time zone.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ..records import MAX_HISTORY_EVENTS

__all__ = [
    "JOB_COLUMNS",
    "PENDING",
    "SCHEMA_VERSION",
    "Statements",
    "advisory_lock_key",
    "check_schema_name",
    "migrations",
]

# Bump with every change of the tables, and add the step to ``migrations``.
# 2: jobs.lease_token, the fencing value of the claim that holds a job.
# 3: schedules.payload, the args of a schedule of an ordinary job, and
#    schedules.paused.
# 4: jobs.headers and jobs.history, and the two listing indexes.
SCHEMA_VERSION = 4
# Plain identifiers only, short enough that "<schema>.jobs" fits PostgreSQL's
# 63-byte limit on identifiers, which notification channels share.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")

# States as literals, so that the planner matches the partial indexes.
PENDING = "('scheduled', 'enqueued')"
_FINISHED = "('succeeded', 'dead', 'cancelled')"
_ALL_STATES = "('scheduled', 'enqueued', 'processing', 'succeeded', 'dead', 'cancelled')"

# The columns a new job is stored with; a new job holds no lease token.
_NEW_JOB_COLUMNS = (
    "id, name, payload, state, created_at, next_try_at, attempts, last_try_at, "
    "last_error, done_handlers, lease_owner, lease_expires_at, finished_at, headers, history"
)
# The columns of a job, in the order ``JobRecord`` takes them.
JOB_COLUMNS = f"{_NEW_JOB_COLUMNS}, lease_token"
# What a batch stores of each new job: the caller's columns, rebased on the
# server's clock (created now, due after the same delay as the caller meant).
_REBASED_COLUMNS = _NEW_JOB_COLUMNS.replace(
    "created_at, next_try_at",
    "now(), now() + (extract(epoch FROM next_try_at) - extract(epoch FROM created_at))"
    " * interval '1 second'",
)
# The types of _NEW_JOB_COLUMNS, for the arrays a batch of jobs travels in.
_JOB_TYPES = (
    "text",
    "text",
    "text",
    "text",
    "timestamptz",
    "timestamptz",
    "int",
    "timestamptz",
    "text",
    "jsonb",
    "text",
    "timestamptz",
    "timestamptz",
    "text",
    "jsonb",
)
WORKER_COLUMNS = "id, host, pid, started_at, last_seen_at, running_jobs"
# The columns of a schedule, in the order ``ScheduleRecord`` takes them.
SCHEDULE_COLUMNS = (
    "id, job_class, cron_expression, timezone, next_fire_at, created_at, updated_at, "
    "last_fire_at, payload, paused"
)


def _commit_mode(relaxed: bool) -> str:
    """A CTE every lease-protected write references, so that it is evaluated.

    Relaxed, it turns ``synchronous_commit`` off for this one transaction: a
    server crash can forget the last fraction of a second of claims, lease
    renewals and outcomes, and those jobs run again when their leases expire,
    which at-least-once allows. Strict, it changes nothing.
    """
    if relaxed:
        return "commit_mode AS (SELECT set_config('synchronous_commit', 'off', true) AS mode)"
    return "commit_mode AS (SELECT current_setting('synchronous_commit') AS mode)"


def check_schema_name(name: str) -> str:
    """``name`` if it is a plain lowercase identifier, else ``ValueError``."""
    if not _SCHEMA_NAME.fullmatch(name):
        raise ValueError(
            f"{name!r} is not a plain schema name: use 1 to 48 lowercase letters, "
            "digits and underscores, starting with a letter or underscore"
        )
    return name


def advisory_lock_key(schema: str, purpose: str = "schema") -> int:
    """A stable signed 64-bit key for one purpose on one schema, across processes:
    ``"schema"`` serialises set-up, ``"purge"`` lets one caller at a time purge."""
    digest = hashlib.blake2b(f"masa_jobs.{purpose}:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _listing_indexes(s: str) -> str:
    """The indexes operator pages and counts read (see ``_postgres_listing``).

    A page of one state, or of one job name in one state, is one descent and
    ``limit`` entries of these; a page of several states merges one such scan
    per state. Ids compare in code point order (``COLLATE "C"``), the order
    of cursors on every store, whatever the database's collation.

    Every state change writes an entry in both, and that is measurable (20,000
    jobs added in batches, claimed and finished): about 280 more bytes of
    write-ahead log per add and 680 more per claim and finish (with the
    history, twice what a job wrote before), about 30% more server CPU per
    add, and batch adds about 30% slower. Partial indexes without processing
    jobs would save a third of the entries (a job is stored pending,
    processing, then finished) and nothing of an add, but then every page of
    all states would read and sort every processing job, as no other index
    has the page's order: full indexes keep every page O(limit).
    """
    return f"""
CREATE INDEX jobs_by_state ON {s}.jobs (state, created_at, id COLLATE "C");
CREATE INDEX jobs_by_name ON {s}.jobs (name, state, created_at, id COLLATE "C");
"""


def _create_tables(s: str) -> str:
    # Every state change rewrites the row and adds an entry to each index
    # (no HOT update is possible): indexes are kept to what claim, finish,
    # wake-up, purge and the operator's pages and counts need.
    # A queue table turns its rows over constantly: vacuum after 2% churn, not
    # the default 20%, so that dead entries do not slow the claim's index scan.
    return f"""
-- CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the
-- schema exists: skip it for a schema an administrator created beforehand.
DO $create$ BEGIN
    IF to_regnamespace('{s}') IS NULL THEN
        EXECUTE 'CREATE SCHEMA {s}';
    END IF;
END $create$;
CREATE TABLE {s}.schema_version (
    version integer NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE {s}.jobs (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id text PRIMARY KEY,
    name text NOT NULL,
    payload text NOT NULL,
    state text NOT NULL CHECK (state IN {_ALL_STATES}),
    created_at timestamptz NOT NULL,
    next_try_at timestamptz NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    last_try_at timestamptz,
    last_error text,
    done_handlers jsonb NOT NULL DEFAULT '[]',
    lease_owner text,
    lease_expires_at timestamptz,
    finished_at timestamptz,
    lease_token text,
    headers text,
    history jsonb NOT NULL DEFAULT '[]'
) WITH (autovacuum_vacuum_scale_factor = 0.02);
CREATE INDEX jobs_due ON {s}.jobs (next_try_at, attempts, seq) WHERE state IN {PENDING};
CREATE INDEX jobs_leases ON {s}.jobs (lease_expires_at) WHERE state = 'processing';
CREATE INDEX jobs_finished ON {s}.jobs (finished_at) WHERE state IN {_FINISHED};
{_listing_indexes(s)}CREATE TABLE {s}.schedules (
    id text PRIMARY KEY,
    job_class text NOT NULL,
    cron_expression text NOT NULL,
    timezone text NOT NULL,
    next_fire_at timestamptz NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    last_fire_at timestamptz,
    payload text,
    paused boolean NOT NULL DEFAULT false
);
CREATE TABLE {s}.workers (
    id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    running_jobs integer NOT NULL
);
INSERT INTO {s}.schema_version (version) VALUES ({SCHEMA_VERSION});
"""


def migrations(s: str) -> dict[int, str]:
    """SQL that takes a schema from version ``n`` to ``n + 1``, keyed by ``n``.

    Each step ends by recording its version; a fresh schema is created at
    ``SCHEMA_VERSION`` directly and needs none. Steps run in the open's
    transaction, under its advisory lock.
    """
    return {
        # A nullable column without default: a catalog change, no table rewrite.
        # Jobs held at the upgrade have no token; they are claimed again when
        # their leases expire.
        1: f"""
ALTER TABLE {s}.jobs ADD COLUMN lease_token text;
INSERT INTO {s}.schema_version (version) VALUES (2);
""",
        # Nullable again: every schedule stored before is a class schedule.
        # A constant default is a catalog change too: none of them is paused.
        2: f"""
ALTER TABLE {s}.schedules ADD COLUMN payload text;
ALTER TABLE {s}.schedules ADD COLUMN paused boolean NOT NULL DEFAULT false;
INSERT INTO {s}.schema_version (version) VALUES (3);
""",
        # Catalog changes again (no headers, an empty history), then the two
        # listing indexes: built in this transaction, so every other use of
        # the jobs table waits for the build (about 4 s per million jobs on
        # a 2-core machine).
        3: f"""
ALTER TABLE {s}.jobs ADD COLUMN headers text;
ALTER TABLE {s}.jobs ADD COLUMN history jsonb NOT NULL DEFAULT '[]';
{_listing_indexes(s)}
INSERT INTO {s}.schema_version (version) VALUES (4);
""",
    }


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement of the store, for one (validated) schema."""

    schema: str
    channel: str
    create_tables: str
    version_table: str
    read_version: str
    add: str
    claim: str
    extend_leases: str
    finish: str
    get: str
    oldest_due_at: str
    finished_per_minute: str
    to_pending: str
    to_other: str
    delete: str
    purge_lock_key: int
    purge_if_free: str
    purge_in_turn: str
    now: str
    earliest_due: str
    heartbeat: str
    list_workers: str
    remove_worker: str
    upsert_schedule: str
    get_schedule: str
    list_schedules: str
    delete_schedule: str
    fire_schedule: str
    set_schedule_paused: str

    @classmethod
    def for_schema(cls, schema: str, *, relaxed_commit: bool) -> Statements:
        s = f'"{check_schema_name(schema)}"'
        mode = _commit_mode(relaxed_commit)
        return cls(
            schema=schema,
            # A NOTIFY channel per schema: workers of other schemas sleep on.
            channel=f"{schema}.jobs",
            create_tables=_create_tables(s),
            version_table=f"{s}.schema_version",
            read_version=f"SELECT max(version) FROM {s}.schema_version",
            add=_add(s),
            claim=_claim(s, mode),
            extend_leases=_extend_leases(s, mode),
            finish=_finish(s, mode),
            get=f"SELECT {JOB_COLUMNS} FROM {s}.jobs WHERE id = $1",
            # One probe of jobs_due: its first entry.
            oldest_due_at=f"SELECT min(next_try_at) FROM {s}.jobs WHERE state IN {PENDING}",
            finished_per_minute=_finished_per_minute(s),
            to_pending=_to_pending(s),
            to_other=(
                f"UPDATE {s}.jobs SET state = $3, finished_at = $4, "
                "lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL, "
                f"history = {_appended('history', _operator_event('$3', 'attempts'))} "
                f"WHERE id = $1 AND state = ANY($2::text[]) RETURNING {JOB_COLUMNS}"
            ),
            delete=f"DELETE FROM {s}.jobs WHERE id = $1",
            purge_lock_key=advisory_lock_key(schema, "purge"),
            purge_if_free=_purge(s, "pg_try_advisory_xact_lock($4)"),
            purge_in_turn=_purge(s, "pg_advisory_xact_lock($4) IS NOT NULL"),
            now="SELECT now()",
            # Seconds from the server's now: the waiter's clock plays no part.
            earliest_due=(
                "SELECT extract(epoch FROM least("
                f"(SELECT min(next_try_at) FROM {s}.jobs WHERE state IN {PENDING}), "
                f"(SELECT min(lease_expires_at) FROM {s}.jobs WHERE state = 'processing')"
                ") - now())::float8"
            ),
            # Forgets workers silent since $7 (they crashed) in the same round trip.
            heartbeat=(
                f"WITH stale AS (DELETE FROM {s}.workers WHERE last_seen_at < $7) "
                f"INSERT INTO {s}.workers ({WORKER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6) "
                "ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, "
                "started_at = EXCLUDED.started_at, last_seen_at = EXCLUDED.last_seen_at, "
                "running_jobs = EXCLUDED.running_jobs"
            ),
            # COLLATE "C": ids in code point order, whatever the database's collation.
            list_workers=(
                f"SELECT {WORKER_COLUMNS} FROM {s}.workers WHERE last_seen_at >= $1 "
                'ORDER BY id COLLATE "C"'
            ),
            remove_worker=f"DELETE FROM {s}.workers WHERE id = $1",
            upsert_schedule=_upsert_schedule(s),
            get_schedule=f"SELECT {SCHEDULE_COLUMNS} FROM {s}.schedules WHERE id = $1",
            list_schedules=(
                f'SELECT {SCHEDULE_COLUMNS} FROM {s}.schedules ORDER BY id COLLATE "C"'
            ),
            delete_schedule=f"DELETE FROM {s}.schedules WHERE id = $1",
            fire_schedule=_fire_schedule(s),
            set_schedule_paused=f"UPDATE {s}.schedules SET paused = $2 WHERE id = $1",
        )


def _epoch_us(moment: str) -> str:
    """SQL for a timestamptz as integer microseconds since the Unix epoch, as
    ``encode_history`` writes them. Exact on every supported version: before
    PostgreSQL 14 ``extract`` answers a float, which holds the whole seconds
    and the microseconds of a second exactly, but not both in one number."""
    utc = f"({moment} AT TIME ZONE 'UTC')"
    return (
        f"(extract(epoch FROM date_trunc('second', {utc}))::bigint * 1000000"
        f" + extract(microseconds FROM {utc})::bigint % 1000000)"
    )


def _event(state: str, attempt: str, *, error: str, worker: str, started: str) -> str:
    """A history event (``encode_history``'s keys) stamped with the server's now;
    a NULL ``error``, ``worker`` or ``started`` leaves its key out."""
    return (
        f"jsonb_strip_nulls(jsonb_build_object('at', {_epoch_us('now()')}, 'state', {state}, "
        f"'attempt', {attempt}, 'error', {error}, 'worker', {worker}, "
        f"'started', {_epoch_us(started)}))"
    )


def _operator_event(state: str, attempt: str) -> str:
    """The event of an operator's move: no worker, no error, no run."""
    return _event(
        f"{state}::text", attempt, error="NULL::text", worker="NULL::text", started="NULL"
    )


def _appended(history: str, event: str) -> str:
    """``history`` with ``event`` appended, keeping the newest MAX_HISTORY_EVENTS;
    the JSON path runs only once the history is full."""
    keep = MAX_HISTORY_EVENTS
    return (
        f"CASE WHEN jsonb_array_length({history}) < {keep} THEN {history} || {event} "
        f"ELSE jsonb_path_query_array({history} || {event}, '$[last - {keep - 1} to last]') END"
    )


def _batch(first: int) -> str:
    """New jobs passed column by column as arrays ``$first`` to ``$first + 14``,
    rebased on the server's clock.

    WITH ORDINALITY + ORDER BY: the identity column follows the batch order,
    which is the claim order of jobs that tie on due time and attempts.
    """
    arrays = ", ".join(f"${first + i}::{kind}[]" for i, kind in enumerate(_JOB_TYPES))
    return f"""
    SELECT {_REBASED_COLUMNS}
    FROM unnest({arrays})
         WITH ORDINALITY AS batch({_NEW_JOB_COLUMNS}, position)"""


def _add(s: str) -> str:
    return f"""
WITH added AS (
    INSERT INTO {s}.jobs ({_NEW_JOB_COLUMNS}){_batch(1)}
    ORDER BY position
)
SELECT pg_notify($16, '')
"""


def _fire_schedule(s: str) -> str:
    # The job goes in only if the compare-and-set moved the schedule; a
    # skipped tick (no job) moves it without touching last_fire_at. A paused
    # schedule does not fire, even if paused after the scheduler read it.
    return f"""
WITH fired AS (
    UPDATE {s}.schedules
    SET next_fire_at = $3,
        last_fire_at = CASE WHEN cardinality($4::text[]) > 0 THEN $2 ELSE last_fire_at END
    WHERE id = $1 AND next_fire_at = $2 AND NOT paused
    RETURNING id
), added AS (
    INSERT INTO {s}.jobs ({_NEW_JOB_COLUMNS}){_batch(4)}
    WHERE EXISTS (SELECT FROM fired)
    RETURNING 1
), woken AS (
    SELECT pg_notify($19, '') FROM added LIMIT 1
)
SELECT (SELECT count(*) FROM fired), (SELECT count(*) FROM woken)
"""


def _claim(s: str, mode: str) -> str:
    # Both kinds of due job are locked with SKIP LOCKED, so concurrent
    # claimers pass each other instead of queueing on the same rows; the
    # expired-lease branch is normally empty and costs one index probe.
    # $4 (exclude) matters there: a worker still running a job whose lease
    # expired must not take it back under a new token.
    return f"""
WITH {mode}, pending AS (
    SELECT id, next_try_at, attempts, seq FROM {s}.jobs
    WHERE state IN {PENDING} AND next_try_at <= now() AND id <> ALL($4::text[])
    ORDER BY next_try_at, attempts, seq
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT id, next_try_at, attempts, seq FROM {s}.jobs
    WHERE state = 'processing' AND lease_expires_at <= now() AND id <> ALL($4::text[])
    ORDER BY lease_expires_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT id FROM (SELECT * FROM pending UNION ALL SELECT * FROM expired) AS due
    ORDER BY next_try_at, attempts, seq
    LIMIT $2
), taken AS (
    UPDATE {s}.jobs AS j
    SET state = 'processing', attempts = j.attempts + 1, last_try_at = now(),
        lease_owner = $1, lease_expires_at = now() + $3::float8 * interval '1 second',
        lease_token = $5
    WHERE j.id = ANY(ARRAY(SELECT id FROM chosen))
    RETURNING {_qualified("j")}, j.seq
)
SELECT {JOB_COLUMNS} FROM taken, commit_mode ORDER BY next_try_at, attempts, seq
"""


# Fenced writes lock their rows first, in ascending id order, whatever order
# the caller's batch is in: two workers writing overlapping batches then queue
# instead of deadlocking. ARRAY(...) is evaluated once, before the UPDATE
# touches a row, so every lock is taken in that order. The token decides
# (expired or not); the owner condition only matters while workers of schema
# version 1, whose claims leave the token alone, still run beside this one.
_LOCKED = "locked AS (SELECT id FROM {s}.jobs WHERE id = ANY($2::text[]) ORDER BY id FOR UPDATE)"
_FENCE = (
    "j.id = ANY(ARRAY(SELECT id FROM locked)) AND j.state = 'processing' "
    "AND j.lease_owner = $1 AND j.lease_token = {token}"
)


def _extend_leases(s: str, mode: str) -> str:
    return f"""
WITH {mode}, {_LOCKED.format(s=s)}, extended AS (
    UPDATE {s}.jobs AS j
    SET lease_expires_at = now() + $4::float8 * interval '1 second'
    FROM unnest($2::text[], $3::text[]) AS l(id, lease_token)
    WHERE j.id = l.id AND {_FENCE.format(token="l.lease_token")}
    RETURNING j.id
)
SELECT (SELECT array_agg(id) FROM extended), (SELECT mode FROM commit_mode)
"""


def _finish(s: str, mode: str) -> str:
    # $8 says which outcomes are final: the server stamps finished_at. The
    # event's start is the claim's last_try_at: SET reads the row as it was.
    event = _event(
        "o.state", "o.attempts", error="o.last_error", worker="$1::text", started="j.last_try_at"
    )
    return f"""
WITH {mode}, {_LOCKED.format(s=s)}, applied AS (
    UPDATE {s}.jobs AS j
    SET state = o.state, attempts = o.attempts, next_try_at = o.next_try_at,
        last_error = o.last_error, done_handlers = o.done_handlers,
        finished_at = CASE WHEN o.final THEN now() END,
        lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL,
        history = {_appended("j.history", event)}
    FROM unnest($2::text[], $3::text[], $4::int[], $5::timestamptz[], $6::text[],
                $7::jsonb[], $8::boolean[], $9::text[])
         AS o(id, state, attempts, next_try_at, last_error, done_handlers, final, lease_token)
    WHERE j.id = o.id AND {_FENCE.format(token="o.lease_token")}
    RETURNING j.id, j.state
), woken AS (
    SELECT pg_notify($10, '') FROM applied WHERE state IN {PENDING} LIMIT 1
)
SELECT (SELECT array_agg(id) FROM applied), (SELECT count(*) FROM woken),
       (SELECT mode FROM commit_mode)
"""


def _purge(s: str, lock: str) -> str:
    # One bounded chunk, oldest first through jobs_finished (the literal state
    # list lets the planner use it, and keeps pending and held jobs out
    # whatever the caller passes). The gate is evaluated once, before the
    # scan: without the purge lock nothing is locked or removed. SKIP LOCKED:
    # a purge never waits on a row a worker or operator is writing.
    return f"""
WITH gate AS (
    SELECT {lock} AS open
), doomed AS (
    SELECT id FROM {s}.jobs
    WHERE (SELECT open FROM gate) AND state IN {_FINISHED}
      AND state = ANY($1::text[]) AND finished_at < $2
    ORDER BY finished_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), purged AS (
    DELETE FROM {s}.jobs WHERE id = ANY(ARRAY(SELECT id FROM doomed))
    RETURNING 1
)
SELECT count(*) FROM purged
"""


def _upsert_schedule(s: str) -> str:
    # One statement: the row lock orders it with a concurrent fire_schedule,
    # and the SET reads the row as that left it. The stored next tick stays
    # unless the cron expression or time zone changed; paused is never updated.
    return f"""
INSERT INTO {s}.schedules AS old ({SCHEDULE_COLUMNS})
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (id) DO UPDATE SET
    job_class = EXCLUDED.job_class,
    payload = EXCLUDED.payload,
    cron_expression = EXCLUDED.cron_expression,
    timezone = EXCLUDED.timezone,
    updated_at = EXCLUDED.updated_at,
    next_fire_at = CASE
        WHEN old.cron_expression = EXCLUDED.cron_expression
             AND old.timezone = EXCLUDED.timezone THEN old.next_fire_at
        ELSE EXCLUDED.next_fire_at
    END
"""


def _finished_per_minute(s: str) -> str:
    # A range of jobs_finished; minutes are UTC whatever the session's time zone.
    return f"""
SELECT date_trunc('minute', finished_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS minute,
       count(*)
FROM {s}.jobs
WHERE state IN {_FINISHED} AND finished_at >= $1
GROUP BY 1
ORDER BY 1
"""


def _to_pending(s: str) -> str:
    return f"""
WITH moved AS (
    UPDATE {s}.jobs
    SET state = $3, next_try_at = $4, finished_at = NULL,
        lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL,
        history = {_appended("history", _operator_event("$3", "attempts"))}
    WHERE id = $1 AND state = ANY($2::text[])
    RETURNING {JOB_COLUMNS}
)
SELECT moved.* FROM moved, LATERAL (SELECT pg_notify($5, '')) AS woken
"""


def _qualified(alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in JOB_COLUMNS.split(","))
