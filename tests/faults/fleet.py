"""``masa-jobs worker`` processes a test starts, kills, freezes and skews.

Every process writes its log to a file of its own, named after its label and
pid, so that a checker can tell which worker logged what; ``FaultLog`` keeps
what the test did to which pid, so that a checker can tell which duplicate
runs a fault explains.
"""

from __future__ import annotations

import glob
import os
import re
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from .ledger import CLOCK_OFFSET_VARIABLE, LEDGER_VARIABLE, real_time

__all__ = ["APP", "APP_OLD", "FaultLog", "Fleet", "WorkerProcess", "faketime_library"]

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = "tests.faults.app:container"
APP_OLD = "tests.faults.app_old:container"
# The line the CLI logs once the worker runs (and catches SIGTERM).
_STARTED = re.compile(r"masa-jobs worker \S+ started:")
# Where Debian's libfaketime package puts the library faketime(1) preloads.
_FAKETIME_LIBRARIES = (
    "/usr/lib/*/faketime/libfaketimeMT.so.1",
    "/usr/lib/faketime/libfaketimeMT.so.1",
    "/usr/local/lib/faketime/libfaketimeMT.so.1",
)


def faketime_library() -> str | None:
    """The multi-threaded libfaketime, or None when faketime is not installed."""
    for pattern in _FAKETIME_LIBRARIES:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return None


def skewed_env(offset_seconds: int) -> dict[str, str]:
    """Environment that runs a process with its wall clock ``offset_seconds`` off.

    This is what ``faketime -f +7200s cmd`` does, minus its wrapper process:
    faketime(1) forks and waits, so a signal sent to it would not reach the
    worker. The monotonic clock is left alone (timeouts and sleeps stay true):
    only the wall clock moves, as on a host whose NTP went wrong.
    """
    library = faketime_library()
    if library is None:
        raise RuntimeError("libfaketime is not installed (Debian package faketime)")
    return {
        "LD_PRELOAD": library,
        "FAKETIME": f"{offset_seconds:+d}",
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "DONT_FAKE_MONOTONIC": "1",
        # The ledger records the real time beside what the worker sees.
        CLOCK_OFFSET_VARIABLE: str(offset_seconds),
    }


@dataclass
class FaultLog:
    """What the test did to which worker process, in real (ledger) time."""

    killed: dict[int, float] = field(default_factory=dict)
    # Frozen (SIGSTOP), cut off from the store, or had their connections killed:
    # their lease may lapse while they run a job, and that duplicate is allowed
    # when they log the loss.
    faulted: set[int] = field(default_factory=set)
    notes: list[str] = field(default_factory=list)
    ended_at: float | None = None

    def note(self, text: str) -> None:
        self.notes.append(f"{real_time():.3f} {text}")

    def end(self) -> None:
        """The faults are over: from now on the fleet must recover."""
        self.ended_at = real_time()
        self.note("faults over")


