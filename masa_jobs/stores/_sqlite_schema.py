"""The SQLite store's tables, their versions, its statements and its row format.

Every name carries the store's table prefix, so that several applications can
share one database file. The schema version lives in a table of its own (not
``PRAGMA user_version``, which belongs to the whole file): version 0 is a file
without our tables, and ``MIGRATIONS[n]`` takes version ``n - 1`` to ``n``.

Timestamps are integer microseconds since the Unix epoch, UTC: exact for every
``datetime``, compared as integers, and indexable. ``done_handlers`` is a JSON
array, ``headers`` a JSON object (or NULL) and ``history`` a JSON array of
events (``encode_history``), to which outcomes and operator moves append with
SQLite's JSON functions, in the statement that writes them. Rows are kept in a
rowid table, so that the rowid is the insertion order that breaks ties when
priority, due time, attempts and creation time are equal.

Claims read the index ``(queue, priority, next_try_at, attempts, created_at)``
over pending jobs. A claim names its queue (the usual case: the index order
is then the claim order), or its queues (a JSON array walked by
``json_each``), or, serving every queue, lists the queues that hold pending
jobs with a skip scan of that index (one probe per queue); paused queues are
left out in the same statement. With ``queue IN (...)`` and ``priority IN
(0, ..., 9)`` SQLite reads one range per queue and priority, each in claim
order, and stops each range once it can no longer enter the first ``limit``
rows: a claim reads O(queues x priorities + limit) index entries, however
many jobs wait, are scheduled later, or sit in queues it does not serve. The
priority CHECK keeps that list of priorities complete. Counts of due jobs
and the earliest due time read the same index the same way.

A unique key lives in ``unique_key`` under a partial UNIQUE index (NULL, the
common case, is not indexed): a job that releases its key gets NULL there,
in the statement that releases it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..records import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    FINISHED_STATES,
    MAX_HISTORY_EVENTS,
    MAX_PRIORITY,
    MIN_PRIORITY,
    JobRecord,
    JobState,
    ScheduleRecord,
    UniqueScope,
    decode_handlers,
    decode_history,
    encode_handlers,
    encode_history,
)

__all__ = [
    "JOB_COLUMNS",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Row",
    "Statements",
    "at",
    "at_or_none",
    "check_table_prefix",
    "claim_key",
    "encode_handlers",
    "keyed_row",
    "record_from_row",
    "row_from_record",
    "row_from_schedule",
    "schedule_from_row",
    "state_of",
    "to_us",
    "to_us_or_none",
    "with_states",
]

SCHEMA_VERSION = 5

Row = tuple[Any, ...]

_PREFIX = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# The pending states, as the SQL text that partial indexes and queries share:
# SQLite uses a partial index only for a query that repeats its WHERE term.
_PENDING = "state IN ('scheduled', 'enqueued')"
_HELD = "state = 'processing'"
# Every priority, so that SQLite reads the claim index one priority at a time
# in order (``priority IN``); the column's CHECK admits no other value.
_PRIORITIES = f"priority IN ({', '.join(map(str, range(MIN_PRIORITY, MAX_PRIORITY + 1)))})"
_PENDING_KEY = f"unique_scope = '{UniqueScope.PENDING.value}'"
_PERIOD_KEY = f"unique_scope = '{UniqueScope.PERIOD.value}'"

# The columns of a job row, in the order that ``record_from_row`` reads them.
JOB_COLUMNS = (
    "rowid, id, name, payload, state, created_at, next_try_at, attempts, last_try_at, "
    "last_error, done_handlers, lease_owner, lease_expires_at, finished_at, lease_token, "
    "headers, history, queue, priority, unique_key, unique_scope, unique_until"
)
# What a claim reads: every column but the history, which no worker reads and
# which a job retried often would carry on every claim (its record says none).
_CLAIM_COLUMNS = JOB_COLUMNS.replace(", history", ", '[]' AS history")
_SCHEDULE_COLUMNS = (
    "id, job_class, cron_expression, timezone, next_fire_at, created_at, updated_at, "
    "last_fire_at, payload, paused"
)
# Claim order: priority, due time, then fewer attempts, then creation, then insertion.
_CLAIM_ORDER = "priority, next_try_at, attempts, created_at, rowid"
_FINISHED_VALUES = ", ".join(repr(s.value) for s in sorted(FINISHED_STATES))
_FINISHED = f"state IN ({_FINISHED_VALUES})"
_MINUTE_US = 60_000_000


def _appended(event: str) -> str:
    """``history`` with ``event`` (an SQL expression of a JSON object) appended,
    the oldest event dropped when it holds MAX_HISTORY_EVENTS already. A
    history that is not a JSON array (damaged by something else) starts again
    rather than failing the write it belongs to."""
    kept = (
        "CASE WHEN NOT json_valid(history) THEN '[]' "
        "WHEN json_type(history) <> 'array' THEN '[]' "
        f"WHEN json_array_length(history) >= {MAX_HISTORY_EVENTS} "
        "THEN json_remove(history, '$[0]') ELSE history END"
    )
    return f"json_insert({kept}, '$[#]', {event})"


def _move_event(now: str) -> str:
    """The event of an operator's move (``transition``): no worker, no error;
    ``now`` names the parameter of the store's now, ?1 is the state, and the
    attempt is the job's attempts so far."""
    return f"json_object('at', {now}, 'state', ?1, 'attempt', attempts)"


