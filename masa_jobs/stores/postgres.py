"""The PostgreSQL store: many workers on many machines share one queue.

asyncpg with a connection pool. A claim locks due rows with ``FOR UPDATE
SKIP LOCKED``, so concurrent workers pass each other instead of queueing on
the same rows, and hands them out under a new lease token; renewals and
outcomes apply only under that token, and lock their rows in id order first,
so that overlapping batches of two workers queue instead of deadlocking. Each
batch operation (add, claim, finish, extend_leases) is one statement and one
round trip, and so is firing a recurring job's tick (a compare-and-set of its
next fire time that stores the tick's job). The server's clock decides: due
times, leases and finish stamps come from its ``now()``, and new jobs are
rebased on it. New and requeued jobs (and a resumed queue) ``NOTIFY`` a
channel per schema that idle workers ``LISTEN`` on through a dedicated
connection; polling is the fallback whenever that connection is down. An
operator's cancel of a running job ``NOTIFY``s a second channel, which the
same connection hears from the first cancel listener on.

Jobs wait in queues, by priority: a claim reads the due jobs of the worker's
queues (none of a paused one, kept in ``paused_queues``) one priority at a
time from an index over pending jobs, still one statement. A job's unique
key is a column under a partial unique index: the store clears it when the
job gives the key up (in the claim, outcome or operator move that ends its
scope), and an add of records with keys inserts with ``ON CONFLICT DO
NOTHING`` and answers the holders' ids, in one transaction; a batch without
keys keeps the one-statement insert; a single new job sends only the
columns it sets. Single adds awaited one after another keep one pool
connection between them (``_postgres_held``). While the server cannot be reached
every call raises ``StoreUnavailableError``, and the pool reconnects by
itself once it answers; so does a server that cannot write for now (disk or
memory full, a read-only standby, a transaction it aborted). Values the server
refuses (a NUL character in a text) raise ``StoreRejectedError``, an id that
exists already ``DuplicateJobError``, and any other error of asyncpg
``StoreError``, each chained to asyncpg's exception.

Operator reads (pages of jobs by cursor, counts per state, the oldest due
time, finishes per minute) read index entries in proportion to their answer,
never a whole state: see ``_postgres_listing``. Each applied outcome and
operator move appends an event to the job's ``history`` (a JSON array, the
newest ``MAX_HISTORY_EVENTS`` kept) in the same statement.

The application may store jobs in its own transaction (``add_in``) and a
handler complete its job in its own (``finish_in``), on its connection to
the store's database (see ``_postgres_tx``): the same statements, never a
commit, and never the relaxed commit mode, which would relax the
application's own commit. Their ``NOTIFY`` wakes workers when it commits.

The tables live in their own PostgreSQL schema (``store.schema``), created on
first open under an advisory lock and versioned in ``schema_version``.
asyncpg runs on asyncio only: this store does not run under trio.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import anyio
import asyncpg

from .._redact import redact
from ..exceptions import (
    DuplicateJobError,
    MasaJobsError,
    SchemaVersionError,
    StoreError,
    StoreRejectedError,
    StoreUnavailableError,
    TransactionError,
)
from ..queries import JobQuery, Page, page_of
from ..records import (
    JobOutcome,
    JobRecord,
    JobState,
    ScheduleRecord,
    UniqueScope,
    WorkerInfo,
    decode_handlers,
    decode_history,
    encode_handlers,
    encode_history,
)
from ._errors import cut, duplicate_job, refuse_repeated_ids, translates_driver_errors
from ._postgres_held import HeldConnection
from ._postgres_listing import (
    Listing,
    count_arguments,
    counts_of,
    estimate_arguments,
    estimated_count,
    list_arguments,
)
from ._postgres_settings import PostgresSettings, describe_dsn
from ._postgres_sql import (
    BATCH_ARRAYS,
    SCHEMA_VERSION,
    Statements,
    advisory_lock_key,
    migrations,
)
from ._postgres_tx import TRANSACTION_CONNECTIONS, in_transaction, savepoint
from ._postgres_wakeup import LOST_CONNECTION_ERRORS, Look, WakeUps
from ._unavailable import reports_unavailable
from .base import PURGE_CHUNK_ROWS, STALE_WORKER_SECONDS, new_lease_token

__all__ = ["PostgresJobStore", "PostgresSettings"]

# What pg_stat_activity shows for the pool's and the LISTEN connections.
APPLICATION_NAME = "masa-jobs"
LISTENER_APPLICATION_NAME = "masa-jobs listener"
# aclose() waits this long for borrowed connections, then cuts them.
CLOSE_TIMEOUT_SECONDS = 5.0
# Inserts an add with unique keys tries at most: one more is needed only when
# a key's holder gave it up between the insert that met it and the read of
# its id (a claim, an outcome or a delete in those milliseconds).
UNIQUE_ADD_ATTEMPTS = 5
# What a failed connect raises: a socket error, a timeout, a server refusal
# (bad database, role, password) or a DSN asyncpg cannot parse.
_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    ValueError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
)
# What a call on the open store meets when the server cannot be used: the
# connection dropped or reset (socket errors, asyncpg's "connection was closed
# in the middle of operation"), no answer within a timeout, a server that shuts
# down or refuses new sessions, and, when the pool reconnects, a refused login.
# Everything else asyncpg raises is translated by _driver_error: refused values,
# a server that cannot write for now, and StoreError for the rest (an SQL error,
# asyncpg's InterfaceError for a misused API), unless aclose() ran during the
# call (see _unavailable_after).
_UNAVAILABLE_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.InvalidAuthorizationSpecificationError,
    asyncpg.InvalidCatalogNameError,
)
# What the server (or asyncpg, encoding a parameter) raises for values it
# refuses: a NUL character or a lone surrogate in a text, text the database
# encoding cannot hold, a value out of range or too large for a column or an
# index entry, or breaking a constraint. Sending the same values again would fail again.
_REFUSED_VALUE_ERRORS = (
    asyncpg.DataError,
    asyncpg.ProgramLimitExceededError,
    asyncpg.IntegrityConstraintViolationError,
)
# A server that cannot write for now, though it answers: out of disk space or
# memory (not "refused": the same call succeeds once there is room), a
# standby that is read-only, a transaction it aborted (a deadlock, a
# serialization failure) or a statement it cancelled (statement_timeout).
_CANNOT_WRITE_NOW_ERRORS = (
    asyncpg.InsufficientResourcesError,
    asyncpg.ReadOnlySQLTransactionError,
    asyncpg.TransactionRollbackError,
    asyncpg.QueryCanceledError,
)
# Everything else asyncpg raises: StoreError, with asyncpg's exception as cause.
_DRIVER_ERRORS = (asyncpg.PostgresError, asyncpg.InterfaceError)
# What the application's connection raises when it is lost during add_in or
# finish_in (a closed one is refused before: in_transaction checks).
_APP_CONNECTION_LOST = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
)
# What a statement raises when the connection it was sent on is lost under
# it: the server may have run it, and committed, and its reply been lost. Not
# a connection that could not be made (refused, timed out): nothing was sent,
# and asking the server again would only double the wait of an outage.
_REPLY_LOST = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    ConnectionResetError,
    BrokenPipeError,
)
# The detail of a duplicate key: ``Key (id)=(<id>) already exists.``
_DUPLICATE_KEY = ("Key (id)=(", ") already exists.")
_STATES = {state.value: state for state in JobState}
_PROCESSING = JobState.PROCESSING.value
_SCOPES = {scope.value: scope for scope in UniqueScope}
_NO_EVENTS = "[]"


class PostgresJobStore:
    """Jobs and recurring jobs in PostgreSQL tables, shared by every worker that opens them."""

    #: What ``add_in`` and ``finish_in`` take as the application's connection.
    transaction_connections = TRANSACTION_CONNECTIONS

    def __init__(self, settings: PostgresSettings) -> None:
        self._settings = settings
        self._sql = Statements.for_schema(
            settings.db_schema, relaxed_commit=settings.relaxed_commit
        )
        self._listing = Listing.for_schema(settings.db_schema)
        self._address = describe_dsn(settings.dsn)
        self._name = f"PostgreSQL store at {self._address}"
        self._pool: asyncpg.Pool | None = None
        # Single adds awaited one after another share one connection (see _postgres_held).
        self._held = HeldConnection()
        self._every_queue = Look(self._sql.earliest_due_every_queue)
        self._wake_ups = WakeUps(
            settings.dsn,
            channel=self._sql.channel,
            cancel_channel=self._sql.cancel_channel,
            address=self._address,
            connect_timeout=settings.connect_timeout,
            server_settings=self._server_settings(LISTENER_APPLICATION_NAME),
        )

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> PostgresJobStore:
        """The store for the container's ``store`` section; connects nothing yet."""
        return cls(PostgresSettings.from_mapping(settings))

    def __repr__(self) -> str:
        return f"PostgresJobStore({self._address!r}, schema={self._settings.db_schema!r})"

    # -- life cycle ------------------------------------------------------------------

    async def open(self) -> None:
        if self._pool is not None:
            return
        try:
            pool = await asyncpg.create_pool(
                self._settings.dsn,
                min_size=self._settings.pool_min_size,
                max_size=self._settings.pool_max_size,
                timeout=self._settings.connect_timeout,
                command_timeout=self._settings.command_timeout,
                reset=_keep_session,
                server_settings=self._server_settings(APPLICATION_NAME),
            )
        except _CONNECTION_ERRORS as exc:
            raise self._unavailable(exc) from exc
        try:
            async with pool.acquire() as connection:
                await self._prepare_schema(connection)
        except _CONNECTION_ERRORS as exc:
            pool.terminate()
            raise self._unavailable(exc) from exc
        except BaseException:
            pool.terminate()
            raise
        self._pool = pool
        # Once open: cancel listeners added before start listening now.
        self._wake_ups.start()

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        await self._wake_ups.close()
        if pool is None:
            return
        await self._held.release()
        with anyio.move_on_after(CLOSE_TIMEOUT_SECONDS) as scope:
            await pool.close()
        if scope.cancelled_caught:
            pool.terminate()

    async def _prepare_schema(self, connection: asyncpg.Connection) -> None:
        """Create the tables on first use, migrate older ones, refuse newer ones."""
        try:
            async with connection.transaction():
                # Several workers starting at once: one creates, the others wait and see it.
                key = advisory_lock_key(self._settings.db_schema)
                await connection.execute("SELECT pg_advisory_xact_lock($1)", key)
                found = await connection.fetchval("SELECT to_regclass($1)", self._sql.version_table)
                if found is None:
                    await connection.execute(self._sql.create_tables)
                    return
                version = await connection.fetchval(self._sql.read_version)
                self._check_version(version)
                steps = migrations(f'"{self._settings.db_schema}"')
                for step in range(version, SCHEMA_VERSION):
                    await connection.execute(steps[step])
        except asyncpg.PostgresError as exc:
            if isinstance(exc, LOST_CONNECTION_ERRORS):
                raise
            raise StoreError(
                f"PostgreSQL store at {self._address}: could not set up schema "
                f"{self._settings.db_schema!r}: {_reason(exc)}. Grant the user CREATE on "
                "the database, or create the schema and grant it to the user "
                "(see docs/security.md)."
            ) from exc

    def _check_version(self, version: int | None) -> None:
        if version is None or not 1 <= version <= SCHEMA_VERSION:
            raise SchemaVersionError(
                f"PostgreSQL store at {self._address}: schema {self._settings.db_schema!r} is at "
                f"version {version}, but this masa-jobs knows versions 1 to {SCHEMA_VERSION}: "
                "upgrade masa-jobs here to match the newest worker, or use another store.schema"
            )

    def _server_settings(self, application_name: str) -> dict[str, str]:
        # Named for operators reading pg_stat_activity, unless the DSN names them.
        if "application_name=" in urlsplit(self._settings.dsn).query:
            return {}
        return {"application_name": application_name}

    def _unavailable(self, exc: BaseException) -> StoreUnavailableError:
        reason = _reason(exc)
        if isinstance(exc, TimeoutError):
            reason = f"no answer within {self._settings.connect_timeout:g} s"
        return StoreUnavailableError(
            f"PostgreSQL store: cannot connect to {self._address} ({reason}). Check store.dsn "
            "(MASA_JOBS_STORE__DSN) and that the server is running and reachable from here."
        )

    def _unavailable_after(self, exc: Exception) -> StoreUnavailableError | None:
        """``StoreUnavailableError`` for a call that met a connection-level failure."""
        pool = self._pool
        closed = pool is None or pool.is_closing()
        if closed and isinstance(exc, (*_UNAVAILABLE_ERRORS, asyncpg.InterfaceError)):
            # aclose() ran during the call: asyncpg says "pool is closing", or
            # cuts the connections that outlast CLOSE_TIMEOUT_SECONDS.
            return StoreUnavailableError(
                f"PostgreSQL store at {self._address}: the store was closed during the call "
                f"({_reason(exc)}). Use it only while it is open: inside MasaApp.lifespan(), "
                "before store.aclose()."
            )
        if not isinstance(exc, _UNAVAILABLE_ERRORS):
            return None
        reason = _reason(exc)
        if isinstance(exc, TimeoutError):
            reason = (
                f"no answer within connect_timeout {self._settings.connect_timeout:g} s "
                f"or command_timeout {self._settings.command_timeout:g} s"
            )
        return StoreUnavailableError(
            f"PostgreSQL store: {self._address} is unavailable ({reason}). Check that the "
            "server is running and reachable from here, and store.dsn (MASA_JOBS_STORE__DSN); "
            "the store reconnects by itself once the server answers."
        )

    def _rejected(self, call: str, exc: Exception) -> StoreRejectedError:
        return StoreRejectedError(
            f"PostgreSQL store at {self._address} refused the values of {call} "
            f"({cut(_reason(exc))}); nothing was written. The same values would be refused "
            "again: remove or replace the offending one (a NUL character in a text, "
            "a value too large)."
        )

    def _cannot_write_now(self, call: str, exc: Exception, then: str = "") -> StoreError:
        """A server that answers but cannot write for now (``then``: what the
        caller does next, if more than waiting)."""
        return StoreUnavailableError(
            f"PostgreSQL store at {self._address} cannot serve {call} now "
            f"({type(exc).__name__}: {cut(_reason(exc))}); nothing was written. "
            f"{_not_now_fix(exc)}{then}"
        )

    def _driver_error(self, call: str, exc: Exception) -> StoreError | None:
        """The error for any other exception of asyncpg; see ``translates_driver_errors``."""
        if self._unavailable_after(exc) is not None or not isinstance(exc, _DRIVER_ERRORS):
            return None  # a connection failure (reports_unavailable words it), or no driver's
        if isinstance(exc, _REFUSED_VALUE_ERRORS):
            return self._rejected(call, exc)
        if isinstance(exc, _CANNOT_WRITE_NOW_ERRORS):
            return self._cannot_write_now(call, exc)
        return StoreError(
            f"PostgreSQL store at {self._address}: {call} failed ({type(exc).__name__}: "
            f"{cut(_reason(exc))}). This is neither a connection failure nor a refused "
            f"value: check the server's log, and that the tables of schema "
            f"{self._settings.db_schema!r} were not changed by hand."
        )

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError(
                "the PostgreSQL store is not open: use it inside MasaApp.lifespan(), "
                "or await store.open() first"
            )
        return self._pool

    # -- jobs ----------------------------------------------------------------------------

    @reports_unavailable
    @translates_driver_errors
    async def add(self, records: Sequence[JobRecord]) -> builtins.list[str]:
        if not records:
            return []
        refuse_repeated_ids(self._name, records)
        try:
            return await self._add_once(records)
        except _REPLY_LOST:
            return await self._add_after_a_lost_reply(records)

    async def _add_once(self, records: Sequence[JobRecord]) -> builtins.list[str]:
        """Store ``records`` (one statement, or one transaction with unique
        keys) and answer each record's job."""
        try:
            if _has_keys(records):
                pool = self._require_pool()
                async with pool.acquire() as connection, connection.transaction():
                    return await self._add_unique(connection, records)
            await self._held.execute(self._require_pool(), *self._plain_insert(records))
        except asyncpg.UniqueViolationError as exc:
            raise duplicate_job(self._name, _duplicate_id(exc, records)) from exc
        return [record.id for record in records]

    async def _add_after_a_lost_reply(self, records: Sequence[JobRecord]) -> builtins.list[str]:
        """Add ``records`` after the connection was lost with the add sent: the
        server may have committed them and its reply been lost. Told that
        nothing was stored, the caller would enqueue them again, and sent
        again they would be refused as duplicates of themselves. An add
        commits whole or not at all, so the jobs found stored are its own;
        the others (none, or those answered with another job's id) are added
        again and get their answer now."""
        stored = await self._stored_ids([record.id for record in records])
        answers = {job_id: job_id for job_id in stored}
        rest = [record for record in records if record.id not in stored]
        if rest:
            rest_ids = [record.id for record in rest]
            try:
                added = await self._add_once(rest)
            except DuplicateJobError:
                # The first add was still running when its connection was
                # lost, and has committed since: its jobs are the answer.
                if await self._stored_ids(rest_ids) != set(rest_ids):
                    raise
                added = rest_ids
            answers.update(zip(rest_ids, added, strict=True))
        return [answers[record.id] for record in records]

    async def _stored_ids(self, ids: builtins.list[str]) -> set[str]:
        """Those of ``ids`` that the store holds a job of."""
        return {row[0] for row in await self._require_pool().fetch(self._sql.stored_ids, ids)}

    def _plain_insert(self, records: Sequence[JobRecord]) -> tuple[Any, ...]:
        """The one statement, then its arguments, that inserts records without
        unique keys: one new job from scalars, any other batch (of one too)
        from arrays."""
        if len(records) == 1 and _is_new(records[0]):
            return (self._sql.add_one, *_new_job_values(records[0]), self._sql.channel)
        return (self._sql.add, *_job_arrays(records), self._sql.channel)

    async def _add_unique(
        self, connection: asyncpg.Connection, records: Sequence[JobRecord]
    ) -> builtins.list[str]:
        """Store the records whose keys are free, and answer each record's
        job: its own, or its key's holder. On ``connection``, inside a
        transaction (or savepoint) the caller opened, which ends the add as
        one: the keys' locks and the end of their expired periods, then the
        insert, repeated for records whose holder gave its key up before its
        id was read."""
        keys = sorted({record.unique_key for record in records if record.unique_key is not None})
        answers: dict[int, str] = {}
        left = list(range(len(records)))
        await connection.execute(self._sql.hold_keys, keys, self._sql.unique_lock_seed)
        for _ in range(UNIQUE_ADD_ATTEMPTS):
            batch = [records[i] for i in left]
            row = await connection.fetchrow(
                self._sql.add_unique,
                *_job_arrays(batch, unique=True),
                keys,
                self._sql.channel,
            )
            assert row is not None  # scalar subqueries always return their row
            left = _answer(records, left, row, answers)
            if not left:
                return [answers[i] for i in range(len(records))]
        raise StoreUnavailableError(
            f"PostgreSQL store at {self._address}: the holders of unique keys "
            f"{sorted({records[i].unique_key or '' for i in left})!r} kept changing during "
            f"the add ({UNIQUE_ADD_ATTEMPTS} tries); nothing was written. The same call "
            "may succeed if retried."
        )

    # -- in the application's transaction -------------------------------------------------

    async def add_in(self, connection: object, records: Sequence[JobRecord]) -> builtins.list[str]:
        """``add`` on the application's ``connection``, inside its open
        transaction: the same statements, never a commit. The ``NOTIFY`` is
        delivered, and workers wake and see the jobs, when the application
        commits. A batch without keys is the one insert; with keys, the add
        runs under a savepoint, where ``add`` opens a transaction, so that a
        failure takes back what its earlier inserts wrote. The keys stay
        locked until the application's transaction ends: another add of the
        same keys waits for it."""
        with self._on_app_connection("add_in"):
            driver = await in_transaction(connection)
            if not records:
                return []
            refuse_repeated_ids(self._name, records)
            try:
                if _has_keys(records):
                    async with savepoint(driver):
                        return await self._add_unique(driver, records)
                await driver.execute(*self._plain_insert(records))
            except asyncpg.UniqueViolationError as exc:
                raise duplicate_job(self._name, _duplicate_id(exc, records)) from exc
            return [record.id for record in records]

    async def finish_in(self, connection: object, worker_id: str, outcome: JobOutcome) -> bool:
        """One fenced outcome on the application's ``connection``, inside its
        transaction (a handler's ``complete_in``): a ``processing`` one writes
        only its done handlers and keeps the lease; any other is ``finish``'s
        statement in strict commit mode, whatever ``relaxed_commit`` says,
        since relaxing it would relax the application's own commit. The row
        stays locked until that transaction ends. False, with nothing
        written, when the job is not held under ``outcome.lease_token``."""
        with self._on_app_connection("finish_in"):
            driver = await in_transaction(connection)
            if outcome.state is JobState.PROCESSING:
                status = await driver.execute(
                    self._sql.record_handlers,
                    worker_id,
                    outcome.job_id,
                    encode_handlers(outcome.done_handlers),
                    outcome.lease_token,
                )
                return _row_count(status) > 0
            row = await driver.fetchrow(
                self._sql.finish_strict,
                *_outcome_arguments(worker_id, [outcome]),
                self._sql.channel,
            )
            assert row is not None  # scalar subqueries always return their row
            return outcome.job_id in _ids(row[0])

    @contextmanager
    def _on_app_connection(self, call: str) -> Iterator[None]:
        """Raise masa-jobs' error for asyncpg's exception in ``call`` on the
        application's connection, chained to it; masa-jobs' own errors pass."""
        try:
            yield
        except MasaJobsError:
            raise
        except Exception as exc:
            error = self._app_connection_error(call, exc)
            if error is None:
                raise
            raise error from exc

    def _app_connection_error(self, call: str, exc: Exception) -> MasaJobsError | None:
        """What an error of asyncpg on the application's connection means.

        Unlike the pool's, that connection is not the store's to replace: a
        lost one took the application's transaction with it.
        """
        schema = self._settings.db_schema
        if isinstance(exc, asyncpg.UndefinedTableError):
            return TransactionError(
                f"PostgreSQL store at {self._address}: {call} found no table "
                f'"{schema}".jobs on the connection: it is connected to another database '
                "than the store's, or the store was never opened there. Connect to the "
                f"store's database; the tables are in schema {schema!r}, created when a "
                "worker or the app opens the store"
            )
        if isinstance(exc, asyncpg.InFailedSQLTransactionError):
            return TransactionError(
                f"PostgreSQL store at {self._address}: {call} could not write: the "
                "transaction was aborted by an earlier error. Roll it back; nothing of "
                "it, and no job, is stored"
            )
        if isinstance(exc, asyncpg.InsufficientPrivilegeError):
            return StoreError(
                f"PostgreSQL store at {self._address}: {call} was refused on the "
                f"connection's role ({cut(_reason(exc))}): grant it USAGE on schema "
                f"{schema!r} and the rights on its jobs table that "
                "docs/stores/postgres.md#transactions lists"
            )
        if isinstance(exc, _APP_CONNECTION_LOST):
            return StoreUnavailableError(
                f"PostgreSQL store at {self._address}: the connection failed during {call} "
                f"({_reason(exc)}); its transaction is lost, and nothing of it was stored. "
                "Run the transaction again once the server answers"
            )
        return self._app_statement_error(call, exc)

    def _app_statement_error(self, call: str, exc: Exception) -> StoreError | None:
        if isinstance(exc, _REFUSED_VALUE_ERRORS):
            return self._rejected(call, exc)
        if isinstance(exc, _CANNOT_WRITE_NOW_ERRORS):
            return self._cannot_write_now(
                call, exc, then=" Roll the transaction back, then run it again"
            )
        if isinstance(exc, _DRIVER_ERRORS):
            return StoreError(
                f"PostgreSQL store at {self._address}: {call} failed on the application's "
                f"connection ({type(exc).__name__}: {cut(_reason(exc))}); nothing was "
                "written. Roll the transaction back, check the server's log, and that "
                f"the tables of schema {self._settings.db_schema!r} were not changed by hand"
            )
        return None

    @reports_unavailable
    @translates_driver_errors
    async def now(self) -> datetime:
        now: datetime = await self._require_pool().fetchval(self._sql.now)
        return now

    @reports_unavailable
    @translates_driver_errors
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
        token = new_lease_token()
        arguments = [worker_id, limit, lease.total_seconds(), list(exclude), token]
        if queues is None:
            statement = self._sql.claim_every_queue
        else:
            statement, arguments = self._sql.claim_queues, [*arguments, list(queues)]
        pool = self._require_pool()
        try:
            rows = await pool.fetch(statement, *arguments)
        except _REPLY_LOST:
            # The claim may have leased jobs and its reply been lost: they
            # would wait out their leases under a worker that does not know
            # them. Those found under its token are its answer.
            rows = await pool.fetch(self._sql.claimed_under, token, worker_id)
            if not rows:
                raise
        return [_record(row) for row in rows]

    @reports_unavailable
    @translates_driver_errors
    async def extend_leases(
        self, worker_id: str, leases: Mapping[str, str], lease: timedelta
    ) -> set[str]:
        if not leases:
            return set()
        row = await self._require_pool().fetchrow(
            self._sql.extend_leases,
            worker_id,
            list(leases),
            list(leases.values()),
            lease.total_seconds(),
        )
        assert row is not None  # scalar subqueries always return their row
        return _ids(row[0])

    @reports_unavailable
    @translates_driver_errors
    async def finish(self, worker_id: str, outcomes: Sequence[JobOutcome]) -> set[str]:
        if not outcomes:
            return set()
        pool, arguments = self._require_pool(), _outcome_arguments(worker_id, outcomes)
        try:
            row = await pool.fetchrow(self._sql.finish, *arguments, self._sql.channel)
        except _REPLY_LOST:
            # Sent again on another connection: what the first send applied
            # before its reply was lost is answered as applied.
            row = await pool.fetchrow(self._sql.finish, *arguments, self._sql.channel)
        assert row is not None  # scalar subqueries always return their row
        # Applied now, and applied by an earlier send whose reply was lost.
        return _ids(row[0]) | _ids(row[3])

    @reports_unavailable
    @translates_driver_errors
    async def get(self, job_id: str) -> JobRecord | None:
        row = await self._require_pool().fetchrow(self._sql.get, job_id)
        return None if row is None else _record(row)

    # -- operator reads --------------------------------------------------------------------

    @reports_unavailable
    @translates_driver_errors
    async def list_jobs(self, query: JobQuery, now: datetime) -> Page[JobRecord]:
        """One page of ``query``: O(limit) index entries; see ``_postgres_listing``."""
        shape, arguments = list_arguments(query, now)
        rows = await self._require_pool().fetch(self._listing.pages[shape], *arguments)
        return page_of([_record(row) for row in rows], query.limit)

    @reports_unavailable
    @translates_driver_errors
    async def count_by_state(self, now: datetime) -> dict[JobState, int]:
        """Exact up to ``EXACT_COUNT_LIMIT`` jobs per state (a count of at most
        that many index entries, plus one); above it the planner's estimate from
        the table's statistics (``EXPLAIN`` of the state's predicate), so that no
        count scans a whole state. See ``_postgres_listing``."""
        pool = self._require_pool()
        row = await pool.fetchrow(self._listing.count, *count_arguments(now))
        assert row is not None  # a SELECT of scalar subqueries always returns its row
        counts, saturated = counts_of(row)
        for state in saturated:
            plan = await pool.fetchval(
                self._listing.estimates[state], *estimate_arguments(state, now)
            )
            counts[state] = estimated_count(plan, counts[state])
        return counts

    @reports_unavailable
    @translates_driver_errors
    async def oldest_due_at(self) -> datetime | None:
        oldest: datetime | None = await self._require_pool().fetchval(self._sql.oldest_due_at)
        return oldest

    @reports_unavailable
    @translates_driver_errors
    async def finished_per_minute(self, since: datetime) -> builtins.list[tuple[datetime, int]]:
        rows = await self._require_pool().fetch(self._sql.finished_per_minute, since)
        return [(row["minute"], row["count"]) for row in rows]

    @reports_unavailable
    @translates_driver_errors
    async def transition(
        self,
        job_id: str,
        expected: Collection[JobState],
        state: JobState,
        now: datetime,
    ) -> JobRecord | None:
        pool = self._require_pool()
        wanted = [s.value for s in expected]
        if state.is_pending:
            statement = self._sql.to_pending
            arguments = [job_id, wanted, state.value, now, self._sql.channel]
        else:
            finished_at = now if state.is_finished else None
            statement = self._sql.to_other
            arguments = [job_id, wanted, state.value, finished_at, self._sql.cancel_channel]
        try:
            row = await pool.fetchrow(statement, *arguments)
        except _REPLY_LOST:
            # The move may have been made and its reply lost: made again, it
            # would be refused (the job is no longer in an expected state),
            # and the operator told the job cannot be moved. A job found in
            # the state asked for is answered as moved.
            row = await pool.fetchrow(self._sql.get, job_id)
            if row is None or row["state"] != state.value:
                row = await pool.fetchrow(statement, *arguments)
        return None if row is None else _record(row)

    @reports_unavailable
    @translates_driver_errors
    async def delete(self, job_id: str) -> bool:
        pool = self._require_pool()
        try:
            status = await pool.execute(self._sql.delete, job_id)
        except _REPLY_LOST:
            # Deleted, its reply lost: deleted again, the job would be
            # answered as unknown. A job that is gone is answered as deleted
            # (so is an unknown id whose reply was lost).
            if not await self._stored_ids([job_id]):
                return True
            status = await pool.execute(self._sql.delete, job_id)
        return _row_count(status) > 0

    @reports_unavailable
    @translates_driver_errors
    async def purge(
        self,
        states: Collection[JobState],
        finished_before: datetime,
        *,
        limit: int | None = None,
    ) -> int:
        wanted = [state.value for state in states]
        if limit is not None:
            # A caller pausing between chunks: skip the turn when another purges.
            return await self._purge_chunk(self._sql.purge_if_free, wanted, finished_before, limit)
        # Everything: short statements that each hold their locks for
        # milliseconds, waiting for their turn behind another purger's chunk.
        purged = 0
        while True:
            chunk = await self._purge_chunk(
                self._sql.purge_in_turn, wanted, finished_before, PURGE_CHUNK_ROWS
            )
            purged += chunk
            if chunk < PURGE_CHUNK_ROWS:
                return purged

    async def _purge_chunk(
        self, statement: str, states: builtins.list[str], finished_before: datetime, limit: int
    ) -> int:
        if limit <= 0:
            return 0
        purged: int = await self._require_pool().fetchval(
            statement, states, finished_before, limit, self._sql.purge_lock_key
        )
        return purged

    # -- wake-up -------------------------------------------------------------------------

    @reports_unavailable
    @translates_driver_errors
    async def wait_for_work(self, timeout: float, *, queues: Collection[str] | None = None) -> None:
        await self._wake_ups.wait(self._require_pool(), timeout, self._look_for(queues))

    def _look_for(self, queues: Collection[str] | None) -> Look:
        """What a wait asks the server: when a job of ``queues`` falls due."""
        if queues is None:
            return self._every_queue
        return Look(self._sql.earliest_due_queues, (list(queues),))

    def add_cancel_listener(self, listener: Callable[[str], None]) -> None:
        """Hear the cancels of running jobs, from any process on this schema."""
        self._wake_ups.add_cancel_listener(listener)

    # -- queues ------------------------------------------------------------------------------

    @reports_unavailable
    @translates_driver_errors
    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        pool = self._require_pool()
        if paused:
            await pool.execute(self._sql.pause_queue, queue)
        else:
            await pool.execute(self._sql.resume_queue, queue, self._sql.channel)

    @reports_unavailable
    @translates_driver_errors
    async def paused_queues(self) -> set[str]:
        rows = await self._require_pool().fetch(self._sql.paused_queues)
        return {row["queue"] for row in rows}

    # -- workers ---------------------------------------------------------------------------

    @reports_unavailable
    @translates_driver_errors
    async def heartbeat(self, worker: WorkerInfo) -> None:
        await self._require_pool().execute(
            self._sql.heartbeat,
            worker.id,
            worker.host,
            worker.pid,
            worker.started_at,
            worker.last_seen_at,
            worker.running_jobs,
            worker.last_seen_at - timedelta(seconds=STALE_WORKER_SECONDS),
        )

    @reports_unavailable
    @translates_driver_errors
    async def list_workers(self, seen_since: datetime) -> builtins.list[WorkerInfo]:
        rows = await self._require_pool().fetch(self._sql.list_workers, seen_since)
        return [WorkerInfo(*row) for row in rows]

    @reports_unavailable
    @translates_driver_errors
    async def remove_worker(self, worker_id: str) -> None:
        await self._require_pool().execute(self._sql.remove_worker, worker_id)

    # -- recurring jobs --------------------------------------------------------------------

    @reports_unavailable
    @translates_driver_errors
    async def upsert_schedule(self, schedule: ScheduleRecord) -> None:
        await self._require_pool().execute(
            self._sql.upsert_schedule,
            schedule.id,
            schedule.job_class,
            schedule.cron_expression,
            schedule.timezone,
            schedule.next_fire_at,
            schedule.created_at,
            schedule.updated_at,
            schedule.last_fire_at,
            schedule.payload,
            schedule.paused,
        )

    @reports_unavailable
    @translates_driver_errors
    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        row = await self._require_pool().fetchrow(self._sql.get_schedule, schedule_id)
        return None if row is None else ScheduleRecord(*row)

    @reports_unavailable
    @translates_driver_errors
    async def list_schedules(self) -> builtins.list[ScheduleRecord]:
        rows = await self._require_pool().fetch(self._sql.list_schedules)
        return [ScheduleRecord(*row) for row in rows]

    @reports_unavailable
    @translates_driver_errors
    async def delete_schedule(self, schedule_id: str) -> bool:
        status = await self._require_pool().execute(self._sql.delete_schedule, schedule_id)
        return _row_count(status) > 0

    @reports_unavailable
    @translates_driver_errors
    async def set_schedule_paused(self, schedule_id: str, paused: bool) -> bool:
        pool = self._require_pool()
        status = await pool.execute(self._sql.set_schedule_paused, schedule_id, paused)
        return _row_count(status) > 0

    @reports_unavailable
    @translates_driver_errors
    async def fire_schedule(
        self,
        schedule_id: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        job: JobRecord | None,
    ) -> bool:
        # One statement: concurrent schedulers queue on the schedule's row
        # lock, and all but the first find next_fire_at moved on.
        jobs = () if job is None else (job,)
        try:
            row = await self._require_pool().fetchrow(
                self._sql.fire_schedule,
                schedule_id,
                expected_next_fire_at,
                next_fire_at,
                *_job_arrays(jobs, unique=True),
                self._sql.channel,
            )
        except asyncpg.UniqueViolationError as exc:
            raise duplicate_job(self._name, _duplicate_id(exc, jobs), tick=True) from exc
        assert row is not None  # an aggregate always returns its row
        return bool(row[0])


