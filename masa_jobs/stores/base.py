"""The ``JobStore`` protocol: persistence plus one atomic claim.

Policy (names, validation, retry maths) lives above this line, in Python, so
that a store only keeps records and hands each due job to one claimer at a
time. Every store passes the same contract suite (``tests/contract``).

Semantics every implementation keeps:

* **The store's clock decides.** Due times and lease deadlines are compared
  with the store's own time (PostgreSQL ``now()``, Redis ``TIME``); a
  worker's clock never decides who owns a job. Memory and SQLite are one
  machine and use the local clock (the memory store's is injectable for
  tests). ``add`` on a network store rebases a record on its clock:
  ``created_at`` becomes the store's now and ``next_try_at`` keeps its offset
  from ``created_at`` (the caller's delay), so "in 30 s" means 30 s of the
  store's time whatever the caller's clock says.
* A job is *due* when it is pending (``scheduled`` or ``enqueued``) and its
  ``next_try_at`` has passed, or when it is ``processing`` and its lease
  expired (its worker died or was cut off). A job is stored ``enqueued``
  only when it is due at once (``next_try_at`` not after ``created_at``, or
  the time of the move that stored it); ``scheduled`` may be due or not. So
  a list of scheduled jobs never walks the ones stored ``enqueued``.
* ``claim`` atomically moves up to ``limit`` due jobs to ``processing`` under
  a lease owned by ``worker_id`` and a **new lease token** (a fencing value
  that differs on every claim), increments ``attempts`` and sets
  ``last_try_at`` and ``lease_expires_at`` on the store's clock; due jobs
  come in order of ``next_try_at``, then ``attempts``, then creation. Ids in
  ``exclude`` are never claimed: a worker passes the jobs it is still running
  or holding outcomes for, so that it never takes back its own job. Two
  claimers never get the same job while its lease holds.
* ``extend_leases`` and ``finish`` are **fenced**: they apply only to jobs
  still ``processing`` under the given token (the token alone decides: a
  lease that expired but was not claimed again is still the holder's). Both
  return the ids they applied to; an id missing from the answer means the
  lease was lost.
* Statements that lock several job rows lock them in ascending id order, so
  that renewals and outcomes of concurrent workers never deadlock.
* **Queues and priorities.** Every job waits in one ``queue`` and has a
  ``priority`` (0 first, 9 last). ``claim`` and ``wait_for_work`` take the
  queues the worker serves (None: every queue) and never hand out or wake
  for a job of another queue, nor of a **paused** queue (``set_queue_paused``,
  stored, so it holds across restarts and for every worker; a paused queue
  still accepts jobs, and its expired leases are not recovered until it is
  resumed). Due jobs are claimed by priority, then ``next_try_at``, then
  ``attempts``, then creation.
* **Unique keys.** A record with a ``unique_key`` holds it while its
  ``unique_scope`` says so (``UniqueScope``): ``pending`` until the job is
  first claimed; ``active`` until it reaches a finished state (by ``finish``
  or ``transition``); ``period`` until ``unique_until`` passes on the store's
  clock, whatever the state. Deleting or purging a job releases its key. At
  most one job holds a key at a time, enforced by the store itself (a unique
  index, an atomic script, no await between check and insert), never by a
  read-then-write in Python: ``add`` of a record whose key another job
  holds stores nothing for it and answers that job's id instead. The key a
  job released is not taken back (a retried ``pending`` job does not hold
  it again).
* **Cancel notices.** A store that can tell other processes at once
  (``CancelFeed``: PostgreSQL ``NOTIFY``, Redis pub/sub; memory and SQLite
  within the process) calls its listeners with the id of each
  ``processing`` job that ``transition`` cancelled, so that the worker
  holding it renews at once, is refused, and cancels the run; without one,
  the worker learns at its next renewal.
* Errors: a store that cannot be reached raises ``StoreUnavailableError``
  (transient: the same call may succeed later); a write whose values the
  store refuses raises ``StoreRejectedError`` (permanent: never retry it as
  is). Nothing else that a driver raises leaks out of a store.
* Timestamps are timezone-aware UTC datetimes.
* ``headers`` is stored as given by ``add`` and returned by every read;
  ``history`` is the store's: ``add`` stores a record's history as given
  (normally empty), ``finish`` and ``transition`` append to it.
* Operator reads scale: ``list_jobs`` pages by cursor with indexes that make
  a page O(limit) for every filter, except that the ``scheduled`` and
  ``enqueued`` states share one stored state and are told apart by the
  clock, so a page of one may skip pending jobs of the other (bounded work
  per statement or script call). ``count_by_state`` never scans a whole
  state. On Redis no operator call runs a script whose cost grows with the
  queue.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from ..queries import JobQuery, Page
from ..records import JobOutcome, JobRecord, JobState, ScheduleRecord, WorkerInfo

__all__ = [
    "PURGE_CHUNK_ROWS",
    "STALE_WORKER_SECONDS",
    "CancelFeed",
    "JobStore",
    "OperatorStore",
    "ScheduleStore",
    "Store",
    "TransactionalStore",
    "new_lease_token",
]

# A worker silent this long crashed (a live one beats every few seconds): stores
# forget it on another worker's heartbeat, so dead workers do not pile up.
STALE_WORKER_SECONDS = 24 * 3600.0
# Rows one purge statement removes at most: short enough that it holds its
# locks (and writes its WAL or replication traffic) for milliseconds.
PURGE_CHUNK_ROWS = 1000


def new_lease_token() -> str:
    """A fencing value for one claim: 64 random bits, never reused in practice."""
    return secrets.token_hex(8)


@runtime_checkable
class JobStore(Protocol):
    """What a worker needs of a store: add, claim, renew, finish, wake-up and
    heartbeats. Open with ``open()`` before use, close with ``aclose()``."""

    async def open(self) -> None:
        """Connect and prepare (create tables, load scripts). Idempotent."""

    async def aclose(self) -> None:
        """Release connections. Idempotent."""

    async def add(self, records: Sequence[JobRecord]) -> builtins.list[str]:
        """Store new pending jobs, all or none, and wake waiting workers.

        Answers, for each record in order, the id of the job that stands for
        it: its own id, or, when its ``unique_key`` is held (by a stored job
        or by an earlier record of the same batch), the holder's id, in
        which case nothing is stored for it."""

    async def now(self) -> datetime:
        """The store's current time: what due times and leases are compared with."""

    async def claim(
        self,
        worker_id: str,
        limit: int,
        lease: timedelta,
        *,
        exclude: Collection[str] = (),
        queues: Collection[str] | None = None,
    ) -> builtins.list[JobRecord]:
        """Take up to ``limit`` due jobs of ``queues`` (None: every queue), none
        of a paused queue, under a new lease token; see the module docstring."""

    async def extend_leases(
        self, worker_id: str, leases: Mapping[str, str], lease: timedelta
    ) -> set[str]:
        """Push the lease of each job (id -> lease token) to the store's now + ``lease``
        where the token still holds it; returns the ids renewed."""

    async def finish(self, worker_id: str, outcomes: Sequence[JobOutcome]) -> set[str]:
        """Record outcomes of jobs still held under each outcome's ``lease_token``;
        returns the ids applied. A store whose reply can be lost on the wire
        (PostgreSQL, Redis) counts as applied, too, an outcome that an earlier
        send of it applied (the job in its state, under its token), so that
        the send again is not taken for a lost lease. All or nothing: a refused value
        (``StoreRejectedError``) writes none of the batch. Each applied
        outcome appends a ``JobEvent`` to the job's history (the store's
        now, the outcome's state, attempts and error, ``worker_id``, and the
        claim's ``last_try_at`` as ``started_at``), keeping the newest
        ``MAX_HISTORY_EVENTS``."""

    async def wait_for_work(self, timeout: float, *, queues: Collection[str] | None = None) -> None:
        """Return when a job of ``queues`` (None: every queue) that is not in a
        paused queue may be due: at once if one is, when a job is added or a
        queue resumed (a spurious wake-up is fine), when the earliest
        scheduled one falls due, or after ``timeout`` seconds."""

    async def heartbeat(self, worker: WorkerInfo) -> None:
        """Register or refresh a worker (upsert by id)."""

    async def remove_worker(self, worker_id: str) -> None:
        """Forget a worker that stopped."""


