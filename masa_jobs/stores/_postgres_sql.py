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

from ..records import DEFAULT_QUEUE, MAX_HISTORY_EVENTS, MAX_PRIORITY, MIN_PRIORITY, UniqueScope

__all__ = [
    "JOB_COLUMNS",
    "PENDING",
    "PRIORITIES",
    "SCHEMA_VERSION",
    "Statements",
    "advisory_lock_key",
    "check_schema_name",
    "migrations",
    "served_queues",
]

# Bump with every change of the tables, and add the step to ``migrations``.
# 2: jobs.lease_token, the fencing value of the claim that holds a job.
# 3: schedules.payload, the args of a schedule of an ordinary job, and
#    schedules.paused.
# 4: jobs.headers and jobs.history, and the two listing indexes.
# 5: jobs.queue, jobs.priority and the unique key columns, jobs_due by queue
#    and priority, the unique key index, and paused_queues.
SCHEMA_VERSION = 5
# Plain identifiers only, short enough that "<schema>.cancels" fits PostgreSQL's
# 63-byte limit on identifiers, which notification channels share.
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")

# States as literals, so that the planner matches the partial indexes.
PENDING = "('scheduled', 'enqueued')"
_FINISHED = "('succeeded', 'dead', 'cancelled')"
_ALL_STATES = "('scheduled', 'enqueued', 'processing', 'succeeded', 'dead', 'cancelled')"
_SCOPES = "(" + ", ".join(f"'{scope}'" for scope in UniqueScope) + ")"
# The scopes whose key a job gives up once it is finished; ``period`` keys
# end with their time alone.
_RELEASED_WHEN_FINISHED = f"('{UniqueScope.PENDING}', '{UniqueScope.ACTIVE}')"
# Every priority, first to last: the claim and the due-time probes read the
# due index one priority at a time, each a range of next_try_at.
PRIORITIES = f"generate_series({MIN_PRIORITY}, {MAX_PRIORITY}) AS p(priority)"

# The columns a new job is stored with; a new job holds no lease token.
_NEW_JOB_COLUMNS = (
    "id, name, payload, state, created_at, next_try_at, attempts, last_try_at, "
    "last_error, done_handlers, lease_owner, lease_expires_at, finished_at, headers, history, "
    "queue, priority"
)
# What a new job with a unique key is stored with besides; a batch without
# keys leaves them out (NULL), which spares it three arrays of NULLs.
_UNIQUE_COLUMNS = "unique_key, unique_scope, unique_until"
# The unique columns of a new job as stored: a period ends after the same
# time from creation on the server's clock, whatever the enqueuer's clock said.
_REBASED_UNIQUE = (
    "unique_key, unique_scope, now() + (extract(epoch FROM unique_until) - "
    "extract(epoch FROM created_at)) * interval '1 second'"
)
# The columns of a job, in the order ``JobRecord`` takes them.
JOB_COLUMNS = f"{_NEW_JOB_COLUMNS}, {_UNIQUE_COLUMNS}, lease_token"
# What a batch stores of each new job: the caller's columns, rebased on the
# server's clock (created now, due after the same delay as the caller meant).
# The JSON columns arrive as text (see _JOB_TYPES) and are cast here.
_REBASED_COLUMNS = (
    _NEW_JOB_COLUMNS.replace(
        "created_at, next_try_at",
        "now(), now() + (extract(epoch FROM next_try_at) - extract(epoch FROM created_at))"
        " * interval '1 second'",
    )
    .replace("done_handlers", "done_handlers::jsonb")
    .replace("history", "history::jsonb")
)
# The types of _NEW_JOB_COLUMNS, for the arrays a batch of jobs travels in.
# JSON travels as text, cast on the server, here and in every other statement:
# an application's connection (add_in, finish_in) may carry a jsonb codec of
# its own (asyncpg's set_type_codec, as SQLAlchemy's dialect installs one),
# which would store the encoded text as a JSON string, or read a result back
# as a dict.
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
    "text",
    "text",
    "timestamptz",
    "timestamptz",
    "text",
    "text",
    "text",
    "int",
)
_UNIQUE_TYPES = ("text", "text", "timestamptz")
# The arrays of a batch of new jobs, one per column, without and with keys.
BATCH_ARRAYS = len(_JOB_TYPES)
UNIQUE_BATCH_ARRAYS = BATCH_ARRAYS + len(_UNIQUE_TYPES)
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


