"""The memory store's claim order: per queue, which jobs are due, by priority.

Each queue keeps three heaps: *ready* jobs (due now) by priority, then
``next_try_at``, attempts and creation; *waiting* jobs (pending, due later)
by ``next_try_at``; and the *leases* of its processing jobs by expiry. A
claim first moves what fell due since (waiting jobs whose time came,
expired leases) to the ready heap of each queue it serves, then merges the
tops of those ready heaps: so it costs O((moved + claimed) · log n) plus one
step per served queue, however many jobs wait. A paused queue is not
looked at, so its jobs (expired leases included) stay where they are until
it is resumed.

Entries are invalidated lazily: each job has one current version, and an
entry whose version is not current (the job was claimed, finished, moved or
removed since) is dropped when it reaches the top of its heap.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Collection, Iterator, Mapping
from itertools import count
from typing import Final

from ..records import JobRecord

__all__ = ["DueQueues"]

# (priority, next_try_at, attempts, created_at, version, job_id): the claim order.
_Ready = tuple[int, float, int, float, int, str]
# (next_try_at, ready entry) for a pending job not yet due.
_Waiting = tuple[float, _Ready]
# (lease_expires_at, version, job_id) for a processing job.
_Lease = tuple[float, int, str]

# Where a ready entry keeps its version and its job's id.
_VERSION: Final = 4
_JOB_ID: Final = 5


class _Queue:
    """The heaps of one queue; see the module docstring."""

    __slots__ = ("leases", "ready", "waiting")

    def __init__(self) -> None:
        self.ready: list[_Ready] = []
        self.waiting: list[_Waiting] = []
        self.leases: list[_Lease] = []

    def is_empty(self) -> bool:
        return not (self.ready or self.waiting or self.leases)


class DueQueues:
    """Due jobs by queue and priority, and which queues are paused.

    ``jobs`` is the store's own dict of jobs, read (never written) when an
    expired lease puts its job back in the claim order.
    """

    def __init__(self, jobs: Mapping[str, JobRecord]) -> None:
        self._jobs = jobs
        self._queues: dict[str, _Queue] = {}
        self._versions: dict[str, int] = {}
        self._sequence = count()
        self.paused: set[str] = set()

    def push_pending(self, record: JobRecord, now_ts: float) -> None:
        """Put a pending job (or one whose lease expired) in the claim order."""
        entry = self._entry(record)
        queue = self._queues.get(record.queue) or self._queue(record.queue)
        if entry[1] <= now_ts:
            heapq.heappush(queue.ready, entry)
        else:
            heapq.heappush(queue.waiting, (entry[1], entry))

    def push_lease(self, record: JobRecord, expires_ts: float) -> None:
        """Track the lease of a processing job: it is due again once it expires."""
        version = next(self._sequence)
        self._versions[record.id] = version
        heapq.heappush(self._queue(record.queue).leases, (expires_ts, version, record.id))

    def clear(self) -> None:
        """Forget every job; the paused queues stay."""
        self._queues.clear()
        self._versions.clear()

    def forget(self, job_id: str) -> None:
        """Take a job out of the claim order (finished, removed)."""
        self._versions.pop(job_id, None)

    def take(
        self, queues: Collection[str] | None, now_ts: float, limit: int, excluded: Collection[str]
    ) -> list[str]:
        """Pop up to ``limit`` due jobs of the served queues in claim order and
        return their ids; the caller holds each under a lease (``push_lease``).
        Excluded jobs stay due for other claimers."""
        heads: list[tuple[_Ready, _Queue]] = []
        for queue in self._served(queues):
            self._promote(queue, now_ts)
            head = self._head(queue)
            if head is not None:
                heads.append((head, queue))
        heapq.heapify(heads)
        taken: list[str] = []
        skipped: list[tuple[_Ready, _Queue]] = []
        while heads and len(taken) < limit:
            entry, queue = heads[0]
            heapq.heappop(queue.ready)
            if entry[_JOB_ID] in excluded:
                skipped.append((entry, queue))
            else:
                taken.append(entry[_JOB_ID])
            following = self._head(queue)
            if following is None:
                heapq.heappop(heads)
            else:
                heapq.heapreplace(heads, (following, queue))
        for entry, queue in skipped:
            heapq.heappush(queue.ready, entry)
        return taken

    def seconds_until_due(self, queues: Collection[str] | None, now_ts: float) -> float:
        """Seconds until a job of the served queues is due (0 or less: one is
        now; inf: none is pending or held)."""
        earliest = math.inf
        for queue in self._served(queues):
            self._promote(queue, now_ts)
            if self._head(queue) is not None:
                return 0.0
            earliest = min(earliest, self._next_at(queue))
        return earliest - now_ts

    def _served(self, queues: Collection[str] | None) -> Iterator[_Queue]:
        """The queues a claim looks at: the given ones (None: every one), less
        the paused; a queue found empty is dropped, so names do not pile up."""
        names = list(self._queues) if queues is None else queues
        paused = self.paused
        for name in names:
            queue = self._queues.get(name)
            if queue is None or name in paused:
                continue
            if queue.is_empty():
                del self._queues[name]
                continue
            yield queue

    def _promote(self, queue: _Queue, now_ts: float) -> None:
        """Move what fell due by ``now_ts`` to the ready heap."""
        versions, ready = self._versions, queue.ready
        waiting = queue.waiting
        while waiting and waiting[0][0] <= now_ts:
            entry = heapq.heappop(waiting)[1]
            if versions.get(entry[_JOB_ID]) == entry[_VERSION]:
                heapq.heappush(ready, entry)
        leases = queue.leases
        while leases and leases[0][0] <= now_ts:
            _, version, job_id = heapq.heappop(leases)
            if versions.get(job_id) == version:
                heapq.heappush(ready, self._entry(self._jobs[job_id]))

    def _head(self, queue: _Queue) -> _Ready | None:
        """The ready job claimed first, dropping stale entries on the way."""
        ready, versions = queue.ready, self._versions
        while ready:
            head = ready[0]
            if versions.get(head[_JOB_ID]) == head[_VERSION]:
                return head
            heapq.heappop(ready)
        return None

    def _next_at(self, queue: _Queue) -> float:
        """When the earliest waiting job or lease of the queue falls due (inf if none)."""
        versions = self._versions
        waiting, leases = queue.waiting, queue.leases
        while waiting and versions.get(waiting[0][1][_JOB_ID]) != waiting[0][1][_VERSION]:
            heapq.heappop(waiting)
        while leases and versions.get(leases[0][2]) != leases[0][1]:
            heapq.heappop(leases)
        return min(waiting[0][0] if waiting else math.inf, leases[0][0] if leases else math.inf)

    def _entry(self, record: JobRecord) -> _Ready:
        version = next(self._sequence)
        self._versions[record.id] = version
        return (
            record.priority,
            record.next_try_at.timestamp(),
            record.attempts,
            record.created_at.timestamp(),
            version,
            record.id,
        )

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue()
        return queue
