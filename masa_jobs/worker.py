"""The worker: claim due jobs, run them, record what happened.

One claim loop feeds a fixed set of ``concurrency`` consumer tasks through a
memory object stream (a task per job would cap throughput at the rate anyio
can spawn tasks). Outcomes are collected and written back in batches by one
flusher, so a durable store pays one round trip for many jobs. While a job is
held its lease is renewed; a worker that dies simply stops renewing, and the
job falls due again for another worker.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from datetime import datetime, timedelta
from uuid import uuid4

import anyio
import anyio.lowlevel
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .executor import JobExecutor
from .options import BackgroundJobOptions
from .records import FINISHED_STATES, JobOutcome, JobRecord, JobState, WorkerInfo, utcnow
from .registry import JobRegistry
from .retry import RetryPolicy
from .stores.base import JobStore

__all__ = ["Worker"]

logger = logging.getLogger("masa_jobs.worker")

# Heartbeats (and lease renewals) per lease period: two may fail before a
# live job's lease lapses.
LEASE_RENEWALS_PER_PERIOD = 3
# How often finished jobs past their retention are purged.
MAINTENANCE_INTERVAL_SECONDS = 60.0
# Back-off after a store error, doubling up to the poll interval.
FIRST_ERROR_BACKOFF_SECONDS = 0.05
# A stopping worker gives up recording outcomes after this long; the jobs
# concerned come back when their leases expire.
FINAL_FLUSH_TIMEOUT_SECONDS = 10.0


def default_worker_id() -> str:
    """``host:pid:random``: unique across machines, readable in logs."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid4().hex[:8]}"