def _due_index(s: str) -> str:
    """The index the claim and the due-time probes read, over pending jobs only.

    Read per queue and per priority, due jobs are a range of ``next_try_at``
    in claim order: a claim of named queues never walks another queue's
    jobs, nor jobs due later. "Every queue" finds the queues that hold
    pending jobs on the same index first (``_pending_queues``), one descent
    each. A second index by priority alone would spare that, but an add
    writes every index entry of a pending job: one more costs a batch add
    about 10% more CPU (measured), for what a worker of every queue saves.
    """
    return f"""
CREATE INDEX jobs_due ON {s}.jobs (queue, priority, next_try_at, attempts, seq)
    WHERE state IN {PENDING};
"""


def _control_tables(s: str) -> str:
    """The unique key index and the paused queues.

    Only jobs that hold a key have an entry: the index costs nothing to a
    job without one, and a job gives its key up by setting it to NULL.
    """
    return f"""
CREATE UNIQUE INDEX jobs_unique_key ON {s}.jobs (unique_key) WHERE unique_key IS NOT NULL;
CREATE TABLE {s}.paused_queues (
    queue text COLLATE "C" PRIMARY KEY,
    paused_at timestamptz NOT NULL DEFAULT now()
);
"""


# The job control columns, as CREATE TABLE and ADD COLUMN write them: a
# job stored before them waits in the default queue at the first priority
# and holds no key. Queue names and keys compare byte by byte (COLLATE "C"):
# cheaper than the database's collation in every index entry an add writes,
# and the same order on every server.
_CONTROL_COLUMNS = (
    f"queue text COLLATE \"C\" NOT NULL DEFAULT '{DEFAULT_QUEUE}'",
    f"priority integer NOT NULL DEFAULT {MIN_PRIORITY} "
    f"CHECK (priority BETWEEN {MIN_PRIORITY} AND {MAX_PRIORITY})",
    'unique_key text COLLATE "C"',
    f"unique_scope text CHECK (unique_scope IN {_SCOPES})",
    "unique_until timestamptz",
)
# How CREATE TABLE lists them.
_COLUMN_LIST = ",\n    "


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
    history jsonb NOT NULL DEFAULT '[]',
    {_COLUMN_LIST.join(_CONTROL_COLUMNS)}
) WITH (autovacuum_vacuum_scale_factor = 0.02);
{_due_index(s)}{_control_tables(s)}
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
        # Constant defaults and nullable columns: catalog changes (the CHECK
        # reads the table once). The due index is rebuilt by queue and
        # priority, and the new indexes are built in this transaction, like
        # version 4's.
        4: f"""
ALTER TABLE {s}.jobs {", ".join(f"ADD COLUMN {column}" for column in _CONTROL_COLUMNS)};
DROP INDEX {s}.jobs_due;
{_due_index(s)}{_control_tables(s)}
INSERT INTO {s}.schema_version (version) VALUES (5);
""",
    }


