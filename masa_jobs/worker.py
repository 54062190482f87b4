"""The worker: claim due jobs, run them, record what happened.

One claim loop feeds a fixed set of ``concurrency`` consumer tasks through a
``JobFeed`` (a task per job would cap throughput at the rate anyio can spawn
tasks). Outcomes are collected and written back in batches by one
flusher, so a durable store pays one round trip for many jobs.

Leases are fenced: every claim hands out a lease token, and renewals and
outcomes carry it, so a worker that froze or lost the store past its lease
cannot overwrite the run of the worker that took the job over; such a
refusal is logged (``lease lost``) and counted (``HeldJobs``). A prefetched
job whose lease may have lapsed is renewed before it starts, and dropped
unrun if that is refused; claims exclude the jobs this worker still holds.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from uuid import uuid4

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus

from ._completion import Completions
from ._job_feed import JobFeed
from ._leases import HeldJobs
from ._observe import observers_for
from ._outage import OutageLog
from ._queue_slots import ClaimRound, QueueSlots
from ._text import clean_error
from .executor import JobExecutor
from .options import BackgroundJobOptions
from .records import (
    FINISHED_STATES,
    JobOutcome,
    JobRecord,
    JobState,
    WorkerInfo,
    put_back,
    utcnow,
)
from .registry import JobRegistry
from .retry import RetryPolicy
from .stores.base import (
    PURGE_CHUNK_ROWS,
    CancelFeed,
    JobStore,
    OperatorStore,
    TransactionalStore,
)

__all__ = ["Worker"]

logger = logging.getLogger("masa_jobs.worker")

# Lease renewals (and heartbeats) per lease period: two may fail before a
# live job's lease lapses.
LEASE_RENEWALS_PER_PERIOD = 3
# How often finished jobs past their retention are purged, on average; each
# worker draws its own interval around it so that workers do not purge together.
MAINTENANCE_INTERVAL_SECONDS = 60.0
MAINTENANCE_JITTER = 0.5
# Pause between purge chunks: claims and outcomes get the store in between.
PURGE_PAUSE_SECONDS = 0.1
# Back-off after a store error, doubling up to the poll interval.
FIRST_ERROR_BACKOFF_SECONDS = 0.05
# Pause after claims that found nothing although the store said a job was
# due: that job is this worker's own (its lease lapsed, renewal pending) or
# another claimer's in flight. Doubling up to the cap, so the loop never spins.
EMPTY_CLAIM_PAUSE_SECONDS = 0.005
MAX_EMPTY_CLAIM_PAUSE_SECONDS = 0.5
# Prefetched jobs are topped up once this fraction (1/n) of them has started,
# a batch at most at a time.
PREFETCH_TOP_UP_DIVISOR = 2
# With the automatic prefetch, jobs whose runs take less than this on average
# are claimed batches ahead: a job waits behind at most a few such runs, and
# a round trip per job or two would cost more than the jobs themselves.
SHORT_RUN_SECONDS = 0.01
# Batches held ahead while runs are short: a whole batch is claimed once one
# has started, and the other one keeps the consumers busy during that claim.
# With one batch ahead, claims were cut to what had started by then (20 of a
# batch of 30 at the defaults), and each carries a fixed cost.
SHORT_RUN_BATCHES_AHEAD = 2
# Weight of the latest run in the average run time (an exponential average).
RUN_TIME_WEIGHT = 0.1
# A stopping worker gives up recording outcomes after this long; the jobs
# concerned come back when their leases expire.
FINAL_FLUSH_TIMEOUT_SECONDS = 10.0
# The reason a job is dead when the store refused its outcome, as it was.
REFUSED_OUTCOME_REASON = "the store refused this job's outcome"
# The dead-job log line carries at most this much of the reason.
LOGGED_REASON_LENGTH = 500


def default_worker_id() -> str:
    """``host:pid:random``: unique across machines, readable in logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"


