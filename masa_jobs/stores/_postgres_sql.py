"""SQL text of the PostgreSQL store, built once per store for one schema.

The only name spliced into SQL is the schema, validated by
``check_schema_name`` and double-quoted; every value travels as a query
parameter. Arrays passed through ``unnest`` carry whole batches, so that a
batch costs one round trip.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

__all__ = [
    "SCHEMA_VERSION",
    "Statements",
    "advisory_lock_key",
    "check_schema_name",
    "migrations",
]

# Bump with every change of the tables, and add the step to MIGRATIONS.
SCHEMA_VERSION = 1
# Plain identifiers only, short enough that "<schema>.jobs" fits PostgreSQL's
# 63-byte limit on identifiers, which notification channels share.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")

# States as literals, so that the planner matches the partial indexes.
_PENDING = "('scheduled', 'enqueued')"
_FINISHED = "('succeeded', 'dead', 'cancelled')"
_ALL_STATES = "('scheduled', 'enqueued', 'processing', 'succeeded', 'dead', 'cancelled')"

# The columns of a job, in the order ``JobRecord`` takes them.
JOB_COLUMNS = (
    "id, name, payload, state, created_at, next_try_at, attempts, last_try_at, "
    "last_error, done_handlers, lease_owner, lease_expires_at, finished_at"
)
# Their PostgreSQL types, for the arrays a batch of jobs travels in.
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
)
WORKER_COLUMNS = "id, host, pid, started_at, last_seen_at, running_jobs"
# The columns of a schedule, in the order ``ScheduleRecord`` takes them.
SCHEDULE_COLUMNS = (
    "id, job_class, cron_expression, timezone, next_fire_at, created_at, updated_at, last_fire_at"
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


def advisory_lock_key(schema: str) -> int:
    """A stable signed 64-bit key that serialises schema set-up across processes."""
    digest = hashlib.blake2b(f"masa_jobs.schema:{schema}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def _create_tables(s: str) -> str:
    # Every state change rewrites the row and adds an entry to each index
    # (no HOT update is possible): indexes are kept to what claim, finish,
    # wake-up and purge need. Listing newest first scans the table instead.
    # A queue table turns its rows over constantly: vacuum after 2% churn, not
    # the default 20%, so that dead entries do not slow the claim's index scan.
    return f"""
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
    state text NOT NULL CHECK (state IN {_ALL_STATES}),
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
CREATE INDEX jobs_due ON {s}.jobs (next_try_at, attempts, seq) WHERE state IN {_PENDING};
CREATE INDEX jobs_leases ON {s}.jobs (lease_expires_at) WHERE state = 'processing';
CREATE INDEX jobs_finished ON {s}.jobs (finished_at) WHERE state IN {_FINISHED};
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
INSERT INTO {s}.schema_version (version) VALUES ({SCHEMA_VERSION});
"""


def migrations(s: str) -> dict[int, str]:
    """SQL that takes a schema from version ``n`` to ``n + 1``, keyed by ``n``.

    Each step ends by recording its version; a fresh schema is created at
    ``SCHEMA_VERSION`` directly and needs none.
    """
    return {}


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
    list_all: str
    list_states: str
    count_by_state: str
    to_pending: str
    to_other: str
    delete: str
    purge: str
    earliest_due: str
    heartbeat: str
    list_workers: str
    remove_worker: str
    upsert_schedule: str
    get_schedule: str
    list_schedules: str
    delete_schedule: str
    fire_schedule: str

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
            extend_leases=(
                f"WITH {mode}, extended AS (UPDATE {s}.jobs SET lease_expires_at = $3 "
                "WHERE id = ANY($2::text[]) AND state = 'processing' AND lease_owner = $1) "
                "SELECT mode FROM commit_mode"
            ),
            finish=_finish(s, mode),
            get=f"SELECT {JOB_COLUMNS} FROM {s}.jobs WHERE id = $1",
            list_all=(
                f"SELECT {JOB_COLUMNS} FROM {s}.jobs "
                "ORDER BY created_at DESC, seq DESC LIMIT $1 OFFSET $2"
            ),
            list_states=(
                f"SELECT {JOB_COLUMNS} FROM {s}.jobs WHERE state = ANY($3::text[]) "
                "ORDER BY created_at DESC, seq DESC LIMIT $1 OFFSET $2"
            ),
            count_by_state=(
                f"SELECT CASE WHEN state NOT IN {_PENDING} THEN state "
                "WHEN next_try_at <= $1 THEN 'enqueued' ELSE 'scheduled' END, count(*) "
                f"FROM {s}.jobs GROUP BY 1"
            ),
            to_pending=_to_pending(s),
            to_other=(
                f"UPDATE {s}.jobs SET state = $3, finished_at = $4, "
                "lease_owner = NULL, lease_expires_at = NULL "
                f"WHERE id = $1 AND state = ANY($2::text[]) RETURNING {JOB_COLUMNS}"
            ),
            delete=f"DELETE FROM {s}.jobs WHERE id = $1",
            # The literal state list lets the planner use jobs_finished and
            # keeps pending and held jobs out whatever the caller passes.
            purge=(
                f"DELETE FROM {s}.jobs WHERE state IN {_FINISHED} "
                "AND state = ANY($1::text[]) AND finished_at < $2"
            ),
            earliest_due=(
                f"SELECT least((SELECT min(next_try_at) FROM {s}.jobs WHERE state IN {_PENDING}),"
                f" (SELECT min(lease_expires_at) FROM {s}.jobs WHERE state = 'processing'))"
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
            upsert_schedule=(
                f"INSERT INTO {s}.schedules ({SCHEDULE_COLUMNS}) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
                "ON CONFLICT (id) DO UPDATE SET job_class = EXCLUDED.job_class, "
                "cron_expression = EXCLUDED.cron_expression, timezone = EXCLUDED.timezone, "
                "next_fire_at = EXCLUDED.next_fire_at, created_at = EXCLUDED.created_at, "
                "updated_at = EXCLUDED.updated_at, last_fire_at = EXCLUDED.last_fire_at"
            ),
            get_schedule=f"SELECT {SCHEDULE_COLUMNS} FROM {s}.schedules WHERE id = $1",
            list_schedules=(
                f'SELECT {SCHEDULE_COLUMNS} FROM {s}.schedules ORDER BY id COLLATE "C"'
            ),
            delete_schedule=f"DELETE FROM {s}.schedules WHERE id = $1",
            fire_schedule=_fire_schedule(s),
        )


def _batch(first: int) -> str:
    """Jobs passed column by column as arrays ``$first`` to ``$first + 12``.

    WITH ORDINALITY + ORDER BY: the identity column follows the batch order,
    which is the claim order of jobs that tie on due time and attempts.
    """
    arrays = ", ".join(f"${first + i}::{kind}[]" for i, kind in enumerate(_JOB_TYPES))
    return f"""
    SELECT {JOB_COLUMNS}
    FROM unnest({arrays})
         WITH ORDINALITY AS batch({JOB_COLUMNS}, position)"""


def _add(s: str) -> str:
    return f"""