@dataclass
class WorkerProcess:
    label: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]
    app: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class Fleet:
    """Worker processes sharing one ledger; stopped (SIGCONT, SIGTERM, SIGKILL) by ``close``."""

    def __init__(
        self,
        directory: Path,
        store_env: Mapping[str, str],
        options: Mapping[str, object],
        faults: FaultLog,
    ) -> None:
        self.directory = directory
        self.ledger = directory / "ledger.jsonl"
        self.faults = faults
        base = {k: v for k, v in os.environ.items() if not k.startswith("MASA_JOBS_FAULT")}
        self._env = {
            **base,
            **store_env,
            **{f"MASA_JOBS_OPTIONS__{k.upper()}": str(v) for k, v in options.items()},
            LEDGER_VARIABLE: str(self.ledger),
            "PYTHONUNBUFFERED": "1",
        }
        self.workers: list[WorkerProcess] = []
        # Workers the test stopped gracefully on purpose (a deploy), with their exit codes.
        self.retired: dict[int, int] = {}

    def start(
        self,
        label: str,
        *,
        env: Mapping[str, str] | None = None,
        app: str = APP,
    ) -> WorkerProcess:
        """Start one worker; ``env`` overrides (a proxied store address, a skewed clock)."""
        full_env = {**self._env, **(env or {})}
        log = self.directory / f"worker-{label}-{len(self.workers)}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                [sys.executable, "-m", "masa_jobs.cli", "worker", app],
                cwd=REPO_ROOT,
                env=full_env,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        worker = WorkerProcess(label, process, log, dict(env or {}), app)
        renamed = log.with_name(f"worker-{label}-pid{process.pid}.log")
        log.rename(renamed)  # the child keeps writing to the open file
        worker.log = renamed
        self.workers.append(worker)
        return worker

    def restart(self, worker: WorkerProcess) -> WorkerProcess:
        """A new process with the same label and settings."""
        return self.start(worker.label, env=worker.env, app=worker.app)

    async def wait_started(self, workers: list[WorkerProcess], timeout: float = 60) -> None:
        """Until each worker logged its start line; fails with the logs otherwise."""
        with anyio.move_on_after(timeout):
            while not all(_STARTED.search(w.log_text()) for w in workers):
                exited = [f"{w.label}:{w.pid}" for w in workers if w.process.poll() is not None]
                if exited:
                    raise AssertionError(f"workers exited at start: {exited}\n{self.tails()}")
                await anyio.sleep(0.05)
            return
        raise AssertionError(f"workers did not start within {timeout} s\n{self.tails()}")

    def live(self) -> list[WorkerProcess]:
        """Workers the test did not kill (whether or not they still run)."""
        return [w for w in self.workers if w.pid not in self.faults.killed]

    def kill(self, worker: WorkerProcess) -> None:
        self.faults.killed[worker.pid] = real_time()
        self.faults.note(f"SIGKILL {worker.label} pid {worker.pid}")
        worker.process.send_signal(signal.SIGKILL)
        worker.process.wait(timeout=10)

    def suspend(self, worker: WorkerProcess) -> None:
        self.faults.faulted.add(worker.pid)
        self.faults.note(f"SIGSTOP {worker.label} pid {worker.pid}")
        worker.process.send_signal(signal.SIGSTOP)

    def resume(self, worker: WorkerProcess) -> None:
        self.faults.note(f"SIGCONT {worker.label} pid {worker.pid}")
        worker.process.send_signal(signal.SIGCONT)

    def retire(self, worker: WorkerProcess, timeout: float = 30) -> int:
        """Stop one worker gracefully (SIGTERM), as a deploy does; its exit code."""
        self.faults.note(f"SIGTERM {worker.label} pid {worker.pid}")
        worker.process.send_signal(signal.SIGTERM)
        self.retired[worker.pid] = code = worker.process.wait(timeout=timeout)
        return code

    def not_running(self) -> list[WorkerProcess]:
        """Workers the test neither killed nor retired that have exited."""
        return [
            w for w in self.live() if w.process.poll() is not None and w.pid not in self.retired
        ]

    def stop_all(self, timeout: float = 30) -> dict[str, int]:
        """SIGCONT and SIGTERM every live worker; label:pid -> exit code."""
        running = [w for w in self.workers if w.process.poll() is None]
        for worker in running:
            worker.process.send_signal(signal.SIGCONT)
            worker.process.send_signal(signal.SIGTERM)
        codes = {
            f"{w.label}:{w.pid}": code
            for w in self.workers
            if (code := self.retired.get(w.pid)) is not None
        }
        for worker in running:
            try:
                codes[f"{worker.label}:{worker.pid}"] = worker.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                codes[f"{worker.label}:{worker.pid}"] = worker.process.wait()
        return codes

    def close(self) -> None:
        """Stop whatever still runs, even after a failed test."""
        running = [w for w in self.workers if w.process.poll() is None]
        if running:
            self.stop_all(timeout=15)

    def logs(self) -> dict[int, str]:
        """pid -> full log text, for every process ever started."""
        return {w.pid: w.log_text() for w in self.workers}

    def describe(self) -> str:
        return ", ".join(f"{w.label}=pid {w.pid}" for w in self.workers)

    def tails(self, lines: int = 25) -> str:
        """The last lines of every worker's log, for failure messages."""
        parts = []
        for worker in self.workers:
            # A line can hold a 10 MB exception message: cut every line short.
            tail = [line[:400] for line in worker.log_text().splitlines()[-lines:]]
            state = worker.process.poll()
            status = "running" if state is None else f"exit {state}"
            parts.append(f"--- {worker.log.name} ({status})\n" + "\n".join(tail))
        return "\n".join(parts)