# The event of an outcome, from ``finish``'s numbered parameters: ?7 the
# store's now, ?1 the state, ?2 the attempts, ?4 the error, ?8 the worker; the
# claim's last_try_at as the run's start. json_patch leaves out the members
# that are NULL, as ``encode_history`` does.
_OUTCOME_EVENT = (
    "json_patch(json_object('at', ?7, 'state', ?1, 'attempt', ?2), "
    "json_object('error', ?4, 'worker', ?8, 'started', last_try_at))"
)

# The jobs per stored state, kept by triggers on every write of the jobs table
# (whoever writes it), so that counting them reads a few rows rather than an
# index entry per job. SQLite has one writer at a time: the rows see no
# contention. An upsert adds a state the table has not seen (a new state, or
# one written by something else); a state no job holds keeps a row with 0.
_COUNTED_JOBS = (
    "CREATE TABLE {p}job_counts (state TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID",
    # The jobs stored before the counts, in the transaction that adds the triggers.
    "INSERT INTO {p}job_counts (state, n) SELECT state, COUNT(*) FROM {p}jobs GROUP BY state",
    "CREATE TRIGGER {p}jobs_count_insert AFTER INSERT ON {p}jobs BEGIN "
    "INSERT INTO {p}job_counts (state, n) VALUES (NEW.state, 1) "
    "ON CONFLICT (state) DO UPDATE SET n = n + 1; END",
    "CREATE TRIGGER {p}jobs_count_delete AFTER DELETE ON {p}jobs BEGIN "
    "UPDATE {p}job_counts SET n = n - 1 WHERE state = OLD.state; END",
    # Only a change of state moves a count (a lease renewal writes none), in
    # one statement for both states: a claim or an outcome pays one step.
    "CREATE TRIGGER {p}jobs_count_move AFTER UPDATE OF state ON {p}jobs "
    "WHEN OLD.state IS NOT NEW.state BEGIN "
    "INSERT INTO {p}job_counts (state, n) VALUES (OLD.state, -1), (NEW.state, 1) "
    "ON CONFLICT (state) DO UPDATE SET n = n + excluded.n; END",
)

MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE {p}jobs (
            id TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL,
            payload TEXT NOT NULL,
            state TEXT NOT NULL,
            created_at INTEGER NOT NULL,
            next_try_at INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            last_try_at INTEGER,
            last_error TEXT,
            done_handlers TEXT NOT NULL,
            lease_owner TEXT,
            lease_expires_at INTEGER,
            finished_at INTEGER
        )""",
        # Claims and the earliest due time: due pending jobs in claim order.
        f"CREATE INDEX {{p}}jobs_due ON {{p}}jobs (next_try_at, attempts, created_at) "
        f"WHERE {_PENDING}",
        # Expired leases, and the earliest lease to expire.
        f"CREATE INDEX {{p}}jobs_leases ON {{p}}jobs (lease_expires_at) WHERE {_HELD}",
        # Listing by state, newest first, and counting by state.
        "CREATE INDEX {p}jobs_state ON {p}jobs (state, created_at)",
        # Listing every job, newest first.
        "CREATE INDEX {p}jobs_created ON {p}jobs (created_at)",
        # Purging finished jobs past their retention.
        "CREATE INDEX {p}jobs_finished ON {p}jobs (state, finished_at) "
        "WHERE finished_at IS NOT NULL",
        """CREATE TABLE {p}schedules (
            id TEXT PRIMARY KEY,
            job_class TEXT NOT NULL,
            cron_expression TEXT NOT NULL,
            timezone TEXT NOT NULL,
            next_fire_at INTEGER NOT NULL,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            last_fire_at INTEGER
        )""",
        """CREATE TABLE {p}workers (
            id TEXT PRIMARY KEY,
            host TEXT NOT NULL,
            pid INTEGER NOT NULL,
            started_at INTEGER NOT NULL,
            last_seen_at INTEGER NOT NULL,
            running_jobs INTEGER NOT NULL
        )""",
    ),
    # Fenced leases: the token of the claim that holds a job. Jobs held when
    # the file is upgraded have none, so no renewal or outcome of the older
    # claim applies; their leases run out and they are claimed again.
    2: ("ALTER TABLE {p}jobs ADD COLUMN lease_token TEXT",),
    # The args of a schedule of an ordinary job; NULL for a class schedule,
    # which every schedule stored before the upgrade is. And whether a
    # schedule is paused: none stored before the upgrade is.
    3: (
        "ALTER TABLE {p}schedules ADD COLUMN payload TEXT",
        "ALTER TABLE {p}schedules ADD COLUMN paused INTEGER NOT NULL DEFAULT 0",
    ),
    # What the enqueuing process attached (NULL: nothing), and what happened
    # to each job (jobs stored before the upgrade start with none). Lists page
    # by (created_at, id) per state, and per job name and state; these indexes
    # replace the ones that listed by state or by time alone. The jobs per
    # state are counted from here on (``_COUNTED_JOBS``).
    4: (
        "ALTER TABLE {p}jobs ADD COLUMN headers TEXT",
        "ALTER TABLE {p}jobs ADD COLUMN history TEXT NOT NULL DEFAULT '[]'",
        "DROP INDEX {p}jobs_state",
        "DROP INDEX {p}jobs_created",
        "CREATE INDEX {p}jobs_list ON {p}jobs (state, created_at, id)",
        "CREATE INDEX {p}jobs_list_name ON {p}jobs (name, state, created_at, id)",
        *_COUNTED_JOBS,
    ),
    # Queues, priorities and unique keys: jobs stored before the upgrade wait
    # in the default queue at the default priority and hold no key. The claim
    # index (queue, priority, ...) replaces the due index, which ordered by
    # due time alone; every reader of that one reads this one per queue.
    5: (
        f"ALTER TABLE {{p}}jobs ADD COLUMN queue TEXT NOT NULL DEFAULT '{DEFAULT_QUEUE}'",
        f"ALTER TABLE {{p}}jobs ADD COLUMN priority INTEGER NOT NULL DEFAULT {DEFAULT_PRIORITY} "
        f"CHECK (priority BETWEEN {MIN_PRIORITY} AND {MAX_PRIORITY})",
        "ALTER TABLE {p}jobs ADD COLUMN unique_key TEXT",
        "ALTER TABLE {p}jobs ADD COLUMN unique_scope TEXT",
        "ALTER TABLE {p}jobs ADD COLUMN unique_until INTEGER",
        "DROP INDEX {p}jobs_due",
        f"CREATE INDEX {{p}}jobs_queue ON {{p}}jobs "
        f"(queue, priority, next_try_at, attempts, created_at) WHERE {_PENDING}",
        "CREATE UNIQUE INDEX {p}jobs_unique ON {p}jobs (unique_key) WHERE unique_key IS NOT NULL",
        "CREATE TABLE {p}paused_queues (queue TEXT PRIMARY KEY) WITHOUT ROWID",
    ),
}


def check_table_prefix(prefix: str) -> str:
    """``prefix`` if it can start an SQL identifier unquoted, else ValueError."""
    if not _PREFIX.match(prefix):
        raise ValueError(
            f"table prefix {prefix!r} must be letters, digits and underscores, "
            "not starting with a digit"
        )
    return prefix


def _bounded_count(rows: str) -> str:
    """The number of rows of the SELECT ``rows``, which its LIMIT bounds."""
    return f"SELECT COUNT(*) FROM ({rows})"


def _pending_queues(p: str) -> str:
    """A SELECT of the queues that hold pending jobs, each once: a skip scan of
    the claim index (the next queue after the last one found), so one index
    probe per queue rather than a walk over the jobs."""
    claimable = f"{p}jobs INDEXED BY {p}jobs_queue WHERE {_PENDING}"
    return (
        f"WITH RECURSIVE held(name) AS (SELECT MIN(queue) FROM {claimable} "
        f"UNION ALL SELECT (SELECT MIN(queue) FROM {claimable} AND queue > held.name) "
        "FROM held WHERE held.name IS NOT NULL) "
        "SELECT name FROM held WHERE name IS NOT NULL"
    )


@dataclass(frozen=True, slots=True)
class _Queues:
    """Terms on ``queue`` that a statement filters with, the paused queues
    left out: ``every`` queue holding pending jobs, those ``served`` of a
    JSON array parameter, or the ``one`` queue a parameter names (whose
    index order is the claim order, so no sort is needed); ``unpaused`` any
    queue not paused, for the held jobs, which are few."""

    every: str
    served: str
    one: str
    unpaused: str

    @classmethod
    def for_prefix(cls, p: str, param: str) -> _Queues:
        paused = f"SELECT queue FROM {p}paused_queues"
        return cls(
            every=f"queue IN ({_pending_queues(p)} AND name NOT IN ({paused}))",
            served=f"queue IN (SELECT value FROM json_each({param}) WHERE value NOT IN ({paused}))",
            # A subquery, evaluated once: a paused queue is NULL, which no
            # index entry equals (a term ``NOT IN`` beside it would be
            # checked on every entry of the queue).
            one=f"queue = (SELECT {param} WHERE {param} NOT IN ({paused}))",
            unpaused=f"queue NOT IN ({paused})",
        )


def _claimable(p: str, in_queues: str) -> str:
    """A SELECT of the due pending jobs whose queue passes ``in_queues``, in
    claim order: ?1 the store's now, ?2 how many."""
    return (
        f"SELECT {_CLAIM_COLUMNS} FROM {p}jobs INDEXED BY {p}jobs_queue "
        f"WHERE {_PENDING} AND {in_queues} AND {_PRIORITIES} AND next_try_at <= ?1 "
        f"ORDER BY {_CLAIM_ORDER} LIMIT ?2"
    )


