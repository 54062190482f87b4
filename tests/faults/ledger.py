"""The ledger: one JSON line per handler start and end, appended by the workers.

A handler appends with ``O_APPEND`` and one ``write`` per line, so lines of
concurrent processes never interleave. Times are wall-clock seconds of this
machine (``time.time()``): monotonic clocks are per boot, not a timestamp a
reader can compare with its own. A worker run under a skewed clock (faketime)
is told its skew in ``FAULTS_CLOCK_OFFSET_VARIABLE`` and records the real time
(``t``) beside the time it sees (``seen``); the test checks beforehand that
faketime shifts the clock by exactly that.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CLOCK_OFFSET_VARIABLE",
    "LEDGER_VARIABLE",
    "Run",
    "append",
    "read_runs",
    "real_time",
]

LEDGER_VARIABLE = "MASA_FAULTS_LEDGER"
CLOCK_OFFSET_VARIABLE = "MASA_FAULTS_CLOCK_OFFSET"


def real_time() -> float:
    """This machine's wall clock, undoing the skew a faked process was given."""
    return time.time() - float(os.environ.get(CLOCK_OFFSET_VARIABLE) or 0)


def append(entry: dict[str, object]) -> None:
    """Append one line to the ledger named by ``LEDGER_VARIABLE`` (no-op when unset)."""
    path = os.environ.get(LEDGER_VARIABLE)
    if not path:
        return
    line = (json.dumps(entry, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@dataclass
class Run:
    """One execution of a handler: its start line, and its end line if it had one."""

    job: str
    name: str
    key: str
    pid: int
    worker: str | None
    attempt: int
    token: str | None
    start: float
    end: float | None = None
    ok: bool | None = None

    def describe(self) -> str:
        end = "never ended" if self.end is None else f"ended {self.end:.3f} ok={self.ok}"
        return (
            f"pid {self.pid} attempt {self.attempt} token {self.token} "
            f"started {self.start:.3f} {end}"
        )


def read_runs(path: Path) -> dict[str, list[Run]]:
    """Job id -> its runs, in claim order (attempt, then start time)."""
    runs: dict[_RunKey, Run] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            _add_line(runs, json.loads(line))
    by_job: dict[str, list[Run]] = {}
    for run in runs.values():
        by_job.setdefault(run.job, []).append(run)
    for job_runs in by_job.values():
        job_runs.sort(key=lambda run: (run.attempt, run.start))
    return by_job


_RunKey = tuple[str, int, int, str | None, float]


def _add_line(runs: dict[_RunKey, Run], entry: dict[str, Any]) -> None:
    # A start and its end share job, pid, attempt, token and start time.
    key = (entry["job"], entry["pid"], entry["attempt"], entry["token"], entry["start"])
    if entry["event"] == "start":
        runs[key] = Run(
            job=entry["job"],
            name=entry["name"],
            key=entry["key"],
            pid=entry["pid"],
            worker=entry["worker"],
            attempt=entry["attempt"],
            token=entry["token"],
            start=entry["start"],
        )
    else:
        run = runs[key]
        run.end, run.ok = entry["t"], entry["ok"]