@runtime_checkable
class OperatorStore(Protocol):
    """What operators, the dashboard and the CLI read and change; a store
    that only runs jobs (``JobStore``) may leave it out.

    A transition appends a ``JobEvent`` (``worker`` None) to the job's
    history, in the same atomic step.
    """

    async def get(self, job_id: str) -> JobRecord | None:
        """One job, or None."""

    async def list_jobs(self, query: JobQuery, now: datetime) -> Page[JobRecord]:
        """One page of jobs matching ``query``, in ``(created_at, id)`` order
        (newest first unless ``query.newest_first`` is False), after
        ``query.cursor``. ``now`` splits pending jobs into scheduled and
        enqueued. Fetch ``limit + 1`` rows and build the page with ``page_of``.
        A page costs O(limit) (plus an index descent), whatever the number of
        jobs before it; see the module docstring for the one exception."""

    async def count_by_state(self, now: datetime) -> dict[JobState, int]:
        """How many jobs are in each state, pending ones split by ``now`` into
        scheduled and enqueued. Exact up to ``EXACT_COUNT_LIMIT`` per state;
        above it a store whose exact count would scan may answer with an
        estimate, so that a count never costs a full scan."""

    async def oldest_due_at(self) -> datetime | None:
        """The ``next_try_at`` of the pending job due first (overdue or not),
        None when none is pending: one probe of the due index."""

    async def finished_per_minute(self, since: datetime) -> builtins.list[tuple[datetime, int]]:
        """How many jobs reached a finished state in each minute (UTC, whole
        minutes, oldest first; minutes with none left out) from ``since`` on.
        Reads the finish-time index over that range only."""

    async def transition(
        self,
        job_id: str,
        expected: Collection[JobState],
        state: JobState,
        now: datetime,
    ) -> JobRecord | None:
        """Compare-and-set the state of one job, for manual operations.

        Applies only when the stored state is in ``expected``; a move to a
        pending state makes the job due at ``now``, a move to a finished state
        stamps ``finished_at``. Returns the updated record, or None.
        """

    async def delete(self, job_id: str) -> bool:
        """Remove one job; False when it did not exist."""

    async def purge(
        self,
        states: Collection[JobState],
        finished_before: datetime,
        *,
        limit: int | None = None,
    ) -> int:
        """Remove finished jobs in ``states`` finished before the given time.

        With ``limit``, one bounded chunk (at most ``limit`` rows in one short
        statement) for a caller that pauses between chunks; network stores
        let one caller at a time purge (a lock or lease), and a caller that
        does not get it removes nothing. Without it, everything, in chunks.
        """

    async def list_workers(self, seen_since: datetime) -> builtins.list[WorkerInfo]:
        """Workers whose last heartbeat is at or after ``seen_since``, by id."""

    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume a queue for every worker (stored; idempotent). A
        resume wakes waiting workers."""

    async def paused_queues(self) -> set[str]:
        """The queues paused now."""


@runtime_checkable
class CancelFeed(Protocol):
    """A store that tells workers at once when an operator cancels a running job."""

    def add_cancel_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(job_id)`` (in the store's event loop, never raising
        into the store) for every ``processing`` job that a ``transition`` to
        ``cancelled`` applied to, in any process sharing the store, from now
        until ``aclose``. Best effort: a notice may be lost on a dropped
        connection (the next renewal still finds the job cancelled), and a
        listener must treat an id it does not hold as noise."""