def _expired(p: str, in_queues: str) -> str:
    """A SELECT of the held jobs whose lease expired by ?1, ``in_queues`` a
    term on their queue, in claim order, ?2 of them at most."""
    return (
        f"SELECT {_CLAIM_COLUMNS} FROM {p}jobs INDEXED BY {p}jobs_leases "
        f"WHERE {_HELD} AND lease_expires_at <= ?1 AND {in_queues} "
        f"ORDER BY {_CLAIM_ORDER} LIMIT ?2"
    )


def _earliest(p: str, pending_in: str, held_in: str) -> str:
    """The earliest due time of a pending job whose queue passes
    ``pending_in`` and the earliest lease to expire of a held job whose
    queue passes ``held_in``."""
    return (
        f"SELECT (SELECT MIN(next_try_at) FROM {p}jobs INDEXED BY {p}jobs_queue "
        f"WHERE {_PENDING} AND {pending_in} AND {_PRIORITIES}), "
        f"(SELECT MIN(lease_expires_at) FROM {p}jobs INDEXED BY {p}jobs_leases "
        f"WHERE {_HELD} AND {held_in})"
    )


def _pending_in_every_queue(p: str) -> str:
    """The FROM and WHERE of the pending jobs of every queue (paused or not),
    read per queue and priority from the claim index."""
    return (
        f"FROM {p}jobs INDEXED BY {p}jobs_queue WHERE {_PENDING} "
        f"AND queue IN ({_pending_queues(p)}) AND {_PRIORITIES}"
    )


