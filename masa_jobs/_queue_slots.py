"""Which queues a worker claims from next, and how many jobs of each.

The ``queues`` option lists queues in the order a worker serves them, each
with an optional cap on the jobs of that queue it holds at once (claimed and
not yet finished). A worker serving one queue, or every queue, claims in one
call; several queues are claimed from one after the other, so that the first
one listed is drained first.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from ._job_control import QueuePlan
from .records import JobRecord

__all__ = ["ClaimRound", "QueueSlots"]

# One claim call: the queues it takes from (None: every queue), and how many jobs.
ClaimRound = tuple[tuple[str, ...] | None, int]


class QueueSlots:
    """The queues of one worker, and how many jobs of each it holds."""

    def __init__(self, plan: QueuePlan) -> None:
        self._plan = plan
        # Kept only when a queue is capped: the hot path of an uncapped
        # worker does no bookkeeping per job.
        self._limited = plan.limited
        self._held: Counter[str] = Counter()
        self._queue_of: dict[str, str] = {}
        # Whether the last ``rounds`` left a queue out for being at its cap:
        # then a job of that queue finishing is a reason to claim again.
        self.capped = False

    @property
    def queues(self) -> tuple[str, ...] | None:
        """The queues served, in order; None serves every queue."""
        return self._plan.queues

    def rounds(self, wanted: int) -> list[ClaimRound]:
        """The claim calls that fill up to ``wanted`` free slots, in order;
        empty when every served queue is at its cap."""
        queues = self._plan.queues
        if queues is None or (len(queues) == 1 and not self._limited):
            return [(queues, wanted)]
        rounds: list[ClaimRound] = []
        self.capped = False
        for name, limit in zip(queues, self._plan.limits, strict=True):
            room = wanted if limit is None else min(wanted, limit - self._held[name])
            if room > 0:
                rounds.append(((name,), room))
            else:
                self.capped = True
        return rounds

    def claimed(self, jobs: Iterable[JobRecord]) -> None:
        if not self._limited:
            return
        for job in jobs:
            self._queue_of[job.id] = job.queue
            self._held[job.queue] += 1

    def released(self, job_id: str) -> None:
        if not self._limited:
            return
        queue = self._queue_of.pop(job_id, None)
        if queue is not None:
            self._held[queue] -= 1

    def clear(self) -> None:
        self._held.clear()
        self._queue_of.clear()