@dataclass(frozen=True, slots=True)
class Statements:
    """Every statement of the store, for one (validated) schema."""

    schema: str
    channel: str
    cancel_channel: str
    create_tables: str
    version_table: str
    read_version: str
    add: str
    add_one: str
    unique_lock_seed: int
    hold_keys: str
    add_unique: str
    claim_every_queue: str
    claim_queues: str
    claimed_under: str
    stored_ids: str
    extend_leases: str
    finish: str
    finish_strict: str
    record_handlers: str
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
    earliest_due_every_queue: str
    earliest_due_queues: str
    pause_queue: str
    resume_queue: str
    paused_queues: str
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
            # NOTIFY channels per schema: workers of other schemas sleep on.
            channel=f"{schema}.jobs",
            cancel_channel=f"{schema}.cancels",
            create_tables=_create_tables(s),
            version_table=f"{s}.schema_version",
            read_version=f"SELECT max(version) FROM {s}.schema_version",
            add=_add(s),
            add_one=_add_one(s),
            unique_lock_seed=advisory_lock_key(schema, "unique"),
            hold_keys=_hold_keys(s),
            add_unique=_add_unique(s),
            claim_every_queue=_claim(s, mode, None),
            claim_queues=_claim(s, mode, "$6::text[]"),
            # The jobs a claim leased under its token ($1) and still holds, in
            # claim order: for a claimer whose reply was lost. Read through the
            # processing jobs alone (jobs_by_state): a few per worker.
            claimed_under=(
                f"SELECT {JOB_COLUMNS} FROM {s}.jobs WHERE state = 'processing' "
                "AND lease_token = $1 AND lease_owner = $2 "
                "ORDER BY priority, next_try_at, attempts, seq"
            ),
            stored_ids=f"SELECT id FROM {s}.jobs WHERE id = ANY($1::text[])",
            extend_leases=_extend_leases(s, mode),
            finish=_finish(s, mode),
            # On the application's connection (finish_in): its commit is its
            # own, never relaxed by a statement of ours.
            finish_strict=_finish(s, _commit_mode(False)),
            record_handlers=_record_handlers(s),
            get=f"SELECT {JOB_COLUMNS} FROM {s}.jobs WHERE id = $1",
            oldest_due_at=_oldest_due_at(s),
            finished_per_minute=_finished_per_minute(s),
            to_pending=_to_pending(s),
            to_other=_to_other(s),
            delete=f"DELETE FROM {s}.jobs WHERE id = $1",
            purge_lock_key=advisory_lock_key(schema, "purge"),
            purge_if_free=_purge(s, "pg_try_advisory_xact_lock($4)"),
            purge_in_turn=_purge(s, "pg_advisory_xact_lock($4) IS NOT NULL"),
            now="SELECT now()",
            earliest_due_every_queue=_earliest_due(s, None),
            earliest_due_queues=_earliest_due(s, "$1::text[]"),
            pause_queue=(
                f"INSERT INTO {s}.paused_queues (queue) VALUES ($1) ON CONFLICT (queue) DO NOTHING"
            ),
            # A resume wakes the waiting workers, as an add does.
            resume_queue=(
                f"WITH resumed AS (DELETE FROM {s}.paused_queues WHERE queue = $1 RETURNING 1) "
                "SELECT pg_notify($2, '') FROM resumed"
            ),
            paused_queues=f"SELECT queue FROM {s}.paused_queues",
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


def _insert_batch(s: str, first: int, *, unique: bool = False, where: str = "") -> str:
    """An insert of new jobs passed column by column as arrays from
    ``$first`` on (BATCH_ARRAYS, or UNIQUE_BATCH_ARRAYS with ``unique``),
    rebased on the server's clock (``unique_until`` too: the period ends as
    long after the job's creation as the caller said).
    ``where`` (SQL) says whether to insert at all.

    WITH ORDINALITY + ORDER BY: the identity column follows the batch order,
    which is the claim order of jobs that tie on due time and attempts.
    """
    columns, rebased = _NEW_JOB_COLUMNS, _REBASED_COLUMNS
    types: tuple[str, ...] = _JOB_TYPES
    if unique:
        columns, rebased = f"{columns}, {_UNIQUE_COLUMNS}", f"{rebased}, {_REBASED_UNIQUE}"
        types += _UNIQUE_TYPES
    arrays = ", ".join(f"${first + i}::{kind}[]" for i, kind in enumerate(types))
    return f"""INSERT INTO {s}.jobs ({columns})
    SELECT {rebased}
    FROM unnest({arrays})
         WITH ORDINALITY AS batch({columns}, position){where}
    ORDER BY position"""


# What a new job sets of its own; the other columns start at their defaults
# (no attempt, no lease, no outcome, an empty history). See ``_add_one``.
_NEW_JOB_PARAMETERS = 8