def _reason(exc: BaseException) -> str:
    # A driver's text may quote a DSN or a keyword string: keep its password out.
    return redact(str(exc)) or type(exc).__name__


def _not_now_fix(exc: Exception) -> str:
    """What to do about a server that cannot write for now."""
    if isinstance(exc, asyncpg.InsufficientResourcesError):
        return (
            "The server is out of disk space or memory: free some (or purge old jobs); "
            "the same call succeeds once there is room."
        )
    if isinstance(exc, asyncpg.ReadOnlySQLTransactionError):
        return (
            "The server is read-only (a standby, or after a failover): point store.dsn "
            "(MASA_JOBS_STORE__DSN) at the primary."
        )
    return (
        "The server aborted the statement (a deadlock, a serialization failure or a "
        "statement_timeout): the same call may succeed if retried."
    )


def _duplicate_id(exc: asyncpg.UniqueViolationError, records: Sequence[JobRecord]) -> str | None:
    """The id of a duplicate key error, if it is one of ``records``'s."""
    detail = getattr(exc, "detail", None) or ""
    head, tail = _DUPLICATE_KEY
    if detail.startswith(head) and detail.endswith(tail):
        job_id = detail[len(head) : -len(tail)]
        if any(record.id == job_id for record in records):
            return job_id
    return None


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release, a second round trip per call.

    Pooled connections keep no session state: no LISTEN (that has its own
    connection), no SET, no session-level locks; asyncpg still rolls back a
    transaction left open.
    """


def _job_arrays(
    records: Sequence[JobRecord], *, unique: bool = False
) -> tuple[builtins.list[Any], ...]:
    """The records column by column, for a batch insert through ``unnest``:
    ``_job_values`` transposed (empty columns for no record, as a recurring
    job's tick without a job sends); the unique key columns only with
    ``unique``."""
    columns = tuple(list(column) for column in zip(*map(_job_values, records), strict=True))
    if not records:
        columns = tuple([] for _ in range(BATCH_ARRAYS))
    if not unique:
        return columns
    return (
        *columns,
        [r.unique_key for r in records],
        [None if r.unique_scope is None else r.unique_scope.value for r in records],
        [r.unique_until for r in records],
    )


def _has_keys(records: Sequence[JobRecord]) -> bool:
    """Whether the batch takes the unique-key path of an add."""
    return any(record.unique_key is not None for record in records)


def _outcome_arguments(worker_id: str, outcomes: Sequence[JobOutcome]) -> tuple[Any, ...]:
    """``finish``'s arguments up to its channel: the outcomes column by column."""
    return (
        worker_id,
        [o.job_id for o in outcomes],
        [o.state.value for o in outcomes],
        [o.attempts for o in outcomes],
        [o.next_try_at for o in outcomes],
        [o.last_error for o in outcomes],
        [encode_handlers(o.done_handlers) for o in outcomes],
        [o.finished_at is not None for o in outcomes],
        [o.lease_token for o in outcomes],
    )


def _is_new(r: JobRecord) -> bool:
    """Whether every column ``_new_job_values`` leaves out is at its default:
    never tried, no lease, no outcome, no history (as ``enqueue`` makes them)."""
    return (
        r.attempts == 0
        and r.last_try_at is None
        and r.last_error is None
        and not r.done_handlers
        and r.lease_owner is None
        and r.lease_expires_at is None
        and r.finished_at is None
        and not r.history
    )


def _new_job_values(r: JobRecord) -> tuple[Any, ...]:
    """A new job's parameters of the ``add_one`` statement: its delay from
    creation to due time, in seconds, rather than both times."""
    delay = 0.0 if r.next_try_at == r.created_at else (r.next_try_at - r.created_at).total_seconds()
    return (r.id, r.name, r.payload, r.state.value, delay, r.headers, r.queue, r.priority)


def _job_values(r: JobRecord) -> tuple[Any, ...]:
    """One record's columns, in the order of the batch insert's arrays."""
    return (
        r.id,
        r.name,
        r.payload,
        r.state.value,
        r.created_at,
        r.next_try_at,
        r.attempts,
        r.last_try_at,
        r.last_error,
        encode_handlers(r.done_handlers),
        r.lease_owner,
        r.lease_expires_at,
        r.finished_at,
        r.headers,
        encode_history(r.history) if r.history else _NO_EVENTS,
        r.queue,
        r.priority,
    )


def _record(row: asyncpg.Record) -> JobRecord:
    handlers: str = row["done_handlers"]
    history: str = row["history"]
    scope: str | None = row["unique_scope"]
    return JobRecord(
        id=row["id"],
        name=row["name"],
        payload=row["payload"],
        state=_STATES[row["state"]],
        created_at=row["created_at"],
        next_try_at=row["next_try_at"],
        attempts=row["attempts"],
        last_try_at=row["last_try_at"],
        last_error=row["last_error"],
        done_handlers=decode_handlers(handlers),
        lease_owner=row["lease_owner"],
        lease_expires_at=row["lease_expires_at"],
        finished_at=row["finished_at"],
        # A row out of processing keeps the token of its last claim (the
        # finish statement's answer to an outcome sent again), not a lease.
        lease_token=row["lease_token"] if row["state"] == _PROCESSING else None,
        headers=row["headers"],
        history=() if history == _NO_EVENTS else decode_history(history),
        queue=row["queue"],
        priority=row["priority"],
        unique_key=row["unique_key"],
        unique_scope=None if scope is None else _SCOPES[scope],
        unique_until=row["unique_until"],
    )


def _answer(
    records: Sequence[JobRecord],
    left: builtins.list[int],
    row: asyncpg.Record,
    answers: dict[int, str],
) -> builtins.list[int]:
    """Fill ``answers`` (position -> id) for the records at positions ``left``
    from one ``add_unique`` row; the positions still without an answer.

    A record inserted now answers itself and holds its key for the later
    records of the batch (the snapshot's holder, if any, gave it up since);
    a record skipped answers its key's holder. One whose holder was not in
    the snapshot (it gave the key up meanwhile) is left for another insert.
    """
    inserted = set(row[0] or ())
    holders: dict[str, str] = json.loads(row[1]) if row[1] else {}
    for i in left:
        record = records[i]
        if record.id in inserted:
            answers[i] = record.id
            if record.unique_key is not None:
                holders[record.unique_key] = record.id
    unanswered = []
    for i in left:
        key = records[i].unique_key
        if i in answers:
            continue
        holder = None if key is None else holders.get(key)
        if holder is None:
            unanswered.append(i)
        else:
            answers[i] = holder
    return unanswered


def _ids(ids: builtins.list[str] | None) -> set[str]:
    """The ids an ``array_agg`` returned: NULL when no row matched."""
    return set() if ids is None else set(ids)


def _row_count(status: str) -> int:
    """The row count at the end of a command tag such as ``DELETE 3``."""
    return int(status.rpartition(" ")[2])
