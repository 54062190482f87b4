"""What one worker holds, and whether its leases still hold.

Every claimed job stays here until its outcome is written. Deadlines are
kept on this process's monotonic clock from the moment the claim or renewal
was *sent*, which is never later than the store's own deadline, so "surely
still mine" never depends on the wall clock of this machine or the store's.
The store's fencing (lease tokens) is the authority: a refused renewal or
outcome is a lost lease, logged once at WARNING and counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from datetime import timedelta

from ._outage import OutageLog
from ._redact import redact
from .records import JobOutcome, JobRecord
from .stores.base import JobStore

__all__ = ["HeldJobs"]

logger = logging.getLogger("masa_jobs.worker")

# A held job with less than this share of its lease left is renewed before
# it starts, so that it never starts on a lease that may have lapsed.
START_RENEWAL_SHARE = 0.5


class _Held:
    """A job this worker claimed and has not recorded yet."""

    __slots__ = ("cancel_noticed", "completed", "deadline", "lost", "record")

    def __init__(self, record: JobRecord, deadline: float) -> None:
        self.record = record
        # Monotonic time by which the lease surely holds (sent time + lease).
        self.deadline = deadline
        # Whether its loss was logged: a loss is logged and counted once.
        self.lost = False
        # Whether the store said an operator cancelled it (a cancel notice):
        # its refused renewal is then that cancel, not a fault.
        self.cancel_noticed = False
        # Whether its handler completed it in its own transaction: a refused
        # renewal or outcome is then that completion, not a lost lease.
        self.completed = False

    @property
    def token(self) -> str:
        return self.record.lease_token or ""


class HeldJobs:
    """The jobs one worker holds, their lease deadlines and lost leases."""

    def __init__(
        self,
        store: JobStore,
        worker_id: str,
        lease_seconds: float,
        redact_error: Callable[[str], str] = redact,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        # Told the job name of every lost lease (the metrics), when set.
        self._on_lost = on_lost
        self._worker_id = worker_id
        self._lease_seconds = lease_seconds
        self._lease = timedelta(seconds=lease_seconds)
        self._held: dict[str, _Held] = {}
        # Ids whose outcomes are being written: a renewal refused for them
        # means the outcome landed first, not a lost lease.
        self._writing: set[str] = set()
        self.leases_lost = 0
        self._renew_log = OutageLog(
            logger, f"worker {worker_id}: renewing leases", redact_error=redact_error
        )

    def __len__(self) -> int:
        return len(self._held)

    def __iter__(self) -> Iterator[str]:
        return iter(self._held)

    def clear(self) -> None:
        self._held.clear()
        self._writing.clear()

    def add(self, jobs: Iterable[JobRecord], sent: float) -> None:
        """Hold jobs claimed by a call sent at monotonic time ``sent``."""
        deadline = sent + self._lease_seconds
        for job in jobs:
            self._held[job.id] = _Held(job, deadline)

    def name_of(self, job_id: str) -> str:
        held = self._held.get(job_id)
        return held.record.name if held is not None else "?"

    def unlost(self) -> list[JobRecord]:
        """The held jobs whose lease is not known to be lost."""
        return [held.record for held in self._held.values() if not held.lost]

    def cancel_noticed(self, job_id: str) -> bool:
        """Note a cancel notice for a held job; False when this worker does not hold it."""
        held = self._held.get(job_id)
        if held is None:
            return False
        held.cancel_noticed = True
        return True

    def completed_in_transaction(self, job_id: str) -> None:
        """Note that a handler wrote its job's completion in its transaction."""
        held = self._held.get(job_id)
        if held is not None:
            held.completed = True

    def is_lost(self, job_id: str) -> bool:
        """Whether the lease of a job this worker holds is known to be lost."""
        held = self._held.get(job_id)
        return held is not None and held.lost

    def forget(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self._held.pop(job_id, None)

    def writing(self, job_ids: Collection[str], active: bool) -> None:
        if active:
            self._writing.update(job_ids)
        else:
            self._writing.difference_update(job_ids)

    async def live(self, job_id: str) -> bool:
        """Whether this worker surely still holds the job: renewed first if in doubt."""
        held = self._held.get(job_id)
        if held is None or held.lost:
            return False
        remaining = held.deadline - time.monotonic()
        if remaining >= self._lease_seconds * START_RENEWAL_SHARE:
            return True
        sent = time.monotonic()
        try:
            renewed = await self._store.extend_leases(
                self._worker_id, {job_id: held.token}, self._lease
            )
        except Exception as exc:
            self._renew_log.failed(exc)
            # Unconfirmed: start only while the lease it had surely holds.
            return remaining > 0
        self._renew_log.succeeded()
        if job_id in renewed:
            held.deadline = sent + self._lease_seconds
            return True
        self._lost(held, "its lease lapsed before it started; not run")
        return False

    async def renew(self) -> None:
        """Renew every lease still held; a refused one is lost."""
        leases = {job_id: held.token for job_id, held in self._held.items() if not held.lost}
        if not leases:
            return
        sent = time.monotonic()
        try:
            renewed = await self._store.extend_leases(self._worker_id, leases, self._lease)
        except Exception as exc:
            self._renew_log.failed(exc)
            return
        self._renew_log.succeeded()
        for job_id, token in leases.items():
            held = self._held.get(job_id)
            if held is None or held.token != token:
                continue  # recorded meanwhile
            if job_id in renewed:
                held.deadline = sent + self._lease_seconds
            elif job_id not in self._writing:
                self._lost(
                    held,
                    "renewal refused: an operator cancelled it, or it was claimed again "
                    "after its lease lapsed",
                )

    def report_refused(self, batch: Sequence[JobOutcome], applied: Collection[str]) -> None:
        """Log and count every outcome the store refused: its lease was lost."""
        if len(applied) == len(batch):
            return
        for outcome in batch:
            if outcome.job_id in applied:
                continue
            held = self._held.get(outcome.job_id)
            if held is None:
                held = _Held(_stand_in(outcome), 0.0)
            self._lost(
                held,
                f"its outcome ({outcome.state}) was refused: the job was claimed again "
                "after its lease lapsed (or deleted)",
            )

    def _lost(self, held: _Held, why: str) -> None:
        if held.lost:
            return
        if held.completed:
            # Its handler's transaction finished it (the usual case), or rolled
            # back while the lease was lost indeed: either way not this run's.
            logger.debug(
                "job %s (%s): %s; it was completed in its handler's transaction",
                held.record.id,
                held.record.name,
                why,
            )
            return
        held.lost = True
        if held.cancel_noticed:
            # An operator's cancel: what the notice announced, not a fault.
            logger.info(
                "job %s (%s) was cancelled by an operator on attempt %d; stopping its run",
                held.record.id,
                held.record.name,
                held.record.attempts,
            )
            return
        self.leases_lost += 1
        if self._on_lost is not None:
            self._on_lost(held.record.name)
        logger.warning(
            "job %s (%s): lease lost on attempt %d: %s. Another worker may run it again; "
            "see docs/stores/index.md#lost-leases",
            held.record.id,
            held.record.name,
            held.record.attempts,
            why,
        )


def _stand_in(outcome: JobOutcome) -> JobRecord:
    """A record for a held job this worker no longer tracks, for a log line."""
    return JobRecord(
        id=outcome.job_id,
        name="?",
        payload="",
        state=outcome.state,
        created_at=outcome.next_try_at,
        next_try_at=outcome.next_try_at,
        attempts=outcome.attempts,
    )