def _add_one(s: str) -> str:
    """One new job without a unique key: the common single enqueue.

    Only what a new job sets travels, as scalars: id, name, payload, state,
    its delay in seconds ($5: due that long after its creation, both on the
    server's clock, as a batch rebases them), headers, queue and priority;
    every other column takes its default. Fewer parameters to encode and
    no timestamp to convert: a job that is not new goes in as a batch of one.

    The ``NOTIFY`` is a one-row subquery the insert reads from, not a
    ``SELECT`` after it: the statement answers no row, only its status
    (measured a few percent faster). A volatile function keeps the planner
    from folding the subquery away, and the notification, like the row, is
    delivered only if the transaction commits.
    """
    return f"""
INSERT INTO {s}.jobs (id, name, payload, state, created_at, next_try_at, headers, queue, priority)
SELECT $1::text, $2::text, $3::text, $4::text, now(), now() + $5::float8 * interval '1 second',
       $6::text, $7::text, $8::int
FROM (SELECT pg_notify(${_NEW_JOB_PARAMETERS + 1}, '')) AS woken
"""


def _add(s: str) -> str:
    """A batch of jobs none of which has a unique key: one plain insert."""
    return f"""
WITH added AS (
    {_insert_batch(s, 1)}
)
SELECT pg_notify(${BATCH_ARRAYS + 1}, '')
"""


def _hold_keys(s: str) -> str:
    """The first statement of an add with unique keys ($1, the batch's keys).

    It takes the transaction's lock on each key, all in one order (their
    hashes, seeded per schema by $2, ascending): concurrent adds of the same
    keys queue instead of deadlocking on each other's inserts, and every
    later statement of this add sees the holders they committed. Then it
    frees the keys whose period is over, so that the insert may take them.
    """
    return f"""
WITH locked AS MATERIALIZED (
    SELECT pg_advisory_xact_lock(h) FROM (
        SELECT DISTINCT hashtextextended(key, $2) AS h FROM unnest($1::text[]) AS k(key)
        ORDER BY h
    ) AS keys
), ended AS (
    UPDATE {s}.jobs SET unique_key = NULL
    WHERE unique_key = ANY($1::text[]) AND unique_scope = '{UniqueScope.PERIOD}'
      AND unique_until <= now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM locked), (SELECT count(*) FROM ended)
"""


def _add_unique(s: str) -> str:
    """The insert of an add with unique keys, after ``_hold_keys``.

    A record whose key is held (by a stored job, or by an earlier record of
    the batch, inserted first: the batch goes in order) is skipped. The
    answer: the ids inserted, and the holders of the batch's keys
    (${UNIQUE_BATCH_ARRAYS + 1}) as this statement's snapshot saw them, before
    its own inserts, as a JSON object key -> id.
    """
    return f"""
WITH added AS (
    {_insert_batch(s, 1, unique=True)}
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING id
), holders AS (
    SELECT unique_key, id FROM {s}.jobs
    WHERE unique_key = ANY(${UNIQUE_BATCH_ARRAYS + 1}::text[])
), woken AS (
    SELECT pg_notify(${UNIQUE_BATCH_ARRAYS + 2}, '') FROM added LIMIT 1
)
SELECT (SELECT array_agg(id) FROM added),
       (SELECT jsonb_object_agg(unique_key, id)::text FROM holders),
       (SELECT count(*) FROM woken)
"""


def _fire_schedule(s: str) -> str:
    # The job goes in only if the compare-and-set moved the schedule; a
    # skipped tick (no job) moves it without touching last_fire_at. A paused
    # schedule does not fire, even if paused after the scheduler read it.
    # A tick whose unique key another job holds fires without a job.
    channel = 4 + UNIQUE_BATCH_ARRAYS
    return f"""
WITH fired AS (
    UPDATE {s}.schedules
    SET next_fire_at = $3,
        last_fire_at = CASE WHEN cardinality($4::text[]) > 0 THEN $2 ELSE last_fire_at END
    WHERE id = $1 AND next_fire_at = $2 AND NOT paused
    RETURNING id
), added AS (
    {_insert_batch(s, 4, unique=True, where=" WHERE EXISTS (SELECT FROM fired)")}
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING
    RETURNING 1
), woken AS (
    SELECT pg_notify(${channel}, '') FROM added LIMIT 1
)
SELECT (SELECT count(*) FROM fired), (SELECT count(*) FROM woken)
"""


def _paused(s: str) -> str:
    """The queues paused now, as an array read once per statement (an InitPlan)."""
    return f"ARRAY(SELECT queue FROM {s}.paused_queues)"