class Worker:
    """Runs jobs from one store until ``stop()`` is called.

    ``clock`` is this process's wall clock (heartbeat times, the purge
    cut-off); tests skew it to show that it never decides who owns a job.
    """

    def __init__(
        self,
        store: JobStore,
        registry: JobRegistry,
        options: BackgroundJobOptions,
        *,
        worker_id: str | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._options = options
        self._clock = clock
        # Metrics and traces, or None when nothing watches (see _observe).
        self._observers = observers_for(options)
        self.worker_id = worker_id or default_worker_id()
        self._lease = timedelta(seconds=options.lease_timeout)
        self._prefetch = _Prefetch(options)
        self._slots = QueueSlots(options.queue_plan)
        self._cancel_listening = False
        self._renew_now: anyio.Event | None = None
        self._running = False
        self._stop_requested = False
        self._claim_scope: anyio.CancelScope | None = None
        # The cancel scope of each running job, by id: shutdown cancels them
        # all, a lost lease (an operator's cancel, or another claim) its own.
        self._job_scopes: dict[str, anyio.CancelScope] = {}
        # Claimed jobs whose outcome is not stored yet: their leases are renewed.
        self._held = HeldJobs(
            store,
            self.worker_id,
            options.lease_timeout,
            options.redact_error,
            on_lost=None if self._observers is None else self._observers.lease_lost,
        )
        self._executor = JobExecutor(
            registry,
            RetryPolicy.from_options(options),
            unknown_job_timeout=options.unknown_job_timeout,
            job_timeout=options.job_timeout,
            observers=self._observers,
            completions=self._completions(store),
        )
        self._outcomes: list[JobOutcome] = []
        self._in_flight = 0
        self._consumers_done = False
        self._outcome_added: anyio.Event | None = None
        self._slot_freed: anyio.Event | None = None
        self._error_backoff = FIRST_ERROR_BACKOFF_SECONDS
        self._claim_log = self._outage_log("claiming jobs")
        self._wait_log = self._outage_log("waiting for new jobs")
        self._beat_log = self._outage_log("writing its heartbeat")
        self._outcome_log = self._outage_log("recording outcomes")
        self._purge_log = self._outage_log("purging old jobs")

    def _completions(self, store: JobStore) -> Completions | None:
        """What handlers' ``complete_in`` writes through, on a store that can."""
        if not isinstance(store, TransactionalStore):
            return None
        return Completions(store, self.worker_id, self._held.completed_in_transaction)

    def _outage_log(self, activity: str) -> OutageLog:
        return OutageLog(
            logger,
            f"worker {self.worker_id}: {activity}",
            redact_error=self._options.redact_error,
        )

    @property
    def running(self) -> bool:
        return self._running

    @property
    def leases_lost(self) -> int:
        """How many held jobs this worker lost to a lapsed lease since it was built."""
        return self._held.leases_lost

    def stop(self) -> None:
        """Stop claiming; running jobs get ``shutdown_timeout`` to finish."""
        self._stop_requested = True
        if self._claim_scope is not None:
            self._claim_scope.cancel()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until ``stop()``; returns once running jobs are finished or put back."""
        if self._running:
            raise RuntimeError(f"worker {self.worker_id} is running already")
        self._reset()
        self._running = True
        self._listen_for_cancels()
        logger.info("worker %s started", self.worker_id)
        try:
            async with anyio.create_task_group() as flusher:
                flusher.start_soon(self._flush_loop)
                try:
                    await self._serve(task_status)
                finally:
                    self._consumers_done = True
                    self._signal_outcome()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._release_abandoned()
            raise
        finally:
            self._running = False
            logger.info("worker %s stopped", self.worker_id)

    def _reset(self) -> None:
        self._stop_requested = False
        self._consumers_done = False
        self._held.clear()
        self._outcomes.clear()
        self._job_scopes.clear()
        self._slots.clear()
        self._in_flight = 0

    async def _serve(self, task_status: TaskStatus[None]) -> None:
        feed = JobFeed()
        async with anyio.create_task_group() as services:
            services.start_soon(self._heartbeat_loop)
            services.start_soon(self._maintenance_loop)
            async with anyio.create_task_group() as consumers:
                for _ in range(self._options.concurrency):
                    consumers.start_soon(self._consume, feed)
                task_status.started()
                try:
                    await self._claim_loop(feed)
                finally:
                    feed.close()
                services.start_soon(self._cancel_running_after, self._options.shutdown_timeout)
            services.cancel_scope.cancel()

    # -- claiming -----------------------------------------------------------------------

    async def _claim_loop(self, feed: JobFeed) -> None:
        empty_claims = 0
        with anyio.CancelScope() as self._claim_scope:
            while not self._stop_requested:
                free = self._prefetch.held_cap - self._in_flight
                wanted = min(self._options.batch_size, free)
                rounds = self._slots.rounds(wanted) if self._worth_claiming(free) else []
                if not rounds:
                    # Every slot, or every served queue's cap, is taken (or
                    # too few slots are free to be worth a claim yet).
                    self._slot_freed = anyio.Event()
                    await self._slot_freed.wait()
                    continue
                jobs, starved = await self._claim_rounds(rounds, wanted)
                self._in_flight += len(jobs)
                for job in jobs:
                    feed.put(job)
                empty_claims = 0 if jobs else empty_claims + 1
                if empty_claims > 1:
                    pause = EMPTY_CLAIM_PAUSE_SECONDS * 2 ** min(empty_claims - 2, 10)
                    await anyio.sleep(min(pause, MAX_EMPTY_CLAIM_PAUSE_SECONDS))
                if starved:
                    await self._wait_for_work(_served(rounds))
        self._claim_scope = None

    def _worth_claiming(self, free: int) -> bool:
        """Claim at once when a consumer is idle; otherwise wait until enough
        prefetched jobs have started to claim a chunk."""
        if free <= 0:
            return False
        return self._in_flight < self._options.concurrency or free >= self._prefetch.top_up_at

    async def _claim_rounds(
        self, rounds: list[ClaimRound], wanted: int
    ) -> tuple[list[JobRecord], bool]:
        """Claim round by round (queue by queue, in the order served) until
        the slots are full; also says whether every round came back short,
        when the worker waits for work instead of claiming again at once."""
        if len(rounds) == 1:
            queues, asked = rounds[0]
            jobs = await self._claim(asked, queues)
            return jobs, len(jobs) < asked
        jobs = []
        remaining = wanted
        starved = True
        for queues, room in rounds:
            asked = min(room, remaining)
            if asked <= 0:
                starved = False
                break
            got = await self._claim(asked, queues)
            jobs.extend(got)
            remaining -= len(got)
            starved = starved and len(got) < asked
        return jobs, starved

    async def _claim(self, wanted: int, queues: tuple[str, ...] | None) -> list[JobRecord]:
        """Claim up to ``wanted`` jobs; on a store error, back off and return none."""
        sent = time.monotonic()
        try:
            # Shielded: a job claimed must reach the consumers, or it would
            # sit under a lease until the lease expired. The jobs this worker
            # still holds are excluded: it never takes back its own job.
            with anyio.CancelScope(shield=True):
                jobs = await self._store.claim(
                    self.worker_id, wanted, self._lease, exclude=tuple(self._held), queues=queues
                )
        except Exception as exc:
            self._claim_log.failed(exc)
            await self._back_off()
            return []
        self._claim_log.succeeded()
        self._error_backoff = FIRST_ERROR_BACKOFF_SECONDS
        self._held.add(jobs, sent)
        self._slots.claimed(jobs)
        return jobs

    async def _wait_for_work(self, queues: tuple[str, ...] | None) -> None:
        try:
            if self._slots.capped:
                await self._wait_for_work_or_room(queues)
            else:
                await self._store.wait_for_work(self._options.poll_interval, queues=queues)
        except Exception as exc:
            self._wait_log.failed(exc)
            await self._back_off()
        else:
            self._wait_log.succeeded()

    async def _wait_for_work_or_room(self, queues: tuple[str, ...] | None) -> None:
        """Wait for work in the queues with room, or for a job of a queue at
        its cap to finish (which makes room there)."""
        slot_freed = self._slot_freed = anyio.Event()
        failed: list[Exception] = []
        async with anyio.create_task_group() as waiters:

            async def wait_for_work() -> None:
                try:
                    await self._store.wait_for_work(self._options.poll_interval, queues=queues)
                except Exception as exc:
                    # Raised as itself below, not wrapped in an exception group.
                    failed.append(exc)
                waiters.cancel_scope.cancel()

            waiters.start_soon(wait_for_work)
            await slot_freed.wait()
            waiters.cancel_scope.cancel()
        if failed:
            raise failed[0]

    async def _back_off(self) -> None:
        await anyio.sleep(self._error_backoff)
        self._error_backoff = min(self._error_backoff * 2, self._options.poll_interval)

    # -- running ------------------------------------------------------------------------

    async def _consume(self, feed: JobFeed) -> None:
        # One cancel scope serves this consumer's runs one after another and
        # is replaced only once cancelled: a scope per job would cost more
        # than a short job's run. ``running`` holds the job being run (with
        # its handlers done so far), for when its run is cancelled.
        running: list[tuple[JobRecord, list[str]]] = []
        while True:
            with anyio.CancelScope() as scope:
                if await self._consume_in(scope, feed, running):
                    return
            if running:
                self._interrupted(*running.pop())

    async def _consume_in(
        self,
        scope: anyio.CancelScope,
        feed: JobFeed,
        running: list[tuple[JobRecord, list[str]]],
    ) -> bool:
        """Run jobs from ``feed``: True once it is closed and empty, False
        when ``scope`` was cancelled as a run ended (a new one is needed).

        The scope is reachable (through ``_job_scopes``) only while a job
        runs, and a cancel that the run did not notice ends this loop before
        its next await: a cancellation never lands between two jobs, where it
        would drop a job taken from the feed.
        """
        while True:
            record = await feed.get()
            if record is None:
                return True
            if self._stop_requested:
                # Claimed but never started: hand it back as if untouched.
                self._add_outcome(put_back(record, started=False))
                continue
            if not await self._held.live(record.id):
                self._drop(record.id)
                continue
            done = list(record.done_handlers)
            running.append((record, done))
            self._job_scopes[record.id] = scope
            started = time.monotonic()
            try:
                outcome = await self._executor.run(record, done)
            finally:
                self._job_scopes.pop(record.id, None)
            self._prefetch.ran(time.monotonic() - started)
            running.pop()
            self._add_outcome(outcome)
            if scope.cancel_called:
                return False

    def _interrupted(self, record: JobRecord, done: list[str]) -> None:
        """A run cancelled by this worker: the job is no longer ours, or the
        worker stops and the run outlasted ``shutdown_timeout``."""
        if self._held.is_lost(record.id):
            # No outcome to record: the store already says what became of it.
            logger.info(
                "job %s (%s) stopped: its lease is gone (cancelled by an operator, or "
                "claimed again after it lapsed)",
                record.id,
                record.name,
            )
            self._drop(record.id)
            return
        logger.warning(
            "job %s (%s) was interrupted by shutdown; put back as due", record.id, record.name
        )
        self._add_outcome(put_back(record, started=True, done=tuple(done)))

    def _drop(self, job_id: str) -> None:
        """Forget a claimed job without running it (its lease is no longer ours)."""
        self._held.forget((job_id,))
        self._slot_released(job_id)

    def _add_outcome(self, outcome: JobOutcome) -> None:
        if outcome.last_error is not None:
            cleaned = clean_error(
                self._options.redact_error(outcome.last_error), self._options.max_error_length
            )
            if cleaned is not outcome.last_error:
                outcome = replace(outcome, last_error=cleaned)
        if outcome.state is JobState.DEAD:
            self._log_dead(outcome)
        self._outcomes.append(outcome)
        self._signal_outcome()
        self._slot_released(outcome.job_id)

    def _slot_released(self, job_id: str) -> None:
        self._in_flight -= 1
        self._slots.released(job_id)
        if self._slot_freed is not None:
            self._slot_freed.set()

    def _log_dead(self, outcome: JobOutcome, *, count: bool = True) -> None:
        name = self._held.name_of(outcome.job_id)
        logger.error(
            "job %s (%s) is dead after %d attempts: %s",
            outcome.job_id,
            name,
            outcome.attempts,
            _summary(outcome.last_error or ""),
        )
        if count and self._observers is not None:
            self._observers.job_dead(name)

    def _signal_outcome(self) -> None:
        if self._outcome_added is not None:
            self._outcome_added.set()

    # -- recording outcomes -------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while True:
            if not self._outcomes:
                if self._consumers_done:
                    return
                self._outcome_added = anyio.Event()
                await self._outcome_added.wait()
                continue
            batch, self._outcomes = self._outcomes, []
            ids = {outcome.job_id for outcome in batch}
            self._held.writing(ids, active=True)
            try:
                await self._write_outcomes(batch)
            finally:
                self._held.writing(ids, active=False)
            self._held.forget(ids)

    async def _write_outcomes(
        self, batch: Sequence[JobOutcome], *, last_resort: bool = False
    ) -> None:
        """Write outcomes: retry an unreachable store, split a batch it refuses.

        A refusal is about the values, so retrying the same batch could never
        succeed (and would wedge the worker): the batch is halved until the
        refused outcome is alone, and that job goes dead with the reason.
        """
        backoff = FIRST_ERROR_BACKOFF_SECONDS
        deadline: float | None = None
        while True:
            try:
                applied = await self._store.finish(self.worker_id, batch)
            except Exception as exc:
                if not _transient(exc):
                    await self._write_refused(batch, exc, last_resort=last_resort)
                    return
                self._outcome_log.failed(exc)
            else:
                self._outcome_log.succeeded()
                self._held.report_refused(batch, applied)
                return
            if self._consumers_done:
                now = anyio.current_time()
                deadline = deadline or now + FINAL_FLUSH_TIMEOUT_SECONDS
                if now >= deadline:
                    logger.error(
                        "worker %s gave up recording %d outcomes; those jobs run again "
                        "when their leases expire",
                        self.worker_id,
                        len(batch),
                    )
                    return
            await anyio.sleep(backoff)
            backoff = min(backoff * 2, self._options.poll_interval)

    async def _write_refused(
        self, batch: Sequence[JobOutcome], exc: Exception, *, last_resort: bool
    ) -> None:
        if len(batch) > 1:
            middle = len(batch) // 2
            await self._write_outcomes(batch[:middle], last_resort=last_resort)
            await self._write_outcomes(batch[middle:], last_resort=last_resort)
            return
        outcome = batch[0]
        if last_resort:
            logger.error(
                "job %s: the store refused even its dead outcome (%s); it runs again "
                "when its lease expires",
                outcome.job_id,
                _summary(repr(exc)),
            )
            return
        reason = clean_error(f"{REFUSED_OUTCOME_REASON}: {exc!r}", self._options.max_error_length)
        dead = JobOutcome(
            job_id=outcome.job_id,
            state=JobState.DEAD,
            attempts=outcome.attempts,
            next_try_at=outcome.next_try_at,
            last_error=reason,
            done_handlers=outcome.done_handlers,
            finished_at=self._clock(),
            lease_token=outcome.lease_token,
        )
        # A dead outcome refused as it was is already counted dead.
        self._log_dead(dead, count=outcome.state is not JobState.DEAD)
        await self._write_outcomes((dead,), last_resort=True)

    # -- heartbeat, leases, maintenance -------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """Renew the leases of held jobs and say this worker is alive."""
        interval = self._options.lease_timeout / LEASE_RENEWALS_PER_PERIOD
        started_at = self._clock()
        try:
            while True:
                # Separate steps: a failed heartbeat must not cost live leases.
                await self._held.renew()
                self._stop_lost_runs()
                await self._beat(started_at)
                # A cancel notice cuts the wait short: the renewal that follows
                # is refused for the cancelled job, whose run is then stopped.
                self._renew_now = anyio.Event()
                with anyio.move_on_after(interval):
                    await self._renew_now.wait()
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(interval):
                await self._forget_worker()

    def _listen_for_cancels(self) -> None:
        """Hear at once when an operator cancels a job this worker runs, where
        the store can tell (``CancelFeed``); otherwise the next renewal tells."""
        if self._cancel_listening or not isinstance(self._store, CancelFeed):
            return
        self._store.add_cancel_listener(self._on_cancel_notice)
        self._cancel_listening = True

    def _on_cancel_notice(self, job_id: str) -> None:
        # Any process's cancel reaches every worker: act only on our own
        # jobs, and only by renewing, so that the store's word decides.
        if self._held.cancel_noticed(job_id):
            renew_now = self._renew_now
            if renew_now is not None:
                renew_now.set()

    def _stop_lost_runs(self) -> None:
        """Cancel the runs of jobs whose lease was refused: an operator cancelled
        them, or another worker claimed them after the lease lapsed. Their
        outcome would be refused anyway; running on only repeats work."""
        for job_id, scope in list(self._job_scopes.items()):
            if self._held.is_lost(job_id):
                scope.cancel()

    async def _beat(self, started_at: datetime) -> None:
        info = WorkerInfo(
            id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=started_at,
            last_seen_at=self._clock(),
            running_jobs=len(self._job_scopes),
        )
        try:
            await self._store.heartbeat(info)
        except Exception as exc:
            self._beat_log.failed(exc)
        else:
            self._beat_log.succeeded()

    async def _forget_worker(self) -> None:
        try:
            await self._store.remove_worker(self.worker_id)
        except Exception:
            logger.warning("worker %s could not remove its heartbeat", self.worker_id)

    async def _maintenance_loop(self) -> None:
        while True:
            await self._purge()
            spread = random.uniform(1 - MAINTENANCE_JITTER, 1 + MAINTENANCE_JITTER)
            await anyio.sleep(MAINTENANCE_INTERVAL_SECONDS * spread)

    async def _purge(self) -> None:
        """Remove finished jobs past their retention, in short chunks (on a
        store that offers purge: one that only runs jobs keeps what it keeps)."""
        store = self._store
        if not isinstance(store, OperatorStore):
            return
        finished_before = self._clock() - timedelta(seconds=self._options.retention)
        purged = 0
        try:
            while True:
                chunk = await store.purge(FINISHED_STATES, finished_before, limit=PURGE_CHUNK_ROWS)
                purged += chunk
                if chunk < PURGE_CHUNK_ROWS:
                    break
                await anyio.sleep(PURGE_PAUSE_SECONDS)
        except Exception as exc:
            self._purge_log.failed(exc)
        else:
            self._purge_log.succeeded()
        if purged:
            logger.info("purged %d jobs past their retention", purged)

    async def _cancel_running_after(self, timeout: float) -> None:
        await anyio.sleep(timeout)
        for scope in list(self._job_scopes.values()):
            scope.cancel()

    async def _release_abandoned(self) -> None:
        """On cancellation: store what is known and put every other held job back."""
        recorded = {outcome.job_id for outcome in self._outcomes}
        outcomes = self._outcomes + [
            put_back(record, started=True)
            for record in self._held.unlost()
            if record.id not in recorded
        ]
        self._outcomes = []
        if not outcomes:
            return
        with anyio.move_on_after(FINAL_FLUSH_TIMEOUT_SECONDS):
            try:
                await self._store.finish(self.worker_id, outcomes)
            except Exception:
                logger.exception("worker %s could not put back its jobs", self.worker_id)
        self._held.clear()


class _Prefetch:
    """How many jobs a worker claims ahead of its free slots.

    ``options.prefetch`` when set. Otherwise automatic: as many as
    ``concurrency`` while runs are long or not yet seen, which keeps a worker
    from holding jobs that an idle one could run; two whole batches (a batch
    at least ``concurrency``) while runs average under ``SHORT_RUN_SECONDS``,
    so that every claim and batch of outcomes moves many jobs.
    """

    __slots__ = (
        "_auto",
        "_batch_size",
        "_concurrency",
        "_long",
        "_mean",
        "_short",
        "held_cap",
        "top_up_at",
    )

    def __init__(self, options: BackgroundJobOptions) -> None:
        self._concurrency = options.concurrency
        self._batch_size = options.batch_size
        self._auto = options.prefetch is None
        self._long = options.concurrency if options.prefetch is None else options.prefetch
        # Used only by the automatic prefetch (``ran``).
        self._short = SHORT_RUN_BATCHES_AHEAD * max(options.concurrency, options.batch_size)
        # The average run time in seconds; None until a run is seen.
        self._mean: float | None = None
        self.held_cap = 0
        self.top_up_at = 0
        self._set(self._long)

    def ran(self, seconds: float) -> None:
        """Count one run's time (automatic prefetch only)."""
        if not self._auto:
            return
        mean = self._mean
        mean = seconds if mean is None else mean + (seconds - mean) * RUN_TIME_WEIGHT
        self._mean = mean
        prefetch = self._short if mean < SHORT_RUN_SECONDS else self._long
        if self.held_cap != self._concurrency + prefetch:
            self._set(prefetch)

    def _set(self, prefetch: int) -> None:
        """Hold at most ``concurrency + prefetch`` jobs. While every consumer
        is busy, prefetched jobs are topped up in chunks of at least
        ``top_up_at`` (half the prefetch, a batch at most): a claim per freed
        slot would cost a store round trip for a job or two."""
        self.held_cap = self._concurrency + prefetch
        self.top_up_at = max(1, min(self._batch_size, prefetch // PREFETCH_TOP_UP_DIVISOR))


def _served(rounds: list[ClaimRound]) -> tuple[str, ...] | None:
    """The queues a worker waits for: those it just claimed from (with room)."""
    if rounds[0][0] is None:
        return None
    return tuple(name for queues, _ in rounds if queues is not None for name in queues)


def _transient(exc: Exception) -> bool:
    """Whether the same store call may succeed later: the store was unreachable
    (``StoreUnavailableError`` is a ``ConnectionError``) or did not answer in time."""
    return isinstance(exc, (OSError, TimeoutError))


def _summary(reason: str) -> str:
    """One line of a reason: a traceback's first and last lines."""
    lines = [line.strip() for line in reason.splitlines() if line.strip()]
    text = lines[0] if len(lines) <= 1 else f"{lines[0]} ... {lines[-1]}"
    if len(text) > LOGGED_REASON_LENGTH:
        text = text[: LOGGED_REASON_LENGTH - 3] + "..."
    return text
