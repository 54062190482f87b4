"""Real worker processes and the means to watch them from a test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
from masa_jobs.containers import BackgroundJobContainer

from masa_jobs import JobManager, MasaApp

from .app import RECORD_FILE_VARIABLE

if TYPE_CHECKING:
    from .conftest import StoreUnderTest

__all__ = [
    "WorkerFleet",
    "exit_code",
    "observer",
    "read_records",
    "records_by_pid",
    "wait_until",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = "tests.integration.app:container"


@asynccontextmanager
async def observer(store: StoreUnderTest) -> AsyncIterator[JobManager]:
    """The test's own enqueue-only view of the store the workers share."""
    container = BackgroundJobContainer()
    container.config.from_dict({"store": store.config, "options": {"disable_background_job": True}})
    MasaApp.build(container)
    async with MasaApp.lifespan():
        yield MasaApp.job_manager()


async def wait_until(
    predicate: Callable[[], Awaitable[bool]], timeout: float, interval: float = 0.05
) -> None:
    """Poll ``predicate`` until it is true; fail after ``timeout`` seconds."""
    # Across processes there is no event to wait on: poll, with a deadline.
    with anyio.fail_after(timeout):
        while not await predicate():  # noqa: ASYNC110
            await anyio.sleep(interval)


async def exit_code(process: subprocess.Popen[bytes], timeout: float) -> int:
    """Wait for ``process`` to end by itself (a worker that killed itself); its
    exit code, ``-signal.SIGKILL`` for such a worker."""
    await wait_until(lambda: _ended(process), timeout)
    return process.returncode


async def _ended(process: subprocess.Popen[bytes]) -> bool:
    return process.poll() is not None


def read_records(path: Path, event: str = "done") -> Counter[str]:
    """How many times each key was recorded with ``event``."""
    if not path.exists():
        return Counter()
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        recorded_event, key, _pid = line.split(" ")
        if recorded_event == event:
            counts[key] += 1
    return counts


def records_by_pid(path: Path, event: str) -> dict[str, int]:
    """key -> pid of the process that recorded ``event`` for it (last one wins)."""
    found: dict[str, int] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            recorded_event, key, pid = line.split(" ")
            if recorded_event == event:
                found[key] = int(pid)
    return found


class WorkerFleet:
    """``masa-jobs worker`` processes sharing one store configuration."""

    def __init__(self, store_env: Mapping[str, str], record_file: Path) -> None:
        self._env = {
            **os.environ,
            **store_env,
            RECORD_FILE_VARIABLE: str(record_file),
            "PYTHONUNBUFFERED": "1",
        }
        self.processes: list[subprocess.Popen[bytes]] = []
        self._logs: list[Path] = []
        self._log_dir = record_file.parent

    def start(self, count: int, **options: object) -> list[subprocess.Popen[bytes]]:
        env = dict(self._env)
        for name, value in options.items():
            env[f"MASA_JOBS_OPTIONS__{name.upper()}"] = str(value)
        started = []
        for _ in range(count):
            log = self._log_dir / f"worker-{len(self.processes)}.log"
            with log.open("wb") as sink:
                process = subprocess.Popen(
                    [sys.executable, "-m", "masa_jobs.cli", "worker", APP],
                    cwd=REPO_ROOT,
                    env=env,
                    stdout=sink,
                    stderr=subprocess.STDOUT,
                )
            self.processes.append(process)
            self._logs.append(log)
            started.append(process)
        return started

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self, timeout: float = 60) -> list[int]:
        """SIGTERM every live worker; their exit codes (a killed one's too)."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = []
        for process in self.processes:
            try:
                codes.append(process.wait(timeout=timeout))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
        return codes

    def logs(self) -> str:
        """Every worker's output, for assertion messages."""
        return "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')}" for log in self._logs)
