"""The Redis store: many workers on many machines sharing one Redis server.

Data layout. Every key starts with the hash tag ``{prefix}`` (setting
``prefix``, default ``masa_jobs``), so that a Redis Cluster would keep a
store's keys in one slot, where one script may touch them all::

    {p}:job:<id>           hash: name payload state created next attempts seq queue
                           priority [last_try error done owner lease token finished
                           headers history events ukey uscope uuntil]; history is the
                           JSON array of records.encode_history, events how many it
                           holds; ukey is the unique key while the job may hold it
    {p}:due:<queue>        zset of the pending jobs of one queue, scored by priority
                           * PRIORITY_SPAN_MS + next_try_at in whole ms; the member is
                           <us within that ms, 3 digits><attempts, 8 hex><seq, 16 hex>
                           <id>, so equal scores order by exact due time, then
                           attempts, then insertion (_redis_scripts)
    {p}:leases:<queue>     zset of the processing jobs of one queue, by lease expiry
    {p}:queues             set of the queues that may have pending or processing jobs
                           (what a claim of every queue walks; a claim that finds a
                           queue empty takes it out)
    {p}:paused             set of the paused queues
    {p}:unique             hash unique key -> id of the job that took it last; the
                           job holds it while its hash still has it as ukey (cleared
                           when a pending or active scope ends) and, for a period,
                           until uuntil on the server's clock
    {p}:cancel             pub/sub channel: the id of each processing job an operator
                           cancelled
    {p}:created:<group>    zset of ids by created_at, for listing (groups: pending,
                           processing, succeeded, dead, cancelled); Redis orders equal
                           scores by member, so it is in (created_at, id) order
    {p}:name:<group>:<name>  the same, for the jobs of one name
    {p}:done:<state>       zset by finished_at, for purge, counts and the finish rate
                           (succeeded, dead, cancelled)
    {p}:layout             the version of this layout (LAYOUT_VERSION)
    {p}:seq                counter of insertions
    {p}:purge-lock         the random token of the purger at work (SET NX PX)
    {p}:wake               list of wake-up tokens that idle workers pop (BLPOP)
    {p}:workers            hash worker id -> heartbeat JSON; {p}:workers:seen by last seen
    {p}:claims             hash worker id -> its last claim that took jobs: token, now,
                           lease expiry and ids, for a claimer whose reply was lost
    {p}:schedule:<id>      hash of a recurring job: job_class cron timezone next created
                           updated [last] [payload] [paused]; {p}:schedules is the set
                           of their ids

Timestamps are integer microseconds since the Unix epoch, exact in a sorted
set score (a double) until the year 2255; a field that is None is absent
(``_redis_codec``). A job written before queues existed has no queue,
priority or unique fields and reads as a job of the default queue.

Every operation is one round trip: the state changes are Lua scripts (atomic:
claim merges the due jobs and expired leases of the served, unpaused queues by
priority and due time and leases up to N of them under a new token; finish
records a whole batch where each token still holds its job; add stores a batch
and answers, for a record whose unique key another job holds, that job's id).
The scripts read the server's ``TIME`` for every due time and lease, so that
the workers' clocks decide nothing. A job hash keeps the ``token`` of the
claim that holds it, and after that claim's outcome too (so that an outcome
sent again finds it applied; only a processing job's token is a lease, and
reads show no other); a job leased before tokens existed has none, so only a
new claim (after its lease expires) can finish it. A claim answers with a
job's headers but not its history, which no worker reads and a job retried
often would carry on every claim; ``get`` and ``list_jobs`` have it.
``wait_for_work`` pops a wake-up token with BLPOP on a connection of its own,
with the worker's next claim pipelined behind it (``_redis_ahead``); adds,
retries and a queue's resume push tokens. Scripts run on connections the store
keeps itself (``_evalsha``), not through redis-py's pool. Cancel notices
(``add_cancel_listener``) come through a subscriber task on a connection of
its own, started by the first listener and stopped by ``aclose``; the
transition script publishes them. The store connects again by itself when
the server comes back; until then every method raises ``StoreUnavailableError`` (a
lost or refused connection, a timeout, a server that cannot write for now),
and the worker backs off and retries. A write whose values Redis or a script
refuses raises ``StoreRejectedError`` (a text that cannot be encoded, a batch
a script refuses); ``add`` raises ``DuplicateJobError`` for an id that exists
already or that a batch names twice, and any other error of redis-py is a
``StoreError``, each chained to redis-py's exception. A full server
(``maxmemory`` reached, OOM) is ``StoreUnavailableError`` like the rest:
writes succeed again once it has room.

Operator reads cost what they answer, never the size of the queue (a
long script would block every worker): ``list_jobs`` seeks its cursor in the
listing indexes by rank (O(log n)) and reads ``limit + 1`` entries per group;
only a page of scheduled or of enqueued jobs, which share the pending listing
index, may look past jobs of the other kind, at most ``LIST_SCAN_BUDGET``
entries per script call, calling again from where it stopped until the page is
full, so its total work is linear in the jobs it skips. Counts are ``ZCOUNT``
and ``ZCARD`` (for pending jobs, per queue and priority level present); the
finish rate counts minute by minute over its window. A store
written before the listing indexes existed gets them when it is first opened
by this version, in chunks (``{p}:layout`` records that it is done); so does
a store written before queues existed, whose single pending index and leases
move to those of the default queue. Processes of an older version must be
stopped first, since they do not keep the new layout.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
import math
import re
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast

import anyio
import redis.asyncio
from redis.asyncio.client import PubSub
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    ClusterDownError,
    MasterDownError,
    NoPermissionError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .._redact import redact
from ..exceptions import StoreError, StoreRejectedError, StoreUnavailableError
from ..queries import JobQuery, Page, page_of
from ..records import (
    FINISHED_STATES,
    JobOutcome,
    JobRecord,
    JobState,
    ScheduleRecord,
    WorkerInfo,
    put_back,
)
from ._cancel_listeners import CancelListeners
from ._errors import cut, duplicate_job, refuse_repeated_ids, translates_driver_errors
from ._listing import created_bounds_us, stored_states
from ._redis_ahead import (
    AHEAD_SLACK_SHARE,
    Ahead,
    ClaimPlan,
    blpop_then_claim,
    claim_reply,
    send_and_read,
)
from ._redis_codec import (
    CLAIM_FIELDS,
    DECODE_ERRORS,
    FIELDS,
    claimed_record,
    corrupt_outcome,
    job_args,
    micros,
    moment,
    outcome_arg,
    read_record,
    read_schedule,
    read_worker,
    schedule_args,
    us,
    worker_json,
)
from ._redis_scripts import SCRIPTS
from ._redis_settings import ENV_PREFIX, RedisStoreSettings, redacted
from ._unavailable import reports_unavailable
from .base import PURGE_CHUNK_ROWS, STALE_WORKER_SECONDS, new_lease_token

__all__ = ["RedisJobStore", "RedisStoreSettings"]

logger = logging.getLogger("masa_jobs.store")

# A wait for work never trusts the wake-up signal longer than this: a lost
# token costs at most one short poll.
MAX_SIGNAL_WAIT_SECONDS = 1.0
# BLPOP counts whole milliseconds, and a zero timeout would block forever.
MIN_BLOCK_SECONDS = 0.001
# Index entries one list script call examines at most per group: a page of
# scheduled (or enqueued) jobs that must look past many of the other kind
# takes several short calls (about 2 ms each on a small server) instead of one long one.
LIST_SCAN_BUDGET = 1000
# Minutes one finish-rate script call counts at most: a long window takes
# several short calls.
RATE_MINUTES_PER_CALL = 1000
# Job ids one re-index or re-layout call of the layout upgrade handles: a short script.
REINDEX_CHUNK = 500
# The data layout this version writes; a store of an older one is upgraded
# once on open (see the module docstring): "2" has the listing indexes, "3"
# the due index and leases per queue.
LAYOUT_VERSION = "3"
_LISTED_LAYOUT = "2"
# How long the cancel feed waits before it subscribes again after Redis
# failed it: a notice lost meanwhile is found at the worker's next renewal.
FEED_RETRY_SECONDS = 1.0
_ALL_GROUPS = ("pending", "processing", "succeeded", "dead", "cancelled")
# The indexes the listing upgrade reads job ids from (keys of layout 1): every
# job is in one.
_REINDEX_SOURCES = (
    "created:pending",
    "leases",
    "created:succeeded",
    "created:dead",
    "created:cancelled",
)
# What a call meets when Redis cannot be used: redis-py's ConnectionError (lost,
# reset or refused connections, a refused login, a server still loading its
# data) and TimeoutError, and the socket errors it may let through; and the
# replies of a server that cannot write for now (full, a read-only replica
# after a failover, a cluster or primary down). Any other error of redis-py is
# translated by _driver_error (a script's refusal of a batch is
# StoreRejectedError, the rest StoreError).
_UNAVAILABLE_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,
    TimeoutError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
    ClusterDownError,
    MasterDownError,
)
# Error codes of such replies that redis-py has no class for: a script running
# too long, snapshots failing (writes refused), too few replicas.
_UNAVAILABLE_CODES = ("BUSY", "MISCONF", "NOREPLICAS")
# The add scripts' reply for an id that exists already: DUPLICATE <index in the batch>.
_DUPLICATE = re.compile(r"DUPLICATE (\d+)\b")


class RedisJobStore:
    """A ``JobStore`` in Redis; see the module docstring for the data layout."""

    def __init__(self, settings: RedisStoreSettings) -> None:
        self._settings = settings
        self.address = redacted(settings.url)
        self._name = f"the redis store at {self.address}"
        tag = "{" + settings.prefix + "}:"
        self._tag = tag
        self._keys = [tag + "queues"]
        self._job_prefix = tag + "job:"
        self._wake_key = tag + "wake"
        self._cancel_channel = tag + "cancel"
        self._client: redis.asyncio.Redis | None = None
        self._blocking: redis.asyncio.Redis | None = None
        # Connections of the blocking client's settings for waits that carry a
        # claim (``_redis_ahead``), idle ones here; one per concurrent wait.
        self._wait_connections: list[AbstractConnection] = []
        # Idle connections of the client's settings for script calls (_evalsha).
        self._connections: list[AbstractConnection] = []
        # The claim a worker makes after its wait, and the jobs that claim took.
        self._plan: ClaimPlan | None = None
        self._ahead: Ahead | None = None
        # Whether the Redis user may end a blocked call, which a claim behind
        # a wait needs (see _may_unblock).
        self._claims_ahead = False
        # Each script's call (_call_script), by name, and its SHA1.
        self._scripts: dict[str, Callable[..., Awaitable[Any]]] = {}
        self._shas: dict[str, str] = {}
        self._cancel_listeners = CancelListeners()
        self._feed: asyncio.Task[None] | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> RedisJobStore:
        """Validate the ``store`` section (``backend`` is ignored); connects nothing."""
        return cls(RedisStoreSettings.from_mapping(settings))

    def __repr__(self) -> str:
        return f"RedisJobStore({self.address!r}, prefix={self._settings.prefix!r})"

    async def open(self) -> None:
        if self._client is not None:
            return
        timeout = self._settings.connect_timeout
        client, blocking = self._new_client(), self._new_client(blocking=True)
        try:
            with anyio.fail_after(timeout):
                await client.ping()
                for name, source in SCRIPTS.items():
                    script = client.register_script(source)
                    self._scripts[name] = partial(self._call_script, script)
                    self._shas[name] = await client.script_load(source)
                self._claims_ahead = await _may_unblock(client)
        except BaseException as exc:
            self._scripts.clear()
            with anyio.CancelScope(shield=True):
                await client.aclose()
                await blocking.aclose()
            if not isinstance(exc, RedisError | OSError | TimeoutError):
                raise
            raise self._unavailable(exc, f"{timeout:g} s") from exc
        self._client, self._blocking = client, blocking
        try:
            await self._upgrade_layout()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.aclose()
            raise

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._hand_back_ahead()
        client, blocking = self._client, self._blocking
        self._client = self._blocking = None
        self._scripts.clear()
        self._plan = None
        connections = self._wait_connections + self._connections
        self._wait_connections, self._connections = [], []
        for connection in connections:
            await connection.disconnect()
        await self._stop_feed()
        if client is not None:
            await client.aclose()
        if blocking is not None:
            await blocking.aclose()

    @reports_unavailable
    @translates_driver_errors
    async def add(self, records: Sequence[JobRecord]) -> builtins.list[str]:
        if not records:
            return []
        refuse_repeated_ids(self._name, records)
        try:
            return await self._add_once(records, resend=False)
        except RedisConnectionError:
            return await self._add_after_a_lost_reply(records)

    async def _add_once(
        self, records: Sequence[JobRecord], *, resend: bool = True
    ) -> builtins.list[str]:
        """The add script's answer for ``records``; ``resend``: send once more
        on a connection that broke (see ``send_and_read``)."""
        args: list[Any] = []
        for record in records:
            args += job_args(record)
        try:
            held = await self._run("add", args, resend=resend)
        except (ResponseError, UnicodeError) as exc:
            # The script checks the whole batch before its first write, and a
            # text that cannot be encoded is refused before anything is sent.
            if _is_unavailable(exc):
                raise
            raise self._refused_jobs(records, exc) from exc
        # The script names only the records answered with another job's id: a
        # reply of every id would cost more to read than the batch to send.
        answer = [record.id for record in records]
        for i in range(0, len(held), 2):
            answer[held[i]] = held[i + 1]
        return answer

    async def _add_after_a_lost_reply(self, records: Sequence[JobRecord]) -> builtins.list[str]:
        """Add ``records`` after the connection broke with the add sent: the
        server may have stored them and its reply been lost. Sent again as it
        was, the add would refuse the stored jobs as duplicates of themselves
        (and the caller, told that nothing was stored, would enqueue them
        twice). The script stores a batch whole or not at all, so the jobs
        found stored are the first send's; the others, answered then with
        another job's id, are added again and get their answer now. (A
        record whose id was stored before this call, which the first send
        refused with the whole batch, reads as stored: job ids are fresh, so
        only a caller that reuses one could meet this.)"""
        stored = await self._stored_ids(records)
        answers = {record.id: record.id for record in records if record.id in stored}
        rest = [record for record in records if record.id not in stored]
        if rest:
            ids = [record.id for record in rest]
            answers.update(zip(ids, await self._add_once(rest), strict=True))
        return [answers[record.id] for record in records]

    async def _stored_ids(self, records: Sequence[JobRecord]) -> set[str]:
        """The ids of ``records`` that the store holds a job of, in one round trip."""
        async with self._require().pipeline(transaction=False) as pipe:
            for record in records:
                pipe.exists(self._job_prefix + record.id)
            found = await pipe.execute()
        return {record.id for record, exists in zip(records, found, strict=True) if exists}

    @reports_unavailable
    @translates_driver_errors
    async def now(self) -> datetime:
        seconds, microseconds = await self._require().time()
        return moment(seconds * 1_000_000 + microseconds)

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
        served, lease_us = tuple(_served(queues)), micros(lease)
        claimed = await self._take_ahead(worker_id, limit, lease, exclude, served)
        if claimed is None:
            token = new_lease_token()
            args = [limit, lease_us, worker_id, token, *served, *set(exclude)]
            try:
                reply = await self._run("claim", args, resend=False)
            except RedisConnectionError:
                reply = await self._claim_after_a_lost_reply(args, worker_id, token)
            claimed = await self._claimed(reply, worker_id, token)
        # A claim that comes back short is followed by a wait, behind which
        # the next claim rides (_redis_ahead).
        self._plan = None
        if len(claimed) < limit:
            taken = frozenset(exclude).union(record.id for record in claimed)
            self._plan = ClaimPlan(worker_id, limit - len(claimed), lease_us, served, taken)
        return claimed

    async def _claim_after_a_lost_reply(
        self, args: builtins.list[Any], worker_id: str, token: str
    ) -> Any:
        """Claim after the connection broke with the claim sent: the server may
        have leased jobs under ``token`` and its reply been lost. Sent again, the
        claim would take other jobs, and the first ones would wait out their
        leases; the claim_again script answers with them instead, and a claim
        that took nothing (or never ran) is sent again."""
        again = await self._run("claim_again", [worker_id, token])
        return again if again else await self._run("claim", args)

    async def _claimed(self, reply: Any, worker_id: str, token: str) -> list[JobRecord]:
        """The jobs of a claim script's reply; one whose record cannot be read is dead."""
        now_us, expires_us, fields = reply
        now, expires_at = moment(now_us), moment(expires_us)
        claimed: list[JobRecord] = []
        corrupt: list[JobOutcome] = []
        moments: dict[str, datetime] = {}
        for i in range(0, len(fields), CLAIM_FIELDS):
            values = fields[i : i + CLAIM_FIELDS]
            try:
                claimed.append(claimed_record(values, worker_id, now, expires_at, token, moments))
            except DECODE_ERRORS as exc:
                corrupt.append(corrupt_outcome(values[0], values[1], now, token, exc))
                logger.error(
                    "job %s is dead: its stored record cannot be read (%r)", values[0], exc
                )
        if corrupt:
            await self.finish(worker_id, corrupt)
        return claimed

    async def _take_ahead(
        self,
        worker_id: str,
        limit: int,
        lease: timedelta,
        exclude: Collection[str],
        served: tuple[Any, ...],
    ) -> list[JobRecord] | None:
        """What the claim behind the last wait took, for this claim; None when
        there was no such claim or its jobs do not fit this one (handed back)."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return None
        plan = ahead.plan
        records = await self._claimed(ahead.reply, plan.worker_id, ahead.token)
        if not plan.fits(worker_id, micros(lease), served):
            await self._hand_back(plan.worker_id, records)
            return None
        held = set(exclude)
        kept = [record for record in records if record.id not in held][:limit]
        kept_ids = {record.id for record in kept}
        await self._hand_back(worker_id, [r for r in records if r.id not in kept_ids])
        if kept and time.monotonic() - ahead.earliest > lease.total_seconds() * AHEAD_SLACK_SHARE:
            # The worker reckons the lease from now: renewed, it ends later still.
            leases = {record.id: ahead.token for record in kept}
            renewed = await self.extend_leases(worker_id, leases, lease)
            kept = [record for record in kept if record.id in renewed]
        return kept

    async def _hand_back(self, worker_id: str, records: Sequence[JobRecord]) -> None:
        """Put claimed jobs that never ran back, due again, their attempt not counted."""
        if records:
            await self.finish(worker_id, [put_back(record, started=False) for record in records])

    @reports_unavailable
    @translates_driver_errors
    async def extend_leases(
        self, worker_id: str, leases: Mapping[str, str], lease: timedelta
    ) -> set[str]:
        if not leases:
            return set()
        args: list[Any] = [micros(lease)]
        for job_id, token in leases.items():
            args += (job_id, token)
        renewed: list[str] = await self._run("extend", args)
        return set(renewed)

    @reports_unavailable
    @translates_driver_errors
    async def finish(self, worker_id: str, outcomes: Sequence[JobOutcome]) -> set[str]:
        if not outcomes:
            return set()
        args: list[Any] = [worker_id]
        args += map(outcome_arg, outcomes)
        try:
            applied: list[str] = await self._run("finish", args)
        except (ResponseError, UnicodeError) as exc:
            # The script checks the whole batch before its first write, and a
            # text that cannot be encoded never leaves this process: nothing
            # of the batch was written.
            if _is_unavailable(exc):
                raise
            raise self._rejected(f"a batch of {len(outcomes)} outcome(s)", exc) from exc
        return set(applied)

    @reports_unavailable
    @translates_driver_errors
    async def get(self, job_id: str) -> JobRecord | None:
        fields = await self._require().hmget(self._job_prefix + job_id, FIELDS)
        return read_record(job_id, fields)

    @reports_unavailable
    @translates_driver_errors
    async def list_jobs(self, query: JobQuery, now: datetime) -> Page[JobRecord]:
        after = query.after
        position = None if after is None else (str(after.created_us), after.job_id)
        found: builtins.list[JobRecord] = []
        while True:
            most = query.limit + 1 - len(found)
            reply = await self._run("page", _page_args(query, now, most, position))
            for i in range(2, len(reply), 2):
                record = read_record(reply[i], reply[i + 1])
                if record is not None:
                    found.append(record)
            # A position comes back when a group ran out of its budget: the
            # page is complete up to it, and the next call goes on from there.
            if reply[0] is None or len(found) > query.limit:
                return page_of(found, query.limit)
            position = (reply[0], reply[1])

    @reports_unavailable
    @translates_driver_errors
    async def count_by_state(self, now: datetime) -> dict[JobState, int]:
        # The script answers in the order JobState declares the states.
        counts = await self._run("count", [us(now)])
        return dict(zip(JobState, counts, strict=True))

    @reports_unavailable
    @translates_driver_errors
    async def oldest_due_at(self) -> datetime | None:
        first = await self._run("oldest", [])
        return None if first is None else moment(first)

    @reports_unavailable
    @translates_driver_errors
    async def finished_per_minute(self, since: datetime) -> builtins.list[tuple[datetime, int]]:
        minutes: Counter[int] = Counter()
        for state in sorted(FINISHED_STATES):
            position: str | None = str(us(since))
            while position is not None:
                reply = await self._run("finished", [state.value, position, RATE_MINUTES_PER_CALL])
                position = reply[0]
                for i in range(1, len(reply), 2):
                    minutes[int(reply[i])] += int(reply[i + 1])
        return [(moment(minute), n) for minute, n in sorted(minutes.items())]

    @reports_unavailable
    @translates_driver_errors
    async def transition(
        self,
        job_id: str,
        expected: Collection[JobState],
        state: JobState,
        now: datetime,
    ) -> JobRecord | None:
        if state is JobState.PROCESSING:
            raise ValueError("only claim moves a job to processing")
        if not expected:
            return None
        args = [job_id, state.value, us(now), *(s.value for s in expected)]
        try:
            fields = await self._run("transition", args, resend=False)
        except RedisConnectionError:
            # The move may have been made and its reply lost: sent again, it
            # would be refused (the job is no longer in an expected state),
            # and the operator told the job cannot be moved. A job found in
            # the state asked for is answered as moved.
            found = await self.get(job_id)
            if found is not None and found.state is state:
                return found
            fields = await self._run("transition", args)
        return None if fields is None else read_record(job_id, fields)

    @reports_unavailable
    @translates_driver_errors
    async def delete(self, job_id: str) -> bool:
        try:
            return bool(await self._run("delete", [job_id], resend=False))
        except RedisConnectionError:
            # Deleted, its reply lost: sent again, the delete would answer
            # that there is no such job. A job that is gone is answered as
            # deleted (so is an unknown id whose reply was lost).
            if not await self._require().exists(self._job_prefix + job_id):
                return True
            return bool(await self._run("delete", [job_id]))

    @reports_unavailable
    @translates_driver_errors
    async def purge(
        self,
        states: Collection[JobState],
        finished_before: datetime,
        *,
        limit: int | None = None,
    ) -> int:
        wanted = [state.value for state in states if state in FINISHED_STATES]
        if not wanted:
            return 0
        before = us(finished_before)
        if limit is not None:
            # One chunk under the purge lock ({p}:purge-lock), which the script
            # takes (SET NX PX with a token of ours), and releases if it still
            # holds our token: a purger that finds it held removes nothing,
            # and a crash between two calls cannot leave it behind.
            if limit <= 0:
                return 0
            removed: int = await self._run("purge", [before, limit, new_lease_token(), *wanted])
            return removed
        total = 0
        while True:
            removed = await self._run("purge", [before, PURGE_CHUNK_ROWS, "", *wanted])
            total += removed
            if removed < PURGE_CHUNK_ROWS:
                return total

    @reports_unavailable
    @translates_driver_errors
    async def wait_for_work(self, timeout: float, *, queues: Collection[str] | None = None) -> None:
        # Jobs the worker's claim just handed over start before this wait
        # sends anything.
        await anyio.lowlevel.checkpoint()
        if self._ahead is not None:
            if not self._ahead.empty:
                return  # the last wait's claim took jobs that no claim asked for yet
            self._ahead = None
        # The earliest due time and the server's now come from one script: the
        # wait is measured on the server's clock, whatever this host's says.
        # Without a due time (no job, or only paused queues) the wait ends with
        # a wake-up token or the fallback poll, never at once.
        served = tuple(_served(queues))
        probe_sent = time.monotonic()
        now_us, first_pending, first_lease = await self._run("probe", list(served))
        due_us = min(float(s) for s in (first_pending, first_lease, math.inf) if s is not None)
        wait = min(timeout, MAX_SIGNAL_WAIT_SECONDS, (due_us - int(now_us)) / 1e6)
        if wait <= 0:
            return
        block = max(round(wait, 3), MIN_BLOCK_SECONDS)
        plan = self._plan
        if plan is not None and plan.served == served and self._claims_ahead:
            self._ahead = await self._wait_then_claim(plan, block, probe_sent, int(now_us))
            return
        blocking = self._blocking
        assert blocking is not None  # _run checked that the store is open
        await blocking.blpop([self._wake_key], timeout=block)

    async def _wait_then_claim(
        self, plan: ClaimPlan, block: float, probe_sent: float, probe_now_us: int
    ) -> Ahead | None:
        """BLPOP with the plan's claim behind it (_redis_ahead). The probe
        ran on the server at ``probe_now_us``, after ``probe_sent`` here."""
        blocking = self._blocking
        assert blocking is not None  # _run checked that the store is open
        token = new_lease_token()
        sha = self._shas["claim"]
        claim = (sha, len(self._keys), *self._keys, self._tag, *plan.args(token))
        pooled, pool = self._wait_connections, blocking.connection_pool
        # A connection of the pool's settings, kept outside the pool: this
        # code sends and reads on it itself.
        connection = pooled.pop() if pooled else pool.connection_class(**pool.connection_kwargs)
        sent = time.monotonic()
        reply: Any = None
        usable = False

        async def after_cancel(connection: AbstractConnection, client_id: int) -> None:
            await self._unblock_and_hand_back(connection, client_id, plan.worker_id, token)

        try:
            reply = await blpop_then_claim(
                connection, ("BLPOP", self._wake_key, block), claim, after_cancel
            )
            usable = True
        except RedisConnectionError:
            # The claim behind the pop may have leased jobs, its reply lost.
            reply = await self._run("claim_again", [plan.worker_id, token])
            if not reply:
                raise
        finally:
            if usable:
                pooled.append(connection)
            else:
                with anyio.CancelScope(shield=True):
                    await connection.disconnect()
        if reply is None:
            return None
        # When the claim ran, on this host's clock: at the earliest the probe's
        # send plus the server's time from the probe to the claim.
        ran_at = probe_sent + (int(reply[0]) - probe_now_us) / 1e6
        return Ahead(plan, token, reply, min(time.monotonic(), max(sent, ran_at)))

    async def _unblock_and_hand_back(
        self, connection: AbstractConnection, client_id: int, worker_id: str, token: str
    ) -> None:
        """For a cancelled wait: end its pop and hand back what the claim
        behind it took. A failure is logged, not raised (the cancellation goes
        on), and leaves the jobs under leases that expire."""
        try:
            with anyio.fail_after(self._settings.command_timeout):
                await self._require().client_unblock(client_id)
                await connection.read_response(disconnect_on_error=False)
                reply = await claim_reply(connection)
                if reply is not None:
                    await self._hand_back(worker_id, await self._claimed(reply, worker_id, token))
        except Exception as exc:
            logger.warning(
                "%s: a cancelled wait could not hand back the jobs claimed behind it (%s); "
                "they run when their leases expire",
                self._name,
                redact(str(exc)),
            )

    async def _hand_back_ahead(self) -> None:
        """On close: hand back the jobs a wait's claim took that no claim asked for."""
        ahead, self._ahead = self._ahead, None
        if ahead is None or ahead.empty or self._client is None:
            return
        worker_id = ahead.plan.worker_id
        try:
            await self._hand_back(
                worker_id, await self._claimed(ahead.reply, worker_id, ahead.token)
            )
        except Exception as exc:
            logger.warning(
                "%s: could not hand back %d claimed job(s) on close (%s); they run when "
                "their leases expire",
                self._name,
                len(ahead.reply[2]) // CLAIM_FIELDS,
                redact(str(exc)),
            )

    @reports_unavailable
    @translates_driver_errors
    async def set_queue_paused(self, queue: str, paused: bool) -> None:
        await self._run("pause_queue", [queue, "1" if paused else ""])

    @reports_unavailable
    @translates_driver_errors
    async def paused_queues(self) -> set[str]:
        # The client decodes replies: the members are texts.
        return cast(set[str], await self._require().smembers(self._tag + "paused"))

    def add_cancel_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(job_id)`` for each processing job a transition cancels,
        here or in any process on the same prefix, until ``aclose``. The first
        listener starts the subscriber task; a notice published before it
        subscribed is not heard (the worker learns at its next renewal)."""
        self._cancel_listeners.add(listener)
        if self._feed is None:
            self._feed = asyncio.get_running_loop().create_task(self._follow_cancels())

    @reports_unavailable
    @translates_driver_errors
    async def heartbeat(self, worker: WorkerInfo) -> None:
        stale_before = worker.last_seen_at - timedelta(seconds=STALE_WORKER_SECONDS)
        seen = us(worker.last_seen_at)
        args = [worker.id, worker_json(worker), seen, us(stale_before)]
        await self._run("heartbeat", args)

    @reports_unavailable
    @translates_driver_errors
    async def list_workers(self, seen_since: datetime) -> builtins.list[WorkerInfo]:
        reply = await self._run("workers", [us(seen_since)])
        workers = [read_worker(entry) for entry in reply if entry is not None]
        return sorted(workers, key=lambda w: w.id)

    @reports_unavailable
    @translates_driver_errors
    async def remove_worker(self, worker_id: str) -> None:
        await self._run("forget", [worker_id])

    @reports_unavailable
    @translates_driver_errors
    async def upsert_schedule(self, schedule: ScheduleRecord) -> None:
        await self._run("upsert_schedule", schedule_args(schedule))

    @reports_unavailable
    @translates_driver_errors
    async def get_schedule(self, schedule_id: str) -> ScheduleRecord | None:
        found = await self._schedules([schedule_id])
        return found[0] if found else None

    @reports_unavailable
    @translates_driver_errors
    async def list_schedules(self) -> builtins.list[ScheduleRecord]:
        return sorted(await self._schedules([]), key=lambda s: s.id)

    @reports_unavailable
    @translates_driver_errors
    async def delete_schedule(self, schedule_id: str) -> bool:
        return bool(await self._run("delete_schedule", [schedule_id]))

    @reports_unavailable
    @translates_driver_errors
    async def set_schedule_paused(self, schedule_id: str, paused: bool) -> bool:
        return bool(await self._run("pause_schedule", [schedule_id, "1" if paused else ""]))

    @reports_unavailable
    @translates_driver_errors
    async def fire_schedule(
        self,
        schedule_id: str,
        expected_next_fire_at: datetime,
        next_fire_at: datetime,
        job: JobRecord | None,
    ) -> bool:
        args = [schedule_id, us(expected_next_fire_at), us(next_fire_at)]
        if job is None:
            return bool(await self._run("fire_schedule", args))
        args += job_args(job)
        try:
            return bool(await self._run("fire_schedule", args))
        except (ResponseError, UnicodeError) as exc:
            if _is_unavailable(exc):
                raise
            raise self._refused_jobs((job,), exc, tick=True) from exc

    async def _follow_cancels(self) -> None:
        """The subscriber task, on a client of its own until ``aclose`` cancels it."""
        client = self._new_client()
        try:
            async with client.pubsub(ignore_subscribe_messages=True) as pubsub:
                await self._relay_cancels(pubsub)
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()

    async def _relay_cancels(self, pubsub: PubSub) -> None:
        """Hands each cancelled job id to the listeners. A connection redis-py
        loses is opened (and subscribed) again by the next read; while Redis
        cannot be reached, the feed tries every FEED_RETRY_SECONDS."""
        failing = False
        while True:
            try:
                if not pubsub.subscribed:
                    await pubsub.subscribe(self._cancel_channel)
                message = await pubsub.get_message(timeout=None)
            except (RedisError, OSError) as exc:
                if not failing:
                    logger.warning(
                        "%s: cancel notices stopped (%s); trying again every %g s",
                        self._name,
                        redact(str(exc)),
                        FEED_RETRY_SECONDS,
                    )
                failing = True
                await anyio.sleep(FEED_RETRY_SECONDS)
                continue
            if failing:
                logger.info("%s: cancel notices resumed", self._name)
                failing = False
            if message is not None and message["type"] == "message":
                self._cancel_listeners.tell(message["data"])

    async def _stop_feed(self) -> None:
        feed, self._feed = self._feed, None
        self._cancel_listeners.clear()
        if feed is None:
            return
        feed.cancel()
        with anyio.CancelScope(shield=True):
            await asyncio.gather(feed, return_exceptions=True)

    @reports_unavailable
    @translates_driver_errors
    async def _upgrade_layout(self) -> None:
        """Bring a store of an older layout to this one, once, in short scripts."""
        client = self._require()
        layout_key = self._tag + "layout"
        layout = await client.get(layout_key)
        if layout == LAYOUT_VERSION:
            return
        if layout != _LISTED_LAYOUT:
            await self._build_listing_indexes()
            await client.set(layout_key, _LISTED_LAYOUT)
        # The pending index and leases of layout 2 move to the default queue's.
        while await self._run("relayout", [REINDEX_CHUNK]):
            pass
        await client.set(layout_key, LAYOUT_VERSION)

    async def _build_listing_indexes(self) -> None:
        """Build the listing indexes of a store written before they existed:
        ZSCAN (which returns every member present throughout the scan) hands the
        ids over in chunks, each indexed by one short script as its job is then."""
        client = self._require()
        for source in _REINDEX_SOURCES:
            cursor = 0
            while True:
                cursor, entries = await client.zscan(
                    self._tag + source, cursor, count=REINDEX_CHUNK
                )
                if entries:
                    await self._run("reindex", [member for member, _ in entries])
                if cursor == 0:
                    break

    async def _schedules(self, ids: builtins.list[str]) -> builtins.list[ScheduleRecord]:
        reply = await self._run("schedules", ids)
        found = (read_schedule(reply[i], reply[i + 1]) for i in range(0, len(reply), 2))
        return [schedule for schedule in found if schedule is not None]

    def _new_client(self, *, blocking: bool = False) -> redis.asyncio.Redis:
        settings = self._settings
        # A blocking pop holds its reply back for up to MAX_SIGNAL_WAIT_SECONDS.
        extra = MAX_SIGNAL_WAIT_SECONDS if blocking else 0.0
        return redis.asyncio.Redis.from_url(
            settings.url,
            decode_responses=True,
            socket_connect_timeout=settings.connect_timeout,
            socket_timeout=settings.command_timeout + extra,
            # One immediate retry on a broken connection (a pooled one the
            # server closed); none on a timeout, after which the command may
            # have run.
            retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        )

    def _unavailable(self, exc: BaseException, timeouts: str) -> StoreUnavailableError:
        timed_out = isinstance(exc, TimeoutError | RedisTimeoutError)
        reason = f"no answer within {timeouts}" if timed_out else redact(str(exc))
        return StoreUnavailableError(
            f"the redis store cannot use Redis at {self.address} ({reason}): check "
            f"store.url ({ENV_PREFIX}URL) and that the server is running and reachable"
        )

    def _rejected(self, batch: str, exc: Exception) -> StoreRejectedError:
        return StoreRejectedError(
            f"the redis store at {self.address} refused {batch} and stored none of it: "
            f"{redact(str(exc))}"
        )

    def _refused_jobs(
        self, records: Sequence[JobRecord], exc: Exception, *, tick: bool = False
    ) -> StoreError:
        """The error for new jobs the add script (or the encoder) refused."""
        duplicate = _DUPLICATE.match(str(exc))
        if duplicate is not None and int(duplicate[1]) < len(records):
            return duplicate_job(self._name, records[int(duplicate[1])].id, tick=tick)
        return self._rejected(f"a batch of {len(records)} job(s)", exc)

    def _driver_error(self, call: str, exc: Exception) -> StoreError | None:
        """The error for any other exception of redis-py; see ``translates_driver_errors``."""
        if _is_unavailable(exc):
            return None  # reports_unavailable words it
        if isinstance(exc, UnicodeError):
            return self._rejected(f"the values of {call}", exc)
        if isinstance(exc, NoPermissionError):
            return StoreError(
                f"the redis store at {self.address} may not run {call} ({cut(redact(str(exc)))}): "
                "the Redis user needs the commands and keys of the store; grant them in "
                "its ACL (see docs/stores/redis.md)"
            )
        if not isinstance(exc, RedisError):
            return None
        return StoreError(
            f"the redis store at {self.address}: {call} failed ({type(exc).__name__}: "
            f"{cut(redact(str(exc)))}). This is neither a connection failure nor a refused value: "
            "check the server's log, and that nothing else writes keys with the store's prefix"
        )

    def _unavailable_after(self, exc: Exception) -> StoreUnavailableError | None:
        """``StoreUnavailableError`` for a call that met a connection-level failure."""
        if not _is_unavailable(exc):
            return None
        if self._client is None:
            # aclose() ran during the call and closed its connection.
            return StoreUnavailableError(
                f"the redis store at {self.address} was closed during the call "
                f"({redact(str(exc))}): use it only while it is open, inside "
                "MasaApp.lifespan() or before store.aclose()"
            )
        settings = self._settings
        return self._unavailable(
            exc,
            f"connect_timeout {settings.connect_timeout:g} s "
            f"or command_timeout {settings.command_timeout:g} s",
        )

    def _require(self) -> redis.asyncio.Redis:
        if self._client is None:
            raise StoreError(
                f"the redis store at {self.address} is not open: use it inside "
                "MasaApp.lifespan() or call `await store.open()` first"
            )
        return self._client

    async def _run(self, script: str, args: builtins.list[Any], *, resend: bool = True) -> Any:
        self._require()
        return await self._scripts[script](keys=self._keys, args=[self._tag, *args], resend=resend)

    async def _call_script(
        self,
        script: AsyncScript,
        *,
        keys: builtins.list[str],
        args: builtins.list[Any],
        resend: bool = True,
    ) -> Any:
        client = self._require()
        call = [len(keys), *keys, *args]
        try:
            return await self._evalsha(client, script.sha, call, resend)
        except NoScriptError:
            # The server lost its script cache (a restart, SCRIPT FLUSH): load
            # it again and call it as before, on a connection of this store's
            # own, where ``resend`` still holds (redis-py's own call would send
            # an add again after a lost reply).
            await client.script_load(script.script)
            return await self._evalsha(client, script.sha, call, resend)

    async def _evalsha(
        self, client: redis.asyncio.Redis, sha: str, args: builtins.list[Any], resend: bool
    ) -> Any:
        """One script call on a connection of this store's own (``_connections``).
        The client's pool checks each connection out and back in, under a lock
        and with a probe of its socket that takes a turn of the event loop:
        on the way to every job, that was more work than the call itself.
        ``resend``: see ``send_and_read``."""
        idle, pool = self._connections, client.connection_pool
        if idle:
            connection = idle.pop()
        else:
            # The call's timeout is ours: redis-py would send in a task of its
            # own (asyncio.wait_for) to time the send, a turn of the event loop.
            kwargs = {**pool.connection_kwargs, "socket_timeout": None}
            connection = pool.connection_class(**kwargs)
        usable = True  # until something is sent: a text that cannot be encoded sends nothing
        try:
            packed = connection.pack_command("EVALSHA", sha, *args)
            usable = False
            try:
                async with asyncio.timeout(self._settings.command_timeout):
                    reply = await send_and_read(connection, packed, resend=resend)
            except ResponseError:
                usable = True  # an error reply, read whole
                raise
            usable = True
            return reply
        finally:
            if usable and self._client is client:
                idle.append(connection)
            else:
                with anyio.CancelScope(shield=True):
                    await connection.disconnect()


def _is_unavailable(exc: Exception) -> bool:
    """Whether ``exc`` means that Redis cannot serve now (the same call may succeed later)."""
    if isinstance(exc, _UNAVAILABLE_ERRORS):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_UNAVAILABLE_CODES)


async def _may_unblock(client: redis.asyncio.Redis) -> bool:
    """Whether this Redis user may run CLIENT ID and CLIENT UNBLOCK, with
    which a cancelled wait ends the pop that its claim waits behind
    (``_redis_ahead``); without them a wait carries no claim. Unblocking its
    own connection, which waits for nothing, changes nothing."""
    try:
        await client.client_unblock(await client.client_id())
    except NoPermissionError:
        return False
    return True


def _served(queues: Collection[str] | None) -> builtins.list[Any]:
    """The queues a claim or probe serves, as the scripts take them: how many
    (-1 for every queue), then each name once."""
    if queues is None:
        return [-1]
    names = list(dict.fromkeys(queues))
    return [len(names), *names]


def _page_args(
    query: JobQuery, now: datetime, most: int, position: tuple[str, str] | None
) -> builtins.list[Any]:
    """The page script's arguments: at most ``most`` jobs after ``position``."""
    stored = stored_states(query)
    groups = _ALL_GROUPS if stored is None else _groups(stored)
    start, end = created_bounds_us(query)
    at, at_id = position or ("", "")
    return [
        "desc" if query.newest_first else "asc",
        most,
        "" if start is None else start,
        "" if end is None else end,
        at,
        at_id,
        _pending_filter(query.states),
        us(now),
        LIST_SCAN_BUDGET,
        "" if query.name is None else "+" + query.name,
        *groups,
    ]


def _pending_filter(states: frozenset[JobState] | None) -> str:
    """Which pending jobs a query keeps: '' for both kinds (or none), else the one."""
    if states is None:
        return ""
    kinds = states & {JobState.SCHEDULED, JobState.ENQUEUED}
    return next(iter(kinds)).value if len(kinds) == 1 else ""


def _groups(states: Collection[JobState]) -> tuple[str, ...]:
    """The listing groups of stored states, in ``_ALL_GROUPS`` order."""
    wanted = {"pending" if state.is_pending else state.value for state in states}
    return tuple(group for group in _ALL_GROUPS if group in wanted)
