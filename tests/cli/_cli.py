"""Run the ``masa-jobs`` command in a subprocess, as a user or a supervisor would."""

from __future__ import annotations

import os
import pty
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parents[2]
CLI = (sys.executable, "-m", "masa_jobs.cli")
# Generous bounds for a loaded CI machine; a passing run takes a fraction of them.
RUN_TIMEOUT_SECONDS = 60.0
STARTUP_TIMEOUT_SECONDS = 20.0


# Variables that would change what the command prints or how it is configured.
_DROPPED = ("MASA_JOBS_", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS")


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without settings that change the output, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED)}
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The command with stdin that is not a terminal (and empty), as in a script."""
    return subprocess.run(
        [*CLI, *args],
        cwd=REPO_ROOT,
        env=env if env is not None else clean_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )


def run_cli_on_terminal(
    *args: str, typed: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The command with a terminal (a pseudo-terminal) as stdin, ``typed`` typed into it.

    stdout and stderr are pipes, so the output is exactly what the command
    wrote (the terminal's echo of ``typed`` stays on the terminal's side).
    """
    controller, terminal = pty.openpty()
    try:
        with subprocess.Popen(
            [*CLI, *args],
            cwd=REPO_ROOT,
            env=env if env is not None else clean_env(),
            stdin=terminal,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            # The terminal keeps a typed line until the command reads it.
            os.write(controller, typed.encode())
            try:
                stdout, stderr = process.communicate(timeout=RUN_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
    finally:
        os.close(terminal)
        os.close(controller)
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)


@contextmanager
def running_cli(
    *args: str, env: dict[str, str] | None = None
) -> Iterator[tuple[subprocess.Popen[str], LineReader]]:
    """The command running in the background, with a reader on its stderr.

    On exit a process still running is killed, and its pipes are closed.
    """
    with subprocess.Popen(
        [*CLI, *args],
        cwd=REPO_ROOT,
        env=env if env is not None else clean_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        assert process.stderr is not None
        try:
            yield process, LineReader(process.stderr)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()


class LineReader:
    """Reads a stream on a thread so that a test can wait for a line with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._seen: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for(self, *fragments: str, timeout: float = STARTUP_TIMEOUT_SECONDS) -> str:
        """The first line containing every fragment; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(remaining, 0))
            except queue.Empty:
                line = None
                remaining = 0
            if line is None:
                seen = "".join(self._seen)
                reason = "timed out" if remaining <= 0 else "stream closed"
                raise AssertionError(f"{reason} waiting for {fragments!r}; got:\n{seen}")
            self._seen.append(line)
            if all(fragment in line for fragment in fragments):
                return line

    def rest(self, timeout: float = RUN_TIMEOUT_SECONDS) -> str:
        """Everything read so far and until the stream closes."""
        self._thread.join(timeout)
        while not self._lines.empty():
            line = self._lines.get_nowait()
            if line is not None:
                self._seen.append(line)
        return "".join(self._seen)
