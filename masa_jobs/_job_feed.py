"""Claimed jobs on their way from the claim loop to the worker's consumers.

A first-in first-out queue that wakes one idle consumer per job put in. It
does what the worker needed of an anyio memory object stream with less work
per job (no exception for an empty buffer, no receiver object, no stream
clone per consumer): the hand-off is on the path of every job.
"""

from __future__ import annotations

from collections import deque

import anyio
import anyio.lowlevel

from .records import JobRecord

__all__ = ["JobFeed"]


class JobFeed:
    """Jobs waiting for a consumer; ``close()`` lets consumers drain and end."""

    __slots__ = ("_closed", "_idle", "_jobs")

    def __init__(self) -> None:
        self._jobs: deque[JobRecord] = deque()
        # One event per consumer waiting for a job, oldest first.
        self._idle: deque[anyio.Event] = deque()
        self._closed = False

    def __len__(self) -> int:
        return len(self._jobs)

    def put(self, job: JobRecord) -> None:
        self._jobs.append(job)
        if self._idle:
            self._idle.popleft().set()

    def close(self) -> None:
        """No more jobs come: consumers take what is left, then ``get`` says None."""
        self._closed = True
        while self._idle:
            self._idle.popleft().set()

    async def get(self) -> JobRecord | None:
        """The next job; None once the feed is closed and empty.

        Every call that returns a job yields to the event loop once, as a
        stream's receive does: a consumer whose jobs never await still lets
        the claim loop, the renewals and a cancellation in between. A wait
        for a job is that yield; only a job taken at once needs a checkpoint.
        """
        if self._jobs:
            await anyio.lowlevel.checkpoint()
        while not self._jobs:
            if self._closed:
                return None
            await self._wait()
        return self._jobs.popleft()

    async def _wait(self) -> None:
        woken = anyio.Event()
        self._idle.append(woken)
        try:
            await woken.wait()
        except BaseException:
            # Cancelled: a wake-up meant for this consumer goes to another one.
            if woken.is_set():
                if self._jobs and self._idle:
                    self._idle.popleft().set()
            else:
                self._idle.remove(woken)
            raise