# What a finished job keeps of its key: a period key only (its time decides).
_KEY_AFTER_FINISH = f"CASE WHEN {_PERIOD_KEY} THEN unique_key END"


def _parameters(count: int) -> str:
    return ", ".join("?" * count)


def with_states(template: str, count: int) -> str:
    """``template`` with its ``{states}`` placeholder filled with ``count`` parameters."""
    return template.format(states=_parameters(count))


@dataclass(frozen=True, slots=True)
class Statements:
    """The SQL text of every operation, for one table prefix.

    ``purge_chunk`` holds a ``{states}`` placeholder for one ``?`` per state
    (see ``with_states``). Lists are built per query (``list_statement``).
    Statements ending ``_every`` serve every queue, those ending ``_served``
    the queues of a JSON array parameter, those ending ``_one`` the one
    queue a parameter names.
    """

    prefix: str
    version_table: str
    create_version_table: str
    read_version: str
    write_version: str
    insert_job: str
    insert_keyed_job: str
    release_lapsed_key: str
    key_holder: str
    claim_every: str
    claim_served: str
    claim_one: str
    expired_every: str
    expired_served: str
    expired_one: str
    take: str
    finish: str
    record_done_handlers: str
    extend_lease: str
    get: str
    count_stored: str
    count_due: str
    count_later: str
    count_every_due: str
    oldest_due: str
    finished_per_minute: str
    make_pending: str
    make_settled: str
    delete: str
    purge_chunk: str
    earliest_every: str
    earliest_served: str
    pause_queue: str
    resume_queue: str
    paused_queues: str
    upsert_schedule: str
    get_schedule: str
    list_schedules: str
    delete_schedule: str
    fire_schedule: str
    set_schedule_paused: str
    heartbeat: str
    list_workers: str
    remove_worker: str
    forget_stale_workers: str

    @classmethod
    def for_prefix(cls, p: str) -> Statements:
        check_table_prefix(p)
        jobs = f"{p}jobs"
        columns = (
            "id, name, payload, state, created_at, next_try_at, attempts, last_try_at, "
            "last_error, done_handlers, lease_owner, lease_expires_at, finished_at, "
            "lease_token, headers, history, queue, priority"
        )
        # The claim's queues are ?3 (a JSON array, or one name); the wait's ?1.
        claims, waits = _Queues.for_prefix(p, "?3"), _Queues.for_prefix(p, "?1")
        every_pending = _pending_in_every_queue(p)
        return cls(
            prefix=p,
            version_table=f"{p}schema_version",
            create_version_table=(
                f"CREATE TABLE {p}schema_version "
                "(id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
            ),
            read_version=f"SELECT version FROM {p}schema_version WHERE id = 1",
            write_version=f"INSERT OR REPLACE INTO {p}schema_version (id, version) VALUES (1, ?)",
            # The key's columns are left to their default (NULL): binding them
            # costs a bulk add about a tenth of its time, for records that
            # mostly have no key.
            insert_job=f"INSERT INTO {jobs} ({columns}) VALUES ({_parameters(18)})",
            # A key another job holds stores nothing (and raises nothing): the
            # caller reads the holder. Other constraints (the id) still raise.
            insert_keyed_job=(
                f"INSERT INTO {jobs} ({columns}, unique_key, unique_scope, unique_until) "
                f"VALUES ({_parameters(21)}) "
                "ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL DO NOTHING"
            ),
            # ?1 the key, ?2 the store's now: a period that ended holds nothing.
            release_lapsed_key=(
                f"UPDATE {jobs} SET unique_key = NULL "
                f"WHERE unique_key = ?1 AND {_PERIOD_KEY} AND unique_until <= ?2"
            ),
            key_holder=f"SELECT id FROM {jobs} WHERE unique_key = ?",
            claim_every=_claimable(p, claims.every),
            claim_served=_claimable(p, claims.served),
            claim_one=_claimable(p, claims.one),
            expired_every=_expired(p, claims.unpaused),
            expired_served=_expired(p, claims.served),
            expired_one=_expired(p, claims.one),
            # A pending key is held until the first claim, which releases it.
            take=(
                f"UPDATE {jobs} SET state = 'processing', attempts = attempts + 1, "
                "last_try_at = ?, lease_owner = ?, lease_expires_at = ?, lease_token = ?, "
                f"unique_key = CASE WHEN {_PENDING_KEY} THEN NULL ELSE unique_key END "
                "WHERE rowid = ?"
            ),
            # Numbered parameters: the event repeats the outcome's values.
            # The right-hand sides read the row as the claim left it.
            finish=(
                f"UPDATE {jobs} SET state = ?1, attempts = ?2, next_try_at = ?3, "
                "last_error = ?4, done_handlers = ?5, finished_at = ?6, "
                "lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL, "
                f"unique_key = CASE WHEN ?1 IN ({_FINISHED_VALUES}) "
                f"THEN {_KEY_AFTER_FINISH} ELSE unique_key END, "
                f"history = {_appended(_OUTCOME_EVENT)} "
                f"WHERE id = ?9 AND {_HELD} AND lease_token = ?10"
            ),
            # A handler done in its own transaction while others remain: ?1
            # the handlers done, fenced by ?2 the job, ?3 its worker, ?4 the
            # claim's token. The lease, the state and the history stay.
            record_done_handlers=(
                f"UPDATE {jobs} SET done_handlers = ?1 "
                f"WHERE id = ?2 AND {_HELD} AND lease_owner = ?3 AND lease_token = ?4"
            ),
            extend_lease=(
                f"UPDATE {jobs} SET lease_expires_at = ? "
                f"WHERE id = ? AND {_HELD} AND lease_token = ?"
            ),
            get=f"SELECT {JOB_COLUMNS} FROM {jobs} WHERE id = ?",
            count_stored=f"SELECT state, n FROM {p}job_counts",
            # The pending jobs due by ?1, and those due later, at most ?2 of
            # them, on the claim index (whose entries alone answer: no row is read).
            count_due=_bounded_count(f"SELECT 1 {every_pending} AND next_try_at <= ?1 LIMIT ?2"),
            count_later=_bounded_count(f"SELECT 1 {every_pending} AND next_try_at > ?1 LIMIT ?2"),
            # Every pending job due by ?: a plain count, faster than a subquery's.
            count_every_due=f"SELECT COUNT(*) {every_pending} AND next_try_at <= ?",
            oldest_due=f"SELECT MIN(next_try_at) {every_pending}",
            finished_per_minute=(
                f"SELECT finished_at - finished_at % {_MINUTE_US} AS minute, COUNT(*) "
                f"FROM {jobs} INDEXED BY {p}jobs_finished "
                f"WHERE {_FINISHED} AND finished_at IS NOT NULL AND finished_at >= ? "
                "GROUP BY minute ORDER BY minute"
            ),
            # An operator's move: ?1 the state, ?2 the store's now (the due
            # time too), ?3 the row.
            make_pending=(
                f"UPDATE {jobs} SET state = ?1, next_try_at = ?2, finished_at = NULL, "
                "lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL, "
                f"history = {_appended(_move_event('?2'))} WHERE rowid = ?3"
            ),
            # ?1 the state, ?2 the finish time (NULL for an unfinished state),
            # ?3 the store's now, ?4 the row.
            make_settled=(
                f"UPDATE {jobs} SET state = ?1, finished_at = ?2, "
                "lease_owner = NULL, lease_expires_at = NULL, lease_token = NULL, "
                "unique_key = CASE WHEN ?2 IS NOT NULL "
                f"THEN {_KEY_AFTER_FINISH} ELSE unique_key END, "
                f"history = {_appended(_move_event('?3'))} WHERE rowid = ?4"
            ),
            delete=f"DELETE FROM {jobs} WHERE id = ?",
            purge_chunk=(
                f"DELETE FROM {jobs} WHERE rowid IN (SELECT rowid FROM {jobs} "
                "WHERE state IN ({states}) "
                "AND finished_at IS NOT NULL AND finished_at < ? LIMIT ?)"
            ),
            earliest_every=_earliest(p, waits.every, waits.unpaused),
            earliest_served=_earliest(p, waits.served, waits.served),
            pause_queue=(
                f"INSERT INTO {p}paused_queues (queue) VALUES (?) ON CONFLICT (queue) DO NOTHING"
            ),
            resume_queue=f"DELETE FROM {p}paused_queues WHERE queue = ?",
            paused_queues=f"SELECT queue FROM {p}paused_queues",
            # One statement, so atomic: an update keeps created_at and
            # last_fire_at and paused, and keeps next_fire_at (which a concurrent fire
            # may have moved) unless the cron expression or time zone changed.
            # The right-hand sides read the row as it was before the update.
            upsert_schedule=(
                f"INSERT INTO {p}schedules ({_SCHEDULE_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET job_class = excluded.job_class, "
                "payload = excluded.payload, "
                "cron_expression = excluded.cron_expression, timezone = excluded.timezone, "
                "updated_at = excluded.updated_at, "
                "next_fire_at = CASE WHEN cron_expression = excluded.cron_expression "
                "AND timezone = excluded.timezone "
                "THEN next_fire_at ELSE excluded.next_fire_at END"
            ),
            get_schedule=f"SELECT {_SCHEDULE_COLUMNS} FROM {p}schedules WHERE id = ?",
            list_schedules=f"SELECT {_SCHEDULE_COLUMNS} FROM {p}schedules ORDER BY id",
            delete_schedule=f"DELETE FROM {p}schedules WHERE id = ?",
            # Compare-and-set on next_fire_at: of several schedulers that saw
            # one tick, one moves it on. A skipped tick (no job) keeps last_fire_at.
            # A paused schedule does not fire, even if it was paused after
            # the scheduler read it.
            fire_schedule=(
                f"UPDATE {p}schedules SET next_fire_at = ?, "
                "last_fire_at = COALESCE(?, last_fire_at) "
                "WHERE id = ? AND next_fire_at = ? AND paused = 0"
            ),
            set_schedule_paused=f"UPDATE {p}schedules SET paused = ? WHERE id = ?",
            heartbeat=(
                f"INSERT OR REPLACE INTO {p}workers "
                "(id, host, pid, started_at, last_seen_at, running_jobs) "
                "VALUES (?, ?, ?, ?, ?, ?)"
            ),
            list_workers=(
                f"SELECT id, host, pid, started_at, last_seen_at, running_jobs "
                f"FROM {p}workers WHERE last_seen_at >= ? ORDER BY id"
            ),
            remove_worker=f"DELETE FROM {p}workers WHERE id = ?",
            forget_stale_workers=f"DELETE FROM {p}workers WHERE last_seen_at < ?",
        )