@runtime_checkable
class TransactionalStore(Protocol):
    """A store whose tables the application reaches from its own connection
    (PostgreSQL, SQLite), so that jobs are stored and completed inside the
    application's transaction: they exist if and only if it commits.

    Both methods write on ``connection`` and never commit, roll back or open
    a transaction of their own (a savepoint at most); what they wrote becomes
    visible to workers, and wakes them, when the application commits. A
    connection of a kind the store does not drive, on another database, or
    with no transaction open raises ``TransactionError`` before anything is
    written.
    """

    #: The connections ``connection`` may be, for messages and docs.
    transaction_connections: str

    async def add_in(self, connection: object, records: Sequence[JobRecord]) -> builtins.list[str]:
        """``add`` on the application's ``connection``, in its transaction."""

    async def finish_in(self, connection: object, worker_id: str, outcome: JobOutcome) -> bool:
        """Write one fenced outcome on ``connection``, in its transaction: a
        ``succeeded`` one finishes the job (as ``finish`` would); a
        ``processing`` one records only its ``done_handlers`` and keeps the
        lease. False, with nothing written, when the job is no longer
        ``processing`` under ``worker_id`` and ``outcome.lease_token``."""


@runtime_checkable
class ScheduleStore(Protocol):
    """Where recurring jobs are kept; every store implements it beside ``JobStore``.

    ``fire_schedule`` is the one atomic primitive: it moves a schedule's
    ``next_fire_at`` from the value the caller saw to the next tick and, in
    the same transaction, stores the tick's job. Of several schedulers that
    saw the same tick, exactly one succeeds.
    """

    async def now(self) -> datetime:
        """The store's current time: what schedulers compare ticks with."""

    async def upsert_schedule(self, schedule: ScheduleRecord) -> None:
        """Insert a schedule, or update the one with the same id in one atomic step.

        An update sets ``job_class``, ``cron_expression``, ``timezone``,
        ``payload`` (None included: a class schedule has none) and
        ``updated_at``; it replaces ``next_fire_at`` only when the cron
        expression or time zone changed (else the stored next tick stays,
        whatever a concurrent ``fire_schedule`` moved it to), and it never
        touches ``created_at``, ``last_fire_at`` or ``paused`` (a new schedule
        is stored as given, unpaused by default). So an update racing a tick
        can neither fire that tick twice nor lose ``last_fire_at``, and
        redeclaring a paused schedule does not resume it.
        """

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        """One schedule, or None."""

    async def list_schedules(self) -> builtins.list[ScheduleRecord]:
        """Every schedule, by id."""

    async def delete_schedule(self, schedule_id: str) -> bool:
        """Remove a schedule; False when it did not exist."""

    async def set_schedule_paused(self, schedule_id: str, paused: bool) -> bool:
        """Pause or resume a schedule in one atomic step, leaving the rest of
        it as it is; False when it does not exist."""

    async def fire_schedule(
        self,
        schedule_id: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        job: JobRecord | None,
    ) -> bool:
        """If the schedule's ``next_fire_at`` is still ``expected_next_fire_at``,
        set it to ``next_fire_at``, set ``last_fire_at`` to the expected value
        when ``job`` is given, and add ``job`` (None skips the tick): all or
        nothing. A paused schedule does not fire. Returns whether it applied."""


@runtime_checkable
class Store(JobStore, OperatorStore, ScheduleStore, Protocol):
    """What every backend shipped here implements: running jobs, operating
    them, and recurring jobs."""
