"""Real ``masa-jobs worker`` processes for the benchmark's multi-process scenarios.

Each process runs ``masa-jobs worker`` on the benchmark's application
(``_bench_app``) with the interpreter and import path of this process; the
store and the options reach it as ``MASA_JOBS_...`` variables, as in a
deployment. Its log goes to a file: the start line tells when it serves, and
the file's last line explains a process that died.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from masa_jobs.containers import ENV_PREFIX

from ._common import CliError

__all__ = ["BENCH_APP", "MEMORY_BENCH_APP", "WorkerFleet", "vm_rss_bytes", "worker_fleet"]

BENCH_APP = "masa_jobs.cli._bench_app:container"
MEMORY_BENCH_APP = "masa_jobs.cli._bench_app:memory_container"
# What ``masa-jobs worker`` logs once its worker runs (after the store opened).
STARTED_MARK = " started: store "
# Eight processes importing at once on two busy cores take several seconds each.
READY_TIMEOUT_SECONDS = 60.0
# A no-op job stops at once: a worker still running after this is stuck.
STOP_TIMEOUT_SECONDS = 15.0
# How often the log files and process states are looked at while waiting.
WATCH_INTERVAL_SECONDS = 0.05


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def started(self) -> bool:
        return STARTED_MARK in self.log.read_text(errors="replace")

    def last_line(self) -> str:
        lines = self.log.read_text(errors="replace").strip().splitlines()
        return lines[-1] if lines else "(no output)"


class WorkerFleet:
    """Starts, replaces and stops the worker processes of one scenario run."""

    def __init__(self, env: Mapping[str, str], app: str, backend: str, folder: Path) -> None:
        self._env = dict(env)
        self._command = [sys.executable, "-m", "masa_jobs.cli", "worker", app]
        self._command += ["--log-level", "info", "--backend", backend]
        self._folder = folder
        self._started = 0
        self.workers: list[WorkerProcess] = []

    def start(self, count: int = 1) -> list[WorkerProcess]:
        """Start ``count`` more processes (not waiting for them to serve)."""
        new = [self._spawn() for _ in range(count)]
        self.workers.extend(new)
        return new

    def _spawn(self) -> WorkerProcess:
        self._started += 1
        log = self._folder / f"worker-{self._started}.log"
        with log.open("wb") as sink:
            process = subprocess.Popen(
                self._command, env=self._env, stdin=subprocess.DEVNULL, stdout=sink, stderr=sink
            )
        return WorkerProcess(process, log)

    async def wait_ready(self, workers: list[WorkerProcess] | None = None) -> None:
        """Wait until every process (or those given) logged its start line."""
        waiting = list(self.workers if workers is None else workers)
        with anyio.fail_after(READY_TIMEOUT_SECONDS):
            while waiting:
                for worker in waiting:
                    _check_alive(worker)
                waiting = [worker for worker in waiting if not worker.started()]
                if waiting:
                    await anyio.sleep(WATCH_INTERVAL_SECONDS)

    def kill_and_replace(self, index: int) -> None:
        """SIGKILL the process at ``index`` (no graceful stop) and start another in its place."""
        victim = self.workers[index]
        victim.process.kill()
        victim.process.wait()
        self.workers[index] = self._spawn()

    async def stop(self) -> None:
        """SIGTERM every process; SIGKILL those still running after the stop timeout."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while any(w.process.poll() is None for w in self.workers):
            if time.monotonic() > deadline:
                break
            await anyio.sleep(WATCH_INTERVAL_SECONDS)
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.kill()
            worker.process.wait()


def _check_alive(worker: WorkerProcess) -> None:
    code = worker.process.poll()
    if code is not None:
        raise CliError(
            f"a benchmark worker process exited with code {code} before serving: "
            f"{worker.last_line()}"
        )


@contextmanager
def worker_fleet(
    store: Mapping[str, Any],
    options: Mapping[str, Any],
    backend: str,
    app: str = BENCH_APP,
) -> Iterator[WorkerFleet]:
    """A fleet whose processes use the ``store`` section and ``options``.

    The caller stops the fleet (``await fleet.stop()``) before leaving; any
    process still alive on the way out (an error) is killed here."""
    with tempfile.TemporaryDirectory(prefix="masa_bench_logs_") as folder:
        fleet = WorkerFleet(worker_env(store, options), app, backend, Path(folder))
        try:
            yield fleet
        finally:
            for worker in fleet.workers:
                if worker.process.poll() is None:
                    worker.process.kill()
                    worker.process.wait()


def worker_env(store: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, str]:
    """This environment without any MASA_JOBS_ setting, plus the given sections."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    for section, values in (("STORE", store), ("OPTIONS", options)):
        for key, value in values.items():
            if value is not None:
                env[f"{ENV_PREFIX}{section}__{key.upper()}"] = str(value)
    return env


def vm_rss_bytes(pid: int) -> int | None:
    """The resident set size of process ``pid``, where /proc tells it (Linux)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            kib = int(line.split()[1])
            return kib * 1024
    return None
