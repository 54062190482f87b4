"""The jobs of the fault suite's apps; every run is written to the ledger.

``app.py`` (the current code) and ``app_old.py`` (the code before a deploy)
both import this module; only ``app.py`` adds ``NewWork``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import anyio
from pydantic import BaseModel

from masa_jobs import BackgroundJob, BackgroundScheduleJob, current_job, job_name

from . import ledger

__all__ = ["CronTick", "Fail", "FaultError", "Short", "recorded_run"]

# What the failing job's message carries: text PostgreSQL refuses (NUL), text
# no UTF-8 encoder accepts (a lone surrogate), and a message far past any
# sensible column (10 MB).
FAILURE_TEXT = {
    "nul": "before the NUL \x00 after the NUL",
    "surrogate": "a lone surrogate \udc80 here",
    "huge": "x" * (10 * 1024 * 1024),
}


@contextmanager
def recorded_run(key: str) -> Iterator[None]:
    """Write the start line, run the block, write the end line (ok or not)."""
    job = current_job()
    entry: dict[str, object] = {
        "job": job.id,
        "name": job.name,
        "key": key,
        "pid": os.getpid(),
        "worker": job.worker_id,
        "attempt": job.attempt,
        "token": job.lease_token,
        "start": ledger.real_time(),
    }
    ledger.append({**entry, "event": "start", "t": entry["start"]})
    ok = False
    try:
        yield
        ok = True
    finally:
        ledger.append({**entry, "event": "end", "t": ledger.real_time(), "ok": ok})


@job_name("faults-short")
class Short(BaseModel):
    key: str = ""
    sleep: float = 0.0


class ShortJob(BackgroundJob[Short]):
    async def execute(self, args: Short) -> None:
        with recorded_run(args.key):
            if args.sleep:
                await anyio.sleep(args.sleep)


class FaultError(Exception):
    """What the failing job raises: its message is text a store may refuse."""


@job_name("faults-fail")
class Fail(BaseModel):
    key: str = ""
    kind: Literal["nul", "surrogate", "huge"]


class FailJob(BackgroundJob[Fail]):
    async def execute(self, args: Fail) -> None:
        with recorded_run(args.key):
            raise FaultError(f"{args.kind}: {FAILURE_TEXT[args.kind]}")


class CronTick(BackgroundScheduleJob):
    """A recurring job the tests schedule at run time (no class-level id)."""

    async def execute(self) -> None:
        assert self.fire_at is not None
        with recorded_run(self.fire_at.strftime("%Y-%m-%dT%H:%M:%S")):
            pass