def _pending_queues(s: str) -> str:
    """The recursive CTE ``queued``: every queue that holds pending jobs, in
    order, then a NULL; one descent of ``jobs_due`` per queue (a loose index
    scan), whatever the number of jobs."""
    return f"""queued(queue) AS (
    (SELECT queue FROM {s}.jobs WHERE state IN {PENDING} ORDER BY queue LIMIT 1)
    UNION ALL
    SELECT (SELECT j.queue FROM {s}.jobs AS j
            WHERE j.state IN {PENDING} AND j.queue > queued.queue ORDER BY j.queue LIMIT 1)
    FROM queued WHERE queued.queue IS NOT NULL
)"""


def served_queues(s: str, queues: str | None, *, skip_paused: bool = True) -> str:
    """CTEs up to ``served``, to follow ``WITH RECURSIVE``: the queues in
    ``queues`` (an array parameter; None: every queue that holds pending
    jobs), paused ones left out unless not ``skip_paused``."""
    wanted = ["queue <> ALL(" + _paused(s) + ")"] if skip_paused else []
    if queues is None:
        source = "queued"
        wanted.insert(0, "queue IS NOT NULL")
        head = f"{_pending_queues(s)}, "
    else:
        source, head = f"unnest({queues}) AS q(queue)", ""
    where = f" WHERE {' AND '.join(wanted)}" if wanted else ""
    return f"{head}served AS MATERIALIZED (SELECT queue FROM {source}{where})"


def _first_due(s: str) -> str:
    """FROM items whose ``min(next_try_at)`` is the next due time of the
    pending jobs of ``served``: one probe of ``jobs_due`` per queue and priority."""
    return f"""served CROSS JOIN {PRIORITIES} CROSS JOIN LATERAL (
    SELECT next_try_at FROM {s}.jobs
    WHERE state IN {PENDING} AND queue = served.queue AND priority = p.priority
    ORDER BY next_try_at
    LIMIT 1
) AS due"""


def _oldest_due_at(s: str) -> str:
    """The next due time of every pending job, paused queues included."""
    return (
        f"WITH RECURSIVE {served_queues(s, None, skip_paused=False)} "
        f"SELECT min(next_try_at) FROM {_first_due(s)}"
    )


def _earliest_due(s: str, queues: str | None) -> str:
    """Seconds from the server's now until a job of ``queues`` (an array
    parameter; None: every queue) falls due or its lease runs out, paused
    queues left out; NULL when none will. The waiter's clock plays no part."""
    if queues is None:
        # Not only the queues with pending jobs: any processing job's lease.
        leased = f"queue <> ALL({_paused(s)})"
    else:
        leased = "queue IN (SELECT queue FROM served)"
    return f"""
WITH RECURSIVE {served_queues(s, queues)}
SELECT extract(epoch FROM least(
    (SELECT min(next_try_at) FROM {_first_due(s)}),
    (SELECT min(lease_expires_at) FROM {s}.jobs WHERE state = 'processing' AND {leased})
) - now())::float8
"""


