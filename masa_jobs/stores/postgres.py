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
rebased on it. New and requeued jobs ``NOTIFY`` a channel per schema that
idle workers ``LISTEN`` on through a dedicated connection; polling is the
fallback whenever that connection is down. While the server cannot be reached
every call raises ``StoreUnavailableError``, and the pool reconnects by
itself once it answers; values the server refuses (a NUL character in a text)
raise ``StoreRejectedError``.

The tables live in their own PostgreSQL schema (``store.schema``), created on
first open under an advisory lock and versioned in ``schema_version``.
asyncpg runs on asyncio only: this store does not run under trio.
"""

from __future__ import annotations

import builtins
import functools
import json
from collections.abc import Awaitable, Callable, Collection, Coroutine, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlsplit

import anyio
import asyncpg

from ..exceptions import (
    SchemaVersionError,
    StoreError,
    StoreRejectedError,
    StoreUnavailableError,
)
from ..records import JobOutcome, JobRecord, JobState, ScheduleRecord, WorkerInfo
from ._postgres_settings import PostgresSettings, describe_dsn
from ._postgres_sql import SCHEMA_VERSION, Statements, advisory_lock_key, migrations
from ._postgres_wakeup import LOST_CONNECTION_ERRORS, WakeUps
from ._unavailable import reports_unavailable
from .base import PURGE_CHUNK_ROWS, STALE_WORKER_SECONDS, new_lease_token

__all__ = ["PostgresJobStore", "PostgresSettings"]

# What pg_stat_activity shows for the pool's and the LISTEN connections.
APPLICATION_NAME = "masa-jobs"
LISTENER_APPLICATION_NAME = "masa-jobs listener"
# aclose() waits this long for borrowed connections, then cuts them.
CLOSE_TIMEOUT_SECONDS = 5.0
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
# Refused values are StoreRejectedError (see _REFUSED_VALUE_ERRORS); other SQL
# errors (a duplicate id among them) and asyncpg's InterfaceError (a misused
# API) mean a bug and pass unchanged, unless aclose() ran during the call (see
# _unavailable_after).
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
# index entry. Sending the same values again would fail again.
_REFUSED_VALUE_ERRORS = (asyncpg.DataError, asyncpg.ProgramLimitExceededError)
_STATES = {state.value: state for state in JobState}
_NO_HANDLERS = "[]"


S = TypeVar("S", bound="PostgresJobStore")
P = ParamSpec("P")
T = TypeVar("T")


def _refuses_values(
    method: Callable[Concatenate[S, P], Awaitable[T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Raise ``StoreRejectedError``, chained to the driver's exception, where the
    server refuses the values ``method`` sends. Each call is one statement, so
    a refused one wrote nothing."""

    @functools.wraps(method)
    async def refusing(store: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(store, *args, **kwargs)
        except _REFUSED_VALUE_ERRORS as exc:
            raise store._rejected(method.__name__, exc) from exc

    return refusing


class PostgresJobStore:
    """Jobs and recurring jobs in PostgreSQL tables, shared by every worker that opens them."""

    def __init__(self, settings: PostgresSettings) -> None:
        self._settings = settings
        self._sql = Statements.for_schema(
            settings.db_schema, relaxed_commit=settings.relaxed_commit
        )
        self._address = describe_dsn(settings.dsn)
        self._pool: asyncpg.Pool | None = None
        self._wake_ups = WakeUps(
            settings.dsn,
            channel=self._sql.channel,
            earliest_due=self._sql.earliest_due,
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
        self._wake_ups.start()
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

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        await self._wake_ups.close()
        if pool is None:
            return
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
                f"{self._settings.db_schema!r}: {exc}. Grant the user CREATE on the database, "
                "or create the schema and grant it to the user."
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
            f"({_reason(exc)}); nothing was written. The same values would be refused "
            "again: remove or replace the offending one (a NUL character in a text, "
            "a value too large)."
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
    @_refuses_values
    async def add(self, records: Sequence[JobRecord]) -> None:
        if records:
            await self._require_pool().execute(
                self._sql.add, *_job_arrays(records), self._sql.channel
            )

    @reports_unavailable
    async def now(self) -> datetime:
        now: datetime = await self._require_pool().fetchval(self._sql.now)
        return now

    @reports_unavailable
    @_refuses_values
    async def claim(
        self,
        worker_id: str,
        limit: int,
        lease: timedelta,
        *,
        exclude: Collection[str] = (),
    ) -> list[JobRecord]:
        if limit <= 0:
            return []
        rows = await self._require_pool().fetch(
            self._sql.claim,
            worker_id,
            limit,
            lease.total_seconds(),
            list(exclude),
            new_lease_token(),
        )
        return [_record(row) for row in rows]

    @reports_unavailable
    @_refuses_values
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
    @_refuses_values
    async def finish(self, worker_id: str, outcomes: Sequence[JobOutcome]) -> set[str]:
        if not outcomes:
            return set()
        row = await self._require_pool().fetchrow(
            self._sql.finish,
            worker_id,
            [o.job_id for o in outcomes],
            [o.state.value for o in outcomes],
            [o.attempts for o in outcomes],
            [o.next_try_at for o in outcomes],
            [o.last_error for o in outcomes],
            [_encode_handlers(o.done_handlers) for o in outcomes],
            [o.finished_at is not None for o in outcomes],
            [o.lease_token for o in outcomes],
            self._sql.channel,
        )
        assert row is not None  # scalar subqueries always return their row
        return _ids(row[0])

    @reports_unavailable
    @_refuses_values
    async def get(self, job_id: str) -> JobRecord | None:
        row = await self._require_pool().fetchrow(self._sql.get, job_id)
        return None if row is None else _record(row)

    @reports_unavailable
    @_refuses_values
    async def list(
        self, states: Collection[JobState] | None = None, *, limit: int = 100, offset: int = 0
    ) -> builtins.list[JobRecord]:
        pool = self._require_pool()
        if states is None:
            rows = await pool.fetch(self._sql.list_all, limit, offset)
        else:
            wanted = [state.value for state in states]
            rows = await pool.fetch(self._sql.list_states, limit, offset, wanted)
        return [_record(row) for row in rows]

    @reports_unavailable
    @_refuses_values
    async def count_by_state(self, now: datetime) -> dict[JobState, int]:
        counts = dict.fromkeys(JobState, 0)
        for shown, count in await self._require_pool().fetch(self._sql.count_by_state, now):
            counts[_STATES[shown]] = count
        return counts

    @reports_unavailable
    @_refuses_values
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
            row = await pool.fetchrow(
                self._sql.to_pending, job_id, wanted, state.value, now, self._sql.channel
            )
        else:
            finished_at = now if state.is_finished else None
            row = await pool.fetchrow(self._sql.to_other, job_id, wanted, state.value, finished_at)
        return None if row is None else _record(row)

    @reports_unavailable
    @_refuses_values
    async def delete(self, job_id: str) -> bool:
        status = await self._require_pool().execute(self._sql.delete, job_id)
        return _row_count(status) > 0

    @reports_unavailable
    @_refuses_values
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
    async def wait_for_work(self, timeout: float) -> None:
        await self._wake_ups.wait(self._require_pool(), timeout)

    # -- workers ---------------------------------------------------------------------------

    @reports_unavailable
    @_refuses_values
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
    @_refuses_values
    async def list_workers(self, seen_since: datetime) -> builtins.list[WorkerInfo]:
        rows = await self._require_pool().fetch(self._sql.list_workers, seen_since)
        return [WorkerInfo(*row) for row in rows]

    @reports_unavailable
    @_refuses_values
    async def remove_worker(self, worker_id: str) -> None:
        await self._require_pool().execute(self._sql.remove_worker, worker_id)

    # -- recurring jobs --------------------------------------------------------------------

    @reports_unavailable
    @_refuses_values
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
        )

    @reports_unavailable
    @_refuses_values
    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        row = await self._require_pool().fetchrow(self._sql.get_schedule, schedule_id)
        return None if row is None else ScheduleRecord(*row)

    @reports_unavailable
    async def list_schedules(self) -> builtins.list[ScheduleRecord]:
        rows = await self._require_pool().fetch(self._sql.list_schedules)
        return [ScheduleRecord(*row) for row in rows]

    @reports_unavailable
    @_refuses_values
    async def delete_schedule(self, schedule_id: str) -> bool:
        status = await self._require_pool().execute(self._sql.delete_schedule, schedule_id)
        return _row_count(status) > 0

    @reports_unavailable
    @_refuses_values
    async def fire_schedule(
        self,
        schedule_id: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        job: JobRecord | None,
    ) -> bool:
        # One statement: concurrent schedulers queue on the schedule's row
        # lock, and all but the first find next_fire_at moved on.
        row = await self._require_pool().fetchrow(
            self._sql.fire_schedule,
            schedule_id,
            expected_next_fire_at,
            next_fire_at,
            *_job_arrays(() if job is None else (job,)),
            self._sql.channel,
        )
        assert row is not None  # an aggregate always returns its row
        return bool(row[0])


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release, a second round trip per call.

    Pooled connections keep no session state: no LISTEN (that has its own
    connection), no SET, no session-level locks; asyncpg still rolls back a
    transaction left open.
    """


def _job_arrays(records: Sequence[JobRecord]) -> tuple[builtins.list[Any], ...]:
    """The records column by column, for a batch insert through ``unnest``."""
    return (
        [r.id for r in records],
        [r.name for r in records],
        [r.payload for r in records],
        [r.state.value for r in records],
        [r.created_at for r in records],
        [r.next_try_at for r in records],
        [r.attempts for r in records],
        [r.last_try_at for r in records],
        [r.last_error for r in records],
        [_encode_handlers(r.done_handlers) for r in records],
        [r.lease_owner for r in records],
        [r.lease_expires_at for r in records],
        [r.finished_at for r in records],
    )


def _encode_handlers(handlers: tuple[str, ...]) -> str:
    return json.dumps(handlers) if handlers else _NO_HANDLERS


def _record(row: asyncpg.Record) -> JobRecord:
    handlers: str = row[9]
    return JobRecord(
        id=row[0],
        name=row[1],
        payload=row[2],
        state=_STATES[row[3]],
        created_at=row[4],
        next_try_at=row[5],
        attempts=row[6],
        last_try_at=row[7],
        last_error=row[8],
        done_handlers=() if handlers == _NO_HANDLERS else tuple(json.loads(handlers)),
        lease_owner=row[10],
        lease_expires_at=row[11],
        finished_at=row[12],
        lease_token=row[13],
    )


def _ids(ids: builtins.list[str] | None) -> set[str]:
    """The ids an ``array_agg`` returned: NULL when no row matched."""
    return set() if ids is None else set(ids)


def _row_count(status: str) -> int:
    """The row count at the end of a command tag such as ``DELETE 3``."""
    return int(status.rpartition(" ")[2])
