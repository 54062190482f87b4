"""The SQLite store: durable jobs in one file, for one machine, with no server.

Settings (the ``store`` section, or ``MASA_JOBS_STORE__...``)::

    store: {backend: sqlite, path: /var/lib/myapp/jobs.sqlite3,
            busy_timeout: 5, synchronous: normal, table_prefix: masa_}

Several worker processes may share the file. The database runs in WAL mode,
so readers never block the writer. A claim is one ``BEGIN IMMEDIATE``
transaction: it takes the write lock first, then selects the due jobs and
marks them held, so two processes never claim one job; a process that finds
the lock taken waits up to ``busy_timeout`` seconds. Claims and outcomes are
written in batches, one transaction each.

``synchronous: normal`` (the default) syncs the WAL to disk at checkpoints
rather than at every commit. A crashed *process* loses nothing; a power cut
or an operating-system crash may undo the last transactions committed before
it (the file stays consistent): a job just enqueued may vanish, and a job
just finished may run again. ``synchronous: full`` syncs every commit and
closes that window, at the price of one disk flush per transaction.

Wake-up: jobs added (and queues resumed) by this process set an in-process
event at once; jobs added by other processes are seen by polling, at least
every second and earlier when the earliest scheduled job of the served queues
falls due sooner.

Queues: a claim reads the due jobs of the queues it serves, by priority, from
one index, leaving out the paused queues (a table of their names) in the same
statement; see ``_sqlite_schema``. Unique keys: a partial UNIQUE index on
``unique_key``; ``add`` inserts a keyed record with ``ON CONFLICT DO NOTHING``
and reads the holder's id when nothing was inserted, after clearing the key
of a job whose ``period`` ended, all in the add's transaction. Claims,
outcomes and operator moves set the key to NULL when the job releases it.
Cancel notices (``add_cancel_listener``) reach the listeners of this store
object once a cancel of a running job committed; a worker in another process
learns at its next renewal.

Transactions (``TransactionalStore``): ``add_in`` and ``finish_in`` run the
statements of ``add`` and ``finish`` on the application's own connection to
the file (a ``sqlite3`` connection, or a SQLAlchemy one on pysqlite; see
``_sqlite_tx``), in its transaction and in the calling thread, an add inside
a savepoint. The application's first write takes the file's write lock
until it commits: the store's own writes wait for it (``busy_timeout``).
Workers find the jobs once it commits, at their next poll (here at once when
the commit comes before the woken worker reads).

Operator reads: a page of ``list_jobs`` is one SELECT that reads at most
``limit + 1`` rows per stored state it needs from the index ``(state,
created_at, id)`` (or ``(name, state, created_at, id)``), after the cursor,
and merges them (see ``_sqlite_listing``). ``count_by_state`` reads the jobs
per stored state from a table that triggers keep on every write of the jobs
(a row per state), and splits the pending ones into due and later by counting
the smaller side on the due index, reading at most ``EXACT_COUNT_LIMIT + 1``
entries per side (every due entry only when both sides are larger); all in one
read transaction, so one snapshot, and exact. ``oldest_due_at`` is one
probe of the due index, and ``finished_per_minute`` reads the finish-time
index from its start time on. Every outcome and operator move appends an
event to the job's ``history`` in the statement that writes it; a claim
answers without the history, which no worker reads (``get`` and ``list_jobs``
have it).

Time: the processes sharing a file share one machine's clock, so due times and
leases are compared with this process's clock (``utcnow``, or the ``clock``
given to the store, for tests). Records are stored as given, not rebased.

Errors: a lock held past ``busy_timeout``, a full disk (``database or disk is
full``: transient, the same write succeeds once there is room) or a file that
cannot be written raise ``StoreUnavailableError``; a value SQLite cannot hold
(a lone surrogate in a text, an integer beyond 64 bits) ``StoreRejectedError``;
an id that exists already ``DuplicateJobError``; any other ``sqlite3`` error
``StoreError``. Each chains the ``sqlite3`` exception and rolls back the
transaction: nothing of the write was stored.
"""

from __future__ import annotations