def _claim(s: str, mode: str, queues: str | None) -> str:
    """Take due jobs of ``queues`` (an array parameter; None: every queue),
    paused queues left out.

    Due pending jobs are read one priority at a time, first to last, and per
    served queue a range of ``jobs_due`` in claim order, merged. The nested
    loop over the priorities yields them in claim order and the LIMIT above
    it stops it once it has enough, so the claim never walks jobs due later
    or of other queues. Rows are locked as they are read (SKIP LOCKED:
    concurrent claimers pass each other): a claim of one queue locks what it
    takes, one of several queues up to ``limit`` per queue at a priority,
    the rest freed at commit (measured on three queues: 14% more CPU and 6%
    more WAL per job than one queue; a second due index by priority alone
    would spare that, at a cost to every add). Both kinds of due job are
    locked; the expired-lease branch is normally empty and costs one index
    probe. $4 (exclude) matters there: a worker still running a job whose
    lease expired must not take it back under a new token. The first claim
    releases a ``pending`` unique key.
    """
    if queues is None:
        # Not only the queues with pending jobs: any expired lease.
        expired_queues = f"queue <> ALL({_paused(s)})"
    else:
        expired_queues = "queue IN (SELECT queue FROM served)"
    return f"""
WITH RECURSIVE {mode}, {served_queues(s, queues)}, pending AS (
    SELECT due.* FROM {PRIORITIES} CROSS JOIN LATERAL (
        SELECT by_queue.* FROM served CROSS JOIN LATERAL (
            SELECT id, priority, next_try_at, attempts, seq FROM {s}.jobs
            WHERE state IN {PENDING} AND queue = served.queue AND priority = p.priority
              AND next_try_at <= now() AND id <> ALL($4::text[])
            ORDER BY next_try_at, attempts, seq
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        ) AS by_queue
        ORDER BY next_try_at, attempts, seq
        LIMIT $2
    ) AS due
    LIMIT $2
), expired AS (
    SELECT id, priority, next_try_at, attempts, seq FROM {s}.jobs
    WHERE state = 'processing' AND lease_expires_at <= now() AND id <> ALL($4::text[])
      AND {expired_queues}
    ORDER BY lease_expires_at
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT id FROM (SELECT * FROM pending UNION ALL SELECT * FROM expired) AS due
    ORDER BY priority, next_try_at, attempts, seq
    LIMIT $2
), taken AS (
    UPDATE {s}.jobs AS j
    SET state = 'processing', attempts = j.attempts + 1, last_try_at = now(),
        lease_owner = $1, lease_expires_at = now() + $3::float8 * interval '1 second',
        lease_token = $5,
        unique_key = CASE WHEN j.unique_scope = '{UniqueScope.PENDING}' THEN NULL
                          ELSE j.unique_key END
    WHERE j.id = ANY(ARRAY(SELECT id FROM chosen))
    RETURNING {_qualified("j")}, j.seq
)
SELECT {JOB_COLUMNS} FROM taken, commit_mode ORDER BY priority, next_try_at, attempts, seq
"""


# Fenced writes lock their rows first, in ascending id order, whatever order
# the caller's batch is in: two workers writing overlapping batches then queue
# instead of deadlocking. ``locked`` (materialized: run once) joins the batch
# to its rows and answers each row as it is once locked (a row changed
# meanwhile is read again, as READ COMMITTED does for FOR UPDATE), so the
# fence is checked on its columns, and the UPDATE reaches by id only rows this
# statement locked already. Each step reads a row by id, whatever the planner
# guesses of the batch's size: a prepared statement's generic plan takes an
# array parameter for 10 elements, and a join it planned as a nested loop
# over ``unnest``, or a filter ``id = ANY(ARRAY(SELECT ...))``, compares every
# row with every other, quadratic in the batch (measured: 3.2 s for 3,000
# outcomes), while a fence on ``j.state`` let the planner read every index
# entry of state 'processing', one per job processed since the last vacuum;
# a worker whose outcomes fell behind so sent ever larger batches. The token decides
# (expired or not); the owner condition only matters while workers of schema
# version 1, whose claims leave the token alone, still run beside this one.
_FENCED = "stored_state = 'processing' AND stored_owner = $1 AND stored_token = {token}"


def _locked(s: str, batch: str) -> str:
    """The CTE ``locked``: the rows of ``batch`` (FROM items aliased ``o``,
    with an ``id``), locked in id order, with their stored lease columns.

    The batch is sorted first and each row is then read and locked by its
    id (a LATERAL subquery, which only a nested loop over the sorted batch
    can run): whatever the planner guesses, a batch costs one index probe
    per job. A join let a custom plan, which a prepared statement uses for
    its first five runs on each connection, hash the whole table instead:
    a finish of 200 outcomes took 20 ms there against 5 ms, on a table of
    50,000 jobs.
    """
    return f"""locked AS MATERIALIZED (
    SELECT o.*, j.stored_state, j.stored_owner, j.stored_token
    FROM (SELECT * FROM {batch} ORDER BY o.id) AS o
    CROSS JOIN LATERAL (
        SELECT state AS stored_state, lease_owner AS stored_owner,
               lease_token AS stored_token
        FROM {s}.jobs WHERE id = o.id
        FOR UPDATE
    ) AS j
)"""


