"""The benchmark's no-op job and the probe its handler reports to.

Imported only when ``masa-jobs bench`` runs: the registry registers every
imported handler class.
"""

from __future__ import annotations

import time

import anyio
from pydantic import BaseModel

from masa_jobs import BackgroundJob, job_name

__all__ = ["PROBE", "NoOp", "NoOpJob", "Probe"]


@job_name("bench.no-op")
class NoOp(BaseModel):
    """No arguments: the benchmark measures the framework, not serialisation."""


class Probe:
    """Counts handler runs and sets an event when the expected number is reached.

    Waiting on the event costs nothing per job, where polling the store's
    counts would cost a scan of every job on each poll.
    """

    def __init__(self) -> None:
        self.runs = 0
        self.target = 0
        self.last_run_at = 0.0
        self._reached: anyio.Event | None = None

    def expect(self, runs: int) -> anyio.Event:
        """Reset the count; the returned event is set after ``runs`` more handler runs."""
        self.runs = 0
        self.target = runs
        self._reached = anyio.Event()
        return self._reached

    def hit(self) -> None:
        self.last_run_at = time.perf_counter()
        self.runs += 1
        if self.runs >= self.target and self._reached is not None:
            self._reached.set()


PROBE = Probe()


class NoOpJob(BackgroundJob[NoOp]):
    """Does nothing but report to the probe."""

    async def execute(self, args: NoOp) -> None:
        PROBE.hit()