# -- the row format ------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_STATES = {state.value: state for state in JobState}
_NO_HISTORY = "[]"


def to_us(stamp: datetime) -> int:
    """Microseconds since the epoch, exact (a float timestamp would round)."""
    return (stamp - _EPOCH) // _MICROSECOND


def to_us_or_none(stamp: datetime | None) -> int | None:
    return None if stamp is None else to_us(stamp)


def at(us: int) -> datetime:
    """The UTC datetime of ``us`` microseconds since the epoch."""
    return _EPOCH + timedelta(microseconds=us)


def at_or_none(us: int | None) -> datetime | None:
    return None if us is None else at(us)


def state_of(value: str) -> JobState:
    return _STATES[value]


def record_from_row(row: Row) -> JobRecord:
    """A ``JobRecord`` from a row of ``JOB_COLUMNS``."""
    return JobRecord(
        id=row[1],
        name=row[2],
        payload=row[3],
        state=_STATES[row[4]],
        created_at=at(row[5]),
        next_try_at=at(row[6]),
        attempts=row[7],
        last_try_at=at_or_none(row[8]),
        last_error=row[9],
        done_handlers=decode_handlers(row[10]),
        lease_owner=row[11],
        lease_expires_at=at_or_none(row[12]),
        finished_at=at_or_none(row[13]),
        lease_token=row[14],
        headers=row[15],
        history=() if row[16] == _NO_HISTORY else decode_history(row[16]),
        queue=row[17],
        priority=row[18],
        unique_key=row[19],
        unique_scope=None if row[20] is None else UniqueScope(row[20]),
        unique_until=at_or_none(row[21]),
    )