WITH added AS (
    INSERT INTO {s}.jobs ({JOB_COLUMNS}){_batch(1)}
    ORDER BY position
)
SELECT pg_notify($14, '')
"""


def _fire_schedule(s: str) -> str:
    # The job goes in only if the compare-and-set moved the schedule; a
    # skipped tick (no job) moves it without touching last_fire_at.
    return f"""
WITH fired AS (
    UPDATE {s}.schedules
    SET next_fire_at = $3,
        last_fire_at = CASE WHEN cardinality($4::text[]) > 0 THEN $2 ELSE last_fire_at END
    WHERE id = $1 AND next_fire_at = $2
    RETURNING id
), added AS (
    INSERT INTO {s}.jobs ({JOB_COLUMNS}){_batch(4)}
    WHERE EXISTS (SELECT FROM fired)
    RETURNING 1
), woken AS (
    SELECT pg_notify($17, '') FROM added LIMIT 1
)
SELECT (SELECT count(*) FROM fired), (SELECT count(*) FROM woken)
"""


def _claim(s: str, mode: str) -> str:
    # Both kinds of due job are locked with SKIP LOCKED, so concurrent
    # claimers pass each other instead of queueing on the same rows; the
    # expired-lease branch is normally empty and costs one index probe.
    return f"""
WITH {mode}, pending AS (
    SELECT id, next_try_at, attempts, seq FROM {s}.jobs
    WHERE state IN {_PENDING} AND next_try_at <= $2
    ORDER BY next_try_at, attempts, seq
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), expired AS (
    SELECT id, next_try_at, attempts, seq FROM {s}.jobs
    WHERE state = 'processing' AND lease_expires_at <= $2
    ORDER BY lease_expires_at
    LIMIT $3
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT id FROM (SELECT * FROM pending UNION ALL SELECT * FROM expired) AS due
    ORDER BY next_try_at, attempts, seq
    LIMIT $3
), taken AS (
    UPDATE {s}.jobs AS j
    SET state = 'processing', attempts = j.attempts + 1, last_try_at = $2,
        lease_owner = $1, lease_expires_at = $4
    WHERE j.id = ANY(ARRAY(SELECT id FROM chosen))
    RETURNING {_qualified("j")}, j.seq
)
SELECT {JOB_COLUMNS} FROM taken, commit_mode ORDER BY next_try_at, attempts, seq
"""


def _finish(s: str, mode: str) -> str:
    # The lease-owner condition is what keeps a worker that lost its lease
    # from overwriting the new owner's run.
    return f"""
WITH {mode}, applied AS (
    UPDATE {s}.jobs AS j
    SET state = o.state, attempts = o.attempts, next_try_at = o.next_try_at,
        last_error = o.last_error, done_handlers = o.done_handlers,
        finished_at = o.finished_at, lease_owner = NULL, lease_expires_at = NULL
    FROM unnest($2::text[], $3::text[], $4::int[], $5::timestamptz[], $6::text[],
                $7::jsonb[], $8::timestamptz[])
         AS o(id, state, attempts, next_try_at, last_error, done_handlers, finished_at)
    WHERE j.id = o.id AND j.state = 'processing' AND j.lease_owner = $1
    RETURNING j.state
), woken AS (
    SELECT pg_notify($9, '') FROM applied WHERE state IN {_PENDING} LIMIT 1
)
SELECT (SELECT count(*) FROM applied), (SELECT count(*) FROM woken),
       (SELECT mode FROM commit_mode)
"""


def _to_pending(s: str) -> str:
    return f"""
WITH moved AS (
    UPDATE {s}.jobs
    SET state = $3, next_try_at = $4, finished_at = NULL,
        lease_owner = NULL, lease_expires_at = NULL
    WHERE id = $1 AND state = ANY($2::text[])
    RETURNING {JOB_COLUMNS}
)
SELECT moved.* FROM moved, LATERAL (SELECT pg_notify($5, '')) AS woken
"""


def _qualified(alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in JOB_COLUMNS.split(","))