class Worker:
    """Runs jobs from one store until ``stop()`` is called."""

    def __init__(
        self,
        store: JobStore,
        registry: JobRegistry,
        options: BackgroundJobOptions,
        *,
        worker_id: str | None = None,
    ) -> None:
        self._store = store
        self._options = options
        self._executor = JobExecutor(registry, RetryPolicy.from_options(options))
        self._lease = timedelta(seconds=options.lease_timeout)
        prefetch = options.concurrency if options.prefetch is None else options.prefetch
        self._max_held = options.concurrency + prefetch
        self.worker_id = worker_id or default_worker_id()
        self._running = False
        self._stop_requested = False
        self._claim_scope: anyio.CancelScope | None = None
        self._job_scopes: set[anyio.CancelScope] = set()
        # Claimed jobs whose outcome is not stored yet: their leases are renewed.
        self._held: dict[str, JobRecord] = {}
        self._outcomes: list[JobOutcome] = []
        self._in_flight = 0
        self._consumers_done = False
        self._outcome_added: anyio.Event | None = None
        self._slot_freed: anyio.Event | None = None
        self._error_backoff = FIRST_ERROR_BACKOFF_SECONDS

    @property
    def running(self) -> bool:
        return self._running

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
        self._in_flight = 0

    async def _serve(self, task_status: TaskStatus[None]) -> None:
        send, receive = anyio.create_memory_object_stream[JobRecord](max_buffer_size=math.inf)
        async with anyio.create_task_group() as services:
            services.start_soon(self._heartbeat_loop)
            services.start_soon(self._maintenance_loop)
            async with anyio.create_task_group() as consumers:
                with receive:
                    for _ in range(self._options.concurrency):
                        consumers.start_soon(self._consume, receive.clone())
                task_status.started()
                with send:
                    await self._claim_loop(send)
                services.start_soon(self._cancel_running_after, self._options.shutdown_timeout)
            services.cancel_scope.cancel()

    async def _claim_loop(self, send: MemoryObjectSendStream[JobRecord]) -> None:
        with anyio.CancelScope() as self._claim_scope:
            while not self._stop_requested:
                free = self._max_held - self._in_flight
                if free <= 0:
                    self._slot_freed = anyio.Event()
                    await self._slot_freed.wait()
                    continue
                wanted = min(self._options.batch_size, free)
                jobs = await self._claim(wanted)
                self._held.update((job.id, job) for job in jobs)
                self._in_flight += len(jobs)
                try:
                    for job in jobs:
                        send.send_nowait(job)
                except anyio.BrokenResourceError:
                    # The consumers are gone (the worker is being cancelled):
                    # the held jobs are put back by _release_abandoned.
                    await anyio.lowlevel.checkpoint()
                    raise
                if len(jobs) < wanted:
                    await self._wait_for_work()
        self._claim_scope = None

    async def _claim(self, wanted: int) -> list[JobRecord]:
        """Claim up to ``wanted`` jobs; on a store error, back off and return none."""
        try:
            # Shielded: a job claimed must reach the consumers, or it would
            # sit under a lease until the lease expired.
            with anyio.CancelScope(shield=True):
                jobs = await self._store.claim(self.worker_id, wanted, utcnow(), self._lease)
        except Exception:
            logger.exception("worker %s could not claim jobs; retrying", self.worker_id)
            await self._back_off()
            return []
        self._error_backoff = FIRST_ERROR_BACKOFF_SECONDS
        return jobs

    async def _wait_for_work(self) -> None:
        try:
            await self._store.wait_for_work(self._options.poll_interval)
        except Exception:
            logger.exception("worker %s could not wait for new jobs; polling", self.worker_id)
            await self._back_off()

    async def _back_off(self) -> None:
        await anyio.sleep(self._error_backoff)
        self._error_backoff = min(self._error_backoff * 2, self._options.poll_interval)

    async def _consume(self, receive: MemoryObjectReceiveStream[JobRecord]) -> None:
        with receive:
            async for record in receive:
                if self._stop_requested:
                    # Claimed but never started: hand it back as if untouched.
                    self._add_outcome(_released(record, started=False))
                    continue
                outcome: JobOutcome | None = None
                done = list(record.done_handlers)
                with anyio.CancelScope() as scope:
                    self._job_scopes.add(scope)
                    try:
                        outcome = await self._executor.run(record, done)
                    finally:
                        self._job_scopes.discard(scope)
                if outcome is None:
                    logger.warning(
                        "job %s (%s) was interrupted by shutdown; put back as due",
                        record.id,
                        record.name,
                    )
                    outcome = _released(record, started=True, done=tuple(done))
                self._add_outcome(outcome)

    def _add_outcome(self, outcome: JobOutcome) -> None:
        self._outcomes.append(outcome)
        self._in_flight -= 1
        self._signal_outcome()
        if self._slot_freed is not None:
            self._slot_freed.set()

    def _signal_outcome(self) -> None:
        if self._outcome_added is not None:
            self._outcome_added.set()

    async def _flush_loop(self) -> None:
        while True:
            if not self._outcomes:
                if self._consumers_done:
                    return
                self._outcome_added = anyio.Event()
                await self._outcome_added.wait()
                continue
            batch, self._outcomes = self._outcomes, []
            await self._store_outcomes(batch)
            for outcome in batch:
                self._held.pop(outcome.job_id, None)

    async def _store_outcomes(self, batch: list[JobOutcome]) -> None:
        """Write a batch of outcomes, retrying store errors; bounded once stopping."""
        backoff = FIRST_ERROR_BACKOFF_SECONDS
        deadline: float | None = None
        while True:
            try:
                await self._store.finish(self.worker_id, batch)
                return
            except Exception:
                logger.exception(
                    "worker %s could not record %d outcomes; retrying", self.worker_id, len(batch)
                )
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

    async def _heartbeat_loop(self) -> None:
        """Say this worker is alive and renew the leases of the jobs it holds."""
        interval = self._options.lease_timeout / LEASE_RENEWALS_PER_PERIOD
        started_at = utcnow()
        try:
            while True:
                await self._beat(started_at)
                await anyio.sleep(interval)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(interval):
                await self._forget_worker()

    async def _beat(self, started_at: datetime) -> None:
        now = utcnow()
        info = WorkerInfo(
            id=self.worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=started_at,
            last_seen_at=now,
            running_jobs=len(self._job_scopes),
        )
        try:
            await self._store.heartbeat(info)
            if self._held:
                await self._store.extend_leases(self.worker_id, list(self._held), now + self._lease)
        except Exception:
            logger.exception("worker %s could not renew its heartbeat or leases", self.worker_id)

    async def _forget_worker(self) -> None:
        try:
            await self._store.remove_worker(self.worker_id)
        except Exception:
            logger.warning("worker %s could not remove its heartbeat", self.worker_id)

    async def _maintenance_loop(self) -> None:
        retention = timedelta(seconds=self._options.retention)
        while True:
            try:
                purged = await self._store.purge(FINISHED_STATES, utcnow() - retention)
            except Exception:
                logger.exception("worker %s could not purge old jobs", self.worker_id)
            else:
                if purged:
                    logger.info("purged %d jobs past their retention", purged)
            await anyio.sleep(MAINTENANCE_INTERVAL_SECONDS)

    async def _cancel_running_after(self, timeout: float) -> None:
        await anyio.sleep(timeout)
        for scope in list(self._job_scopes):
            scope.cancel()

    async def _release_abandoned(self) -> None:
        """On cancellation: store what is known and put every other held job back."""
        recorded = {outcome.job_id for outcome in self._outcomes}
        outcomes = self._outcomes + [
            _released(record, started=True)
            for job_id, record in self._held.items()
            if job_id not in recorded
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


def _released(
    record: JobRecord, *, started: bool, done: tuple[str, ...] | None = None
) -> JobOutcome:
    """A held job handed back, due at once; an attempt never started is not counted.

    ``done`` lists the handlers that finished before the interruption, so
    that they do not run again.
    """
    return JobOutcome(
        job_id=record.id,
        state=JobState.ENQUEUED,
        attempts=record.attempts if started else record.attempts - 1,
        next_try_at=utcnow(),
        last_error=record.last_error,
        done_handlers=record.done_handlers if done is None else done,
    )