import builtins
import json
import logging
import math
import os
import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from ..exceptions import StoreError, StoreRejectedError, StoreUnavailableError
from ..queries import EXACT_COUNT_LIMIT, JobQuery, Page, page_of
from ..records import (
    FINISHED_STATES,
    PENDING_STATES,
    JobOutcome,
    JobRecord,
    JobState,
    ScheduleRecord,
    UniqueScope,
    WorkerInfo,
    utcnow,
)
from ._cancel_listeners import CancelListeners
from ._errors import duplicate_job, refuse_repeated_ids
from ._sqlite_connection import (
    DEFAULT_BUSY_TIMEOUT_SECONDS,
    DEFAULT_TABLE_PREFIX,
    SqliteSettings,
    checkpoint,
    connect,
    read_transaction,
    savepoint,
    write_transaction,
)
from ._sqlite_listing import list_statement
from ._sqlite_schema import (
    Row,
    Statements,
    at,
    claim_key,
    encode_handlers,
    keyed_row,
    record_from_row,
    row_from_record,
    row_from_schedule,
    schedule_from_row,
    state_of,
    to_us,
    to_us_or_none,
    with_states,
)
from ._sqlite_tx import ACCEPTED_CONNECTIONS, begin_if_idle, joined_connection
from .base import PURGE_CHUNK_ROWS, STALE_WORKER_SECONDS, new_lease_token

__all__ = ["SqliteJobStore"]

logger = logging.getLogger("masa_jobs.store")

T = TypeVar("T")

# Jobs added by other processes are noticed within this many seconds.
CROSS_PROCESS_POLL_SECONDS = 1.0
_MICROSECOND = timedelta(microseconds=1)
# What sqlite3 raises for a value it cannot store: a text that is not valid
# UTF-8 (a lone surrogate), an integer beyond 64 bits, a text or blob longer
# than SQLite's limit. The same write would fail again.
_REFUSED_VALUES = (sqlite3.DataError, UnicodeEncodeError, OverflowError)
# What reading a damaged row raises (a text where a number belongs, a time
# beyond what ``datetime`` holds, JSON that does not parse).
_UNREADABLE = (ValueError, TypeError, KeyError, OverflowError)
# Every error of a write that reaches a caller as a StoreError.
_DRIVER_ERRORS = (sqlite3.Error, *_REFUSED_VALUES)
# What a write runs in: the store's own transaction, or a savepoint in the
# application's (``add_in``).
_Within = Callable[[sqlite3.Connection], AbstractContextManager[sqlite3.Connection]]


@dataclass(frozen=True, slots=True)
class _PendingSplit:
    """The pending jobs of one side counted: those due by now, or those due later."""

    count: int
    counted_due: bool

    def enqueued(self, pending: int) -> int:
        """The due jobs, of ``pending`` jobs in all."""
        return self.count if self.counted_due else pending - self.count