def row_from_record(record: JobRecord) -> Row:
    """The values of a new job row but its key, in the order of
    ``Statements.insert_job`` (``keyed_row`` adds the key)."""
    return (
        record.id,
        record.name,
        record.payload,
        record.state.value,
        to_us(record.created_at),
        to_us(record.next_try_at),
        record.attempts,
        to_us_or_none(record.last_try_at),
        record.last_error,
        encode_handlers(record.done_handlers),
        record.lease_owner,
        to_us_or_none(record.lease_expires_at),
        to_us_or_none(record.finished_at),
        record.lease_token,
        record.headers,
        encode_history(record.history) if record.history else _NO_HISTORY,
        record.queue,
        record.priority,
    )


def keyed_row(record: JobRecord) -> Row:
    """The values of a new job row with its key, in the order of
    ``Statements.insert_keyed_job``."""
    return (
        *row_from_record(record),
        record.unique_key,
        None if record.unique_scope is None else UniqueScope(record.unique_scope).value,
        to_us_or_none(record.unique_until),
    )


def claim_key(row: Row) -> tuple[int, int, int, int, int]:
    """A row's place in claim order: ``priority, next_try_at, attempts, created_at, rowid``."""
    return row[18], row[6], row[7], row[5], row[0]


def row_from_schedule(schedule: ScheduleRecord) -> Row:
    """The values of a schedule row, in the order of ``Statements.upsert_schedule``."""
    return (
        schedule.id,
        schedule.job_class,
        schedule.cron_expression,
        schedule.timezone,
        to_us(schedule.next_fire_at),
        to_us(schedule.created_at),
        to_us(schedule.updated_at),
        to_us_or_none(schedule.last_fire_at),
        schedule.payload,
        int(schedule.paused),
    )


def schedule_from_row(row: Row) -> ScheduleRecord:
    return ScheduleRecord(
        id=row[0],
        job_class=row[1],
        cron_expression=row[2],
        timezone=row[3],
        next_fire_at=at(row[4]),
        created_at=at(row[5]),
        updated_at=at(row[6]),
        last_fire_at=at_or_none(row[7]),
        payload=row[8],
        paused=bool(row[9]),
    )