def _extend_leases(s: str, mode: str) -> str:
    batch = "unnest($2::text[], $3::text[]) AS o(id, lease_token)"
    return f"""
WITH {mode}, {_locked(s, batch)}, extended AS (
    UPDATE {s}.jobs AS j
    SET lease_expires_at = now() + $4::float8 * interval '1 second'
    FROM locked AS l
    WHERE j.id = l.id AND {_FENCED.format(token="l.lease_token")}
    RETURNING j.id
)
SELECT (SELECT array_agg(id) FROM extended), (SELECT mode FROM commit_mode)
"""


def _finish(s: str, mode: str) -> str:
    # $8 says which outcomes are final: the server stamps finished_at. The
    # event's start is the claim's last_try_at: SET reads the row as it was.
    # The row keeps the token of the claim whose outcome it took (only a
    # processing row's is a lease): an outcome sent again after its reply was
    # lost finds its state and token there, and is answered in the fourth
    # column as applied before, not refused as if its lease had been lost.
    event = _event(
        "o.state", "o.attempts", error="o.last_error", worker="$1::text", started="j.last_try_at"
    )
    batch = (
        "unnest($2::text[], $3::text[], $4::int[], $5::timestamptz[], $6::text[], $7::text[], "
        "$8::boolean[], $9::text[]) AS o(id, state, attempts, next_try_at, last_error, "
        "done_handlers, final, lease_token)"
    )
    return f"""
WITH {mode}, {_locked(s, batch)}, applied AS (
    UPDATE {s}.jobs AS j
    SET state = o.state, attempts = o.attempts, next_try_at = o.next_try_at,
        last_error = o.last_error, done_handlers = o.done_handlers::jsonb,
        finished_at = CASE WHEN o.final THEN now() END,
        lease_owner = NULL, lease_expires_at = NULL,
        unique_key = {_released("o.state")},
        history = {_appended("j.history", event)}
    FROM locked AS o
    WHERE j.id = o.id AND {_FENCED.format(token="o.lease_token")}
    RETURNING j.id, j.state
), woken AS (
    SELECT pg_notify($10, '') FROM applied WHERE state IN {PENDING} LIMIT 1
)
SELECT (SELECT array_agg(id) FROM applied), (SELECT count(*) FROM woken),
       (SELECT mode FROM commit_mode),
       (SELECT array_agg(id) FROM locked
        WHERE stored_state = locked.state AND stored_token = locked.lease_token)
"""


def _record_handlers(s: str) -> str:
    """A handler's progress, written in the application's transaction
    (``finish_in`` of a ``processing`` outcome): the job's done handlers ($3),
    under the fence of an outcome; state, lease and history stay as they are.
    One row: no lock order to keep."""
    return f"""
UPDATE {s}.jobs SET done_handlers = $3::text::jsonb
WHERE id = $2 AND state = 'processing' AND lease_owner = $1 AND lease_token = $4
RETURNING id
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


def _released(state: str) -> str:
    """The unique key of job ``j`` moving to ``state``: NULL (released) when
    that state is finished and its scope ends there, else as it was."""
    return (
        f"CASE WHEN {state} IN {_FINISHED} AND j.unique_scope IN {_RELEASED_WHEN_FINISHED} "
        "THEN NULL ELSE j.unique_key END"
    )


def _to_other(s: str) -> str:
    # The row is locked and read first (``before``), so that its state before
    # the move is known: a running job that is cancelled is announced on the
    # cancel channel ($5), with its id, when the transaction commits.
    return f"""
WITH moved AS (
    UPDATE {s}.jobs AS j
    SET state = $3, finished_at = $4,
        lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL,
        unique_key = {_released("$3::text")},
        history = {_appended("j.history", _operator_event("$3", "j.attempts"))}
    FROM (SELECT id, state FROM {s}.jobs WHERE id = $1 FOR UPDATE) AS before
    WHERE j.id = before.id AND before.state = ANY($2::text[])
    RETURNING {_qualified("j")}, before.state AS previous
)
SELECT {JOB_COLUMNS} FROM moved LEFT JOIN LATERAL (
    SELECT pg_notify($5, moved.id)
    WHERE moved.previous = 'processing' AND moved.state = 'cancelled'
) AS told ON true
"""


def _qualified(alias: str) -> str:
    return ", ".join(f"{alias}.{column.strip()}" for column in JOB_COLUMNS.split(","))