class SqliteJobStore:
    """A ``JobStore`` in one SQLite file, shared by the processes of one machine.

    Connection scheme: one connection per store, used by one worker thread at
    a time (``anyio.to_thread.run_sync`` under a ``CapacityLimiter(1)``). A
    sqlite3 connection must not be used by two threads at once, and SQLite
    admits one writer at a time anyway, so more connections in one process
    would only queue on the file lock instead of on the limiter. One long-lived
    connection keeps its prepared statements and the WAL index mapped, where a
    connection per operation would pay to open, configure and check the
    schema every time. Waiting for the limiter is cancellable; a statement
    that has started always runs to its commit or rollback.

    ``add_in`` and ``finish_in`` write on the application's connection
    instead, in its transaction and in the calling thread (see ``_sqlite_tx``).
    """

    transaction_connections = ACCEPTED_CONNECTIONS

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout: float = DEFAULT_BUSY_TIMEOUT_SECONDS,
        synchronous: str = "normal",
        table_prefix: str = DEFAULT_TABLE_PREFIX,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._clock = clock
        self._settings = SqliteSettings.of(
            path, busy_timeout=busy_timeout, synchronous=synchronous, table_prefix=table_prefix
        )
        self._path = self._settings.path
        self._name = f"the SQLite store at {str(self._path)!r}"
        self._sql = Statements.for_prefix(table_prefix)
        self._connection: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._wakeup: anyio.Event | None = None
        self._cancel_listeners = CancelListeners()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> SqliteJobStore:
        """Build from the ``store`` configuration section (values may be strings)."""
        parsed = SqliteSettings.from_mapping(settings)
        return cls(
            parsed.path,
            busy_timeout=parsed.busy_timeout,
            synchronous=parsed.synchronous,
            table_prefix=parsed.table_prefix,
        )

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"SqliteJobStore(path={str(self._path)!r})"

    # -- life cycle ------------------------------------------------------------

    async def open(self) -> None:
        if self._connection is not None:
            return
        # Created here, in async code: both need the running event loop.
        self._limiter = anyio.CapacityLimiter(1)
        self._wakeup = None
        self._connection = await anyio.to_thread.run_sync(
            connect, self._settings, self._sql, limiter=self._limiter
        )

    async def aclose(self) -> None:
        connection, limiter = self._connection, self._limiter
        if connection is None or limiter is None:
            return
        self._connection = None
        self._cancel_listeners.clear()
        # Under the limiter: an operation already running finishes first.
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(connection.close, limiter=limiter)

    async def _run(self, operation: Callable[..., T], *args: Any) -> T:
        """Run ``operation(connection, *args)`` in the store's worker thread."""
        connection, limiter = self._connection, self._limiter
        if connection is None or limiter is None:
            raise StoreError(
                f"the SQLite store at {str(self._path)!r} is not open: "
                "use it inside MasaApp.lifespan(), or await store.open() first"
            )
        try:
            return await anyio.to_thread.run_sync(operation, connection, *args, limiter=limiter)
        except _DRIVER_ERRORS as exc:
            raise self._store_error(exc, closed=self._connection is None) from exc

    def _store_error(self, exc: Exception, *, closed: bool = False) -> StoreError:
        """What a caller gets for an error of sqlite3 or a value it refused,
        chained by the caller; ``closed``: the store's connection was closed
        during the call. The write's transaction (or savepoint) rolled back:
        nothing of it was stored."""
        if isinstance(exc, sqlite3.OperationalError):
            return self._unavailable(exc)
        if isinstance(exc, _REFUSED_VALUES):
            return StoreRejectedError(f"{self._name} refused a value: {exc}")
        return self._failed(exc, closed=closed)

    def _unavailable(self, exc: sqlite3.OperationalError) -> StoreUnavailableError:
        """A file that cannot be used now: locked past busy_timeout, full, unreadable."""
        where = self._name
        # The primary result code: the low byte of an extended one.
        if exc.sqlite_errorcode & 0xFF == sqlite3.SQLITE_FULL:
            # Transient, not refused: the same write succeeds once there is room.
            return StoreUnavailableError(
                f"{where} cannot write: the disk is full ({exc}); nothing of the write was "
                "stored. Free space on that file system (or purge old jobs); the same call "
                "succeeds once there is room"
            )
        return StoreUnavailableError(f"{where} failed: {exc}")

    def _failed(self, exc: Exception, *, closed: bool) -> StoreError:
        """Any other error of sqlite3, chained by the caller: nothing leaks raw."""
        where = self._name
        if closed:
            return StoreUnavailableError(
                f"{where} was closed during the call ({exc}): use it only while it is open, "
                "inside MasaApp.lifespan() or before store.aclose()"
            )
        if isinstance(exc, sqlite3.IntegrityError):
            return StoreRejectedError(f"{where} refused a value: {exc}; nothing was written")
        return StoreError(
            f"{where} failed ({type(exc).__name__}: {exc}): the file may be damaged or "
            "changed by something other than masa-jobs; check it with `sqlite3 <file> "
            "'PRAGMA integrity_check'` and restore it from a backup if it is damaged"
        )

    # -- jobs --------------------------------------------------------------------

    async def add(self, records: Sequence[JobRecord]) -> builtins.list[str]:
        if not records:
            return []
        refuse_repeated_ids(self._name, records)
        answer: list[str] = await self._run(self._add_records, records)
        if _stored_any(answer, records):
            self._wake()
        return answer

    async def add_in(self, connection: object, records: Sequence[JobRecord]) -> builtins.list[str]:
        """``add`` on the application's ``connection`` (see
        ``transaction_connections``), in its transaction: the same statements,
        in a savepoint, so that a refused add (a stored id, a refused value)
        undoes only itself and leaves the transaction usable. Runs in the
        calling thread, which owns the connection; never commits."""
        application = joined_connection(connection, self._path)
        if not records:
            return []
        refuse_repeated_ids(self._name, records)
        try:
            begin_if_idle(application)
            answer = self._add_records(application, records, savepoint)
        except _DRIVER_ERRORS as exc:
            raise self._store_error(exc) from exc
        if _stored_any(answer, records):
            # Workers see the jobs once the application commits. It usually
            # commits right after this call, before a woken worker's read
            # (which runs only once this task yields): that read then finds
            # them at once. A later commit is found by the store's poll.
            self._wake()
        return answer

    def _add_records(
        self,
        connection: sqlite3.Connection,
        records: Sequence[JobRecord],
        within: _Within = write_transaction,
    ) -> list[str]:
        """Insert ``records`` within ``within`` (the store's own transaction, or
        a savepoint of the application's); the id standing for each."""
        keys = [record.unique_key for record in records]
        if all(key is None for key in keys):
            # The common case keeps its one executemany, and stores every record.
            self._add(connection, [row_from_record(record) for record in records], within)
            return [record.id for record in records]
        return self._add_keyed(connection, [keyed_row(r) for r in records], keys, within)

    def _add(
        self, connection: sqlite3.Connection, rows: list[Row], within: _Within = write_transaction
    ) -> None:
        with self._refusing_stored_ids(connection, rows), within(connection):
            connection.executemany(self._sql.insert_job, rows)

    def _add_keyed(
        self,
        connection: sqlite3.Connection,
        rows: list[Row],
        keys: list[str | None],
        within: _Within = write_transaction,
    ) -> list[str]:
        """Insert the rows in order, each keyed one unless its key is held;
        answers the id standing for each (its own, or the holder's)."""
        # The refusal reads the stored ids after ``within`` undid the inserts.
        with self._refusing_stored_ids(connection, rows), within(connection):
            # In the store's own transaction, under the write lock: no add of
            # another process comes between this time, the release of lapsed
            # keys and the inserts. In the application's, the lock may come
            # with the first insert, a moment later: a key whose period ends
            # in that moment is still held, as it was a moment earlier.
            now = to_us(self._clock())
            answer = [
                self._insert_keyed(connection, row, key, now)
                for row, key in zip(rows, keys, strict=True)
            ]
        return answer

    def _insert_keyed(
        self, connection: sqlite3.Connection, row: Row, key: str | None, now: int
    ) -> str:
        """Insert one row (``keyed_row``) unless another job holds its key, in
        the caller's write transaction; the id of the job standing for it."""
        sql = self._sql
        if key is not None:
            connection.execute(sql.release_lapsed_key, (key, now))
        if connection.execute(sql.insert_keyed_job, row).rowcount:
            return str(row[0])
        # Held by a stored job, or by an earlier row of the same transaction.
        (holder,) = connection.execute(sql.key_holder, (key,)).fetchone()
        return str(holder)

    @contextmanager
    def _refusing_stored_ids(
        self, connection: sqlite3.Connection, rows: list[Row]
    ) -> Iterator[None]:
        """Turn a failed insert into ``DuplicateJobError`` when an id of ``rows``
        is stored already; any other constraint goes on to ``_run``, which
        refuses the value."""
        try:
            yield
        except sqlite3.IntegrityError as exc:
            clash = self._stored_id(connection, [row[0] for row in rows])
            if clash is None:
                raise  # another constraint: _run refuses the value
            raise duplicate_job(self._name, clash) from exc

    def _stored_id(self, connection: sqlite3.Connection, job_ids: list[str]) -> str | None:
        """The first of ``job_ids`` that is stored already (after a failed insert)."""
        for job_id in job_ids:
            if connection.execute(self._sql.get, (job_id,)).fetchone() is not None:
                return job_id
        return None

    async def now(self) -> datetime:
        return self._clock()

    async def claim(
        self,
        worker_id: str,
        limit: int,
        lease: timedelta,
        *,
        exclude: Collection[str] = (),
        queues: Collection[str] | None = None,
    ) -> list[JobRecord]:
        if limit <= 0 or (queues is not None and not queues):
            return []
        served = None if queues is None else tuple(sorted(set(queues)))
        taker = _Taker(worker_id, frozenset(exclude), new_lease_token(), served)
        return await self._run(self._claim, taker, limit, lease)

    def _claim(
        self, connection: sqlite3.Connection, taker: _Taker, limit: int, lease: timedelta
    ) -> list[JobRecord]:
        with write_transaction(connection):
            # The clock is read under the write lock: no claim of another
            # process can come between this time and the rows it selects.
            now = to_us(self._clock())
            expires = now + lease // _MICROSECOND
            rows = self._due_rows(connection, now, limit, taker)
            # Written in id order, like every multi-row write of the stores.
            taken = sorted(rows, key=lambda row: str(row[1]))
            connection.executemany(
                self._sql.take,
                [(now, taker.worker_id, expires, taker.token, row[0]) for row in taken],
            )
            claimed: list[JobRecord] = []
            broken: list[Row] = []
            for row in rows:
                try:
                    claimed.append(record_from_row(_as_taken(row, now, taker, expires)))
                except _UNREADABLE as exc:
                    # No handler can run a record that cannot be read: dead at
                    # once, with the reason, instead of failing every claim.
                    broken.append(_dead_row(row, now, taker, exc))
                    logger.error("job %s is dead: %s", row[1], _unreadable(row[1], exc))
            if broken:
                broken.sort(key=lambda row: str(row[-2]))
                connection.executemany(self._sql.finish, broken)
        return claimed

    def _due_rows(
        self, connection: sqlite3.Connection, now: int, limit: int, taker: _Taker
    ) -> list[Row]:
        """Up to ``limit`` due rows of the taker's queues outside its
        ``exclude``, in claim order."""
        sql, exclude = self._sql, taker.exclude
        # Excluded ids are dropped here rather than in SQL: each takes at most
        # one place, so ``limit + len(exclude)`` rows of each query suffice.
        params: Row = (now, limit + len(exclude))
        queues = taker.queues
        if queues is None:
            pending, expiring = sql.claim_every, sql.expired_every
        elif len(queues) == 1:
            # A worker's usual claim: one queue, read in claim order from the index.
            pending, expiring = sql.claim_one, sql.expired_one
            params = (*params, queues[0])
        else:
            pending, expiring = sql.claim_served, sql.expired_served
            params = (*params, json.dumps(queues))
        rows = connection.execute(pending, params).fetchall()
        expired = connection.execute(expiring, params).fetchall()
        if expired:
            rows = sorted(rows + expired, key=claim_key)
        return [row for row in rows if row[1] not in exclude][:limit]

    async def extend_leases(
        self, worker_id: str, leases: Mapping[str, str], lease: timedelta
    ) -> set[str]:
        if not leases:
            return set()
        return await self._run(self._extend_leases, leases, lease)

    def _extend_leases(
        self, connection: sqlite3.Connection, leases: Mapping[str, str], lease: timedelta
    ) -> set[str]:
        with write_transaction(connection):
            expires = to_us(self._clock()) + lease // _MICROSECOND
            rows = [(expires, job_id, leases[job_id]) for job_id in sorted(leases)]
            return self._applied(connection, self._sql.extend_lease, rows)

    async def finish(self, worker_id: str, outcomes: Sequence[JobOutcome]) -> set[str]:
        if not outcomes:
            return set()
        ordered = sorted(outcomes, key=lambda o: o.job_id)
        applied = await self._run(self._finish, worker_id, ordered)
        if any(o.state in PENDING_STATES and o.job_id in applied for o in outcomes):
            self._wake()
        return applied

    def _finish(
        self, connection: sqlite3.Connection, worker_id: str, outcomes: list[JobOutcome]
    ) -> set[str]:
        with write_transaction(connection):
            # The events' time: the store's, read under the write lock.
            now = to_us(self._clock())
            rows = [_outcome_row(o, now, worker_id) for o in outcomes]
            return self._applied(connection, self._sql.finish, rows)

    async def finish_in(self, connection: object, worker_id: str, outcome: JobOutcome) -> bool:
        """Write one fenced outcome on the application's ``connection``, in its
        transaction and the calling thread: a ``processing`` one records only
        its handlers done (``complete_in`` of a handler before the job's
        last); any other the ``finish`` statement's. One statement: a refused
        one undoes only itself (SQLite's statement rollback), no savepoint
        needed. False when the lease fences it out."""
        application = joined_connection(connection, self._path)
        sql = self._sql
        try:
            if outcome.state is JobState.PROCESSING:
                done = encode_handlers(outcome.done_handlers)
                params: Row = (done, outcome.job_id, worker_id, outcome.lease_token)
                applied = application.execute(sql.record_done_handlers, params).rowcount
            else:
                row = _outcome_row(outcome, to_us(self._clock()), worker_id)
                applied = application.execute(sql.finish, row).rowcount
        except _DRIVER_ERRORS as exc:
            raise self._store_error(exc) from exc
        if applied and outcome.state in PENDING_STATES:
            self._wake()  # as ``add_in``: a retry due now, found once committed
        return applied > 0

    @staticmethod
    def _applied(connection: sqlite3.Connection, statement: str, rows: list[Row]) -> set[str]:
        """Run a fenced update (job id and token last) per row; the ids it applied to."""
        applied: set[str] = set()
        for row in rows:
            if connection.execute(statement, row).rowcount:
                applied.add(row[-2])
        return applied

    def _write_many(self, connection: sqlite3.Connection, statement: str, rows: list[Row]) -> int:
        with write_transaction(connection):
            return connection.executemany(statement, rows).rowcount

    async def get(self, job_id: str) -> JobRecord | None:
        row = await self._run(self._fetch_one, self._sql.get, (job_id,))
        return None if row is None else _readable(row)

    def _fetch_one(self, connection: sqlite3.Connection, query: str, params: Row) -> Row | None:
        row: Row | None = connection.execute(query, params).fetchone()
        return row

    def _fetch_all(self, connection: sqlite3.Connection, query: str, params: Row) -> list[Row]:
        return connection.execute(query, params).fetchall()

    async def list_jobs(self, query: JobQuery, now: datetime) -> Page[JobRecord]:
        text, params = list_statement(self._sql.prefix, query, now)
        rows = await self._run(self._fetch_all, text, params)
        return page_of([_readable(row) for row in rows], query.limit)

    async def count_by_state(self, now: datetime) -> dict[JobState, int]:
        stored, split = await self._run(self._count, to_us(now))
        counts = dict.fromkeys(JobState, 0)
        pending = 0
        for value, total in stored:
            try:
                state = state_of(value)
            except KeyError:
                if total:
                    # Written by something else: counted nowhere, and said once per call.
                    logger.warning(
                        "SQLite store at %s: %d jobs have the unknown state %r",
                        self._path,
                        total,
                        value,
                    )
                continue
            if state in PENDING_STATES:
                pending += total
            else:
                counts[state] += total
        counts[JobState.ENQUEUED] = split.enqueued(pending)
        counts[JobState.SCHEDULED] = pending - counts[JobState.ENQUEUED]
        return counts

    def _count(self, connection: sqlite3.Connection, now: int) -> tuple[list[Row], _PendingSplit]:
        """The jobs per stored state (kept by triggers), and how many pending
        jobs are due by ``now``, from one snapshot of the file."""
        with read_transaction(connection):
            stored = connection.execute(self._sql.count_stored).fetchall()
            return stored, self._split_pending(connection, now)

    def _split_pending(self, connection: sqlite3.Connection, now: int) -> _PendingSplit:
        """How the pending jobs split into due by ``now`` and due later.

        The side (due or later) with at most EXACT_COUNT_LIMIT jobs is counted,
        reading at most one index entry more than that; the other is the rest
        of the total. Only when both sides hold more than the limit are the
        due jobs counted in full: rare (a backlog and a crowded schedule at once).
        """
        probe = (now, EXACT_COUNT_LIMIT + 1)
        due = _counted(connection, self._sql.count_due, probe)
        if due <= EXACT_COUNT_LIMIT:
            return _PendingSplit(due, counted_due=True)
        later = _counted(connection, self._sql.count_later, probe)
        if later <= EXACT_COUNT_LIMIT:
            return _PendingSplit(later, counted_due=False)
        return _PendingSplit(
            _counted(connection, self._sql.count_every_due, (now,)), counted_due=True
        )

    async def oldest_due_at(self) -> datetime | None:
        row = await self._run(self._fetch_one, self._sql.oldest_due, ())
        return None if row is None or row[0] is None else at(row[0])

    async def finished_per_minute(self, since: datetime) -> builtins.list[tuple[datetime, int]]:
        rows = await self._run(self._fetch_all, self._sql.finished_per_minute, (to_us(since),))
        return [(at(minute), count) for minute, count in rows]

    async def transition(
        self,
        job_id: str,
        expected: Collection[JobState],
        state: JobState,
        now: datetime,
    ) -> JobRecord | None:
        wanted = frozenset(JobState(s).value for s in expected)
        moved = await self._run(self._transition, job_id, wanted, state, to_us(now))
        if moved is None:
            return None
        was, record = moved
        if state in PENDING_STATES:
            self._wake()
        elif state is JobState.CANCELLED and was == JobState.PROCESSING.value:
            # Committed: the worker holding it is refused from now on.
            self._cancel_listeners.tell(job_id)
        return record

    def _transition(
        self,
        connection: sqlite3.Connection,
        job_id: str,
        expected: frozenset[str],
        state: JobState,
        now: int,
    ) -> tuple[str, JobRecord] | None:
        """The stored state before the move and the record after it; None when
        the job is missing or not in an ``expected`` state."""
        sql = self._sql
        with write_transaction(connection):
            row = connection.execute(sql.get, (job_id,)).fetchone()
            if row is None or row[4] not in expected:
                return None
            if state in PENDING_STATES:
                connection.execute(sql.make_pending, (state.value, now, row[0]))
            else:
                finished_at = now if state in FINISHED_STATES else None
                connection.execute(sql.make_settled, (state.value, finished_at, now, row[0]))
            updated: Row = connection.execute(sql.get, (job_id,)).fetchone()
        return row[4], _readable(updated)

    def add_cancel_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(job_id)`` when a ``transition`` of this store object
        cancels a running job (``CancelFeed``); other processes sharing the
        file learn at their next renewal."""
        self._cancel_listeners.add(listener)

    async def delete(self, job_id: str) -> bool:
        return await self._run(self._write_many, self._sql.delete, [(job_id,)]) > 0

    async def purge(
        self,
        states: Collection[JobState],
        finished_before: datetime,
        *,
        limit: int | None = None,
    ) -> int:
        values = sorted(s.value for s in frozenset(states) & FINISHED_STATES)
        if not values or (limit is not None and limit <= 0):
            return 0
        query = with_states(self._sql.purge_chunk, len(values))
        chunk = PURGE_CHUNK_ROWS if limit is None else limit
        params = (*values, to_us(finished_before), chunk)
        if limit is not None:
            removed = await self._run(self._write_many, query, [params])
            if removed < chunk:
                # The end of a maintenance pass (about once a minute): bound the log.
                await self._run(checkpoint)
            return removed
        purged = 0
        # One transaction per chunk: the write lock is released between
        # chunks, so that claims go on during a large purge.
        while True:
            removed = await self._run(self._write_many, query, [params])
            purged += removed
            if removed < chunk:
                await self._run(checkpoint)
                return purged

    # -- waiting -----------------------------------------------------------------

    async def wait_for_work(self, timeout: float, *, queues: Collection[str] | None = None) -> None:
        served = _served(queues)
        deadline = anyio.current_time() + timeout
        while True:
            # The event is taken before the store is read: a job added while
            # the read runs sets it, and the wait below returns at once.
            if self._wakeup is None or self._wakeup.is_set():
                self._wakeup = anyio.Event()
            wakeup = self._wakeup
            until_due = await self._seconds_until_due(served)
            remaining = deadline - anyio.current_time()
            if until_due <= 0 or remaining <= 0:
                return
            with anyio.move_on_after(min(until_due, remaining, CROSS_PROCESS_POLL_SECONDS)):
                await wakeup.wait()
            if wakeup.is_set():
                return

    async def _seconds_until_due(self, served: str | None) -> float:
        """Seconds until the earliest pending job or lease of the ``served``
        queues (a JSON array; None: every queue), none paused, falls due (inf
        if none)."""
        if served is None:
            row = await self._run(self._fetch_one, self._sql.earliest_every, ())
        else:
            row = await self._run(self._fetch_one, self._sql.earliest_served, (served,))
        stamps: list[int] = [us for us in row or () if us is not None]
        if not stamps:
            return math.inf
        return (min(stamps) - to_us(self._clock())) / 1_000_000

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    # -- queues ------------------------------------------------------------------

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        statement = self._sql.pause_queue if paused else self._sql.resume_queue
        await self._run(self._write_many, statement, [(queue,)])
        if not paused:
            self._wake()

    async def paused_queues(self) -> set[str]:
        rows = await self._run(self._fetch_all, self._sql.paused_queues, ())
        return {queue for (queue,) in rows}

    # -- schedules -------------------------------------------------------------

    async def upsert_schedule(self, schedule: ScheduleRecord) -> None:
        row = row_from_schedule(schedule)
        await self._run(self._write_many, self._sql.upsert_schedule, [row])

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        row = await self._run(self._fetch_one, self._sql.get_schedule, (schedule_id,))
        return None if row is None else schedule_from_row(row)

    async def list_schedules(self) -> builtins.list[ScheduleRecord]:
        rows = await self._run(self._fetch_all, self._sql.list_schedules, ())
        return [schedule_from_row(row) for row in rows]

    async def delete_schedule(self, schedule_id: str) -> bool:
        return await self._run(self._write_many, self._sql.delete_schedule, [(schedule_id,)]) > 0

    async def set_schedule_paused(self, schedule_id: str, paused: bool) -> bool:
        row = (int(paused), schedule_id)
        return await self._run(self._write_many, self._sql.set_schedule_paused, [row]) > 0

    async def fire_schedule(
        self,
        schedule_id: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        job: JobRecord | None,
    ) -> bool:
        expected = to_us(expected_next_fire_at)
        move = (to_us(next_fire_at), None if job is None else expected, schedule_id, expected)
        tick = None if job is None else (keyed_row(job), job.unique_key)
        fired = await self._run(self._fire_schedule, move, tick)
        if fired and job is not None:
            self._wake()
        return fired

    def _fire_schedule(
        self, connection: sqlite3.Connection, move: Row, tick: tuple[Row, str | None] | None
    ) -> bool:
        """Move the schedule on and store the tick's job (its row and key), in
        one transaction. A tick whose job's key is held fires without storing
        it: the holder stands for it, as for any add."""
        try:
            with write_transaction(connection):
                if connection.execute(self._sql.fire_schedule, move).rowcount == 0:
                    return False
                if tick is not None:
                    self._insert_keyed(connection, *tick, to_us(self._clock()))
        except sqlite3.IntegrityError as exc:
            clash = None if tick is None else self._stored_id(connection, [tick[0][0]])
            if clash is None:
                raise  # another constraint: _run refuses the value
            raise duplicate_job(self._name, clash, tick=True) from exc
        return True

    # -- workers -----------------------------------------------------------------

    async def heartbeat(self, worker: WorkerInfo) -> None:
        row = (
            worker.id,
            worker.host,
            worker.pid,
            to_us(worker.started_at),
            to_us(worker.last_seen_at),
            worker.running_jobs,
        )
        stale_before = to_us(worker.last_seen_at - timedelta(seconds=STALE_WORKER_SECONDS))
        await self._run(self._beat, row, stale_before)

    def _beat(self, connection: sqlite3.Connection, row: Row, stale_before: int) -> None:
        with write_transaction(connection):
            connection.execute(self._sql.heartbeat, row)
            connection.execute(self._sql.forget_stale_workers, (stale_before,))

    async def list_workers(self, seen_since: datetime) -> builtins.list[WorkerInfo]:
        rows = await self._run(self._fetch_all, self._sql.list_workers, (to_us(seen_since),))
        return [
            WorkerInfo(
                id=row[0],
                host=row[1],
                pid=row[2],
                started_at=at(row[3]),
                last_seen_at=at(row[4]),
                running_jobs=row[5],
            )
            for row in rows
        ]

    async def remove_worker(self, worker_id: str) -> None:
        await self._run(self._write_many, self._sql.remove_worker, [(worker_id,)])


def _stored_any(answer: list[str], records: Sequence[JobRecord]) -> bool:
    """Whether an add stored any record (each answers its own id), rather
    than answering holders of their keys only."""
    return any(job_id == record.id for job_id, record in zip(answer, records, strict=True))


def _counted(connection: sqlite3.Connection, statement: str, params: Row) -> int:
    """The one number that a counting statement answers."""
    (total,) = connection.execute(statement, params).fetchone()
    return int(total)


@dataclass(frozen=True, slots=True)
class _Taker:
    """Who claims, which ids it never takes, the lease token of this claim,
    and the queues it serves (None: every queue)."""

    worker_id: str
    exclude: frozenset[str]
    token: str
    queues: tuple[str, ...] | None


def _served(queues: Collection[str] | None) -> str | None:
    """The queues a worker serves as the JSON array the wait statements read."""
    return None if queues is None else json.dumps(sorted(set(queues)))


def _as_taken(row: Row, now: int, taker: _Taker, expires: int) -> Row:
    """A claimed row as the ``take`` update left it: (rowid, id, name, payload),
    state, (created_at, next_try_at), attempts, last_try_at, (last_error,
    done_handlers), lease_owner, lease_expires_at, finished_at, lease_token,
    (headers, history, queue, priority), unique_key (released by the first
    claim under a ``pending`` scope), (unique_scope, unique_until)."""
    released = row[20] == UniqueScope.PENDING.value
    return (
        *row[:4],
        "processing",
        *row[5:7],
        row[7] + 1,
        now,
        *row[9:11],
        taker.worker_id,
        expires,
        row[13],
        taker.token,
        *row[15:19],
        None if released else row[19],
        *row[20:],
    )


def _outcome_row(outcome: JobOutcome, now: int, worker_id: str) -> Row:
    """The parameters of ``finish`` (?1 to ?10) for one outcome."""
    return (
        outcome.state.value,
        outcome.attempts,
        to_us(outcome.next_try_at),
        outcome.last_error,
        encode_handlers(outcome.done_handlers),
        to_us_or_none(outcome.finished_at),
        now,
        worker_id,
        outcome.job_id,
        outcome.lease_token,
    )


def _unreadable(job_id: object, exc: Exception) -> str:
    return (
        f"the stored record of job {job_id!r} cannot be read ({exc!r}); it was written by "
        "something other than masa-jobs or is damaged"
    )


def _dead_row(row: Row, now: int, taker: _Taker, exc: Exception) -> Row:
    """``finish`` values that make an unreadable claimed row dead, with the reason."""
    attempts = row[7] + 1 if isinstance(row[7], int) else 1
    reason = _unreadable(row[1], exc)
    return ("dead", attempts, now, reason, "[]", now, now, taker.worker_id, row[1], taker.token)


def _readable(row: Row) -> JobRecord:
    try:
        return record_from_row(row)
    except _UNREADABLE as exc:
        raise StoreError(_unreadable(row[1], exc)) from exc
