"""``masa-jobs dashboard APP``, run as an operator would, on a SQLite file.

The app (tests/cli/ops_app.py) has a worker and a scheduler that raise as
soon as they are run: the command must run neither, only open the store.
"""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx

from masa_jobs import JobState
from masa_jobs.records import JobInfo
from masa_jobs.stores.sqlite import SqliteJobStore
from tests.cli._cli import CLI, REPO_ROOT, STARTUP_TIMEOUT_SECONDS, clean_env

from .seed import new_job, run_to_death

APP = "tests.cli.ops_app:container"
# How often the test looks whether the server answers yet.
POLL_SECONDS = 0.05
STOP_TIMEOUT_SECONDS = 15.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def _seed(path: Path) -> str:
    store = SqliteJobStore(path)
    await store.open()
    try:
        job = new_job("ops.ping", {"text": "hello"}, created_at=await store.now())
        await run_to_death(store, job)
        return job.id
    finally:
        await store.aclose()


async def _state(path: Path, job_id: str) -> JobState | None:
    store = SqliteJobStore(path)
    await store.open()
    try:
        record = await store.get(job_id)
        return None if record is None else JobInfo.from_record(record).state
    finally:
        await store.aclose()


@contextmanager
def served(path: Path, *options: str) -> Iterator[httpx.Client]:
    """The command running on a free port; a client of it once it answers."""
    port = _free_port()
    env = clean_env(MASA_JOBS_STORE__BACKEND="sqlite", MASA_JOBS_STORE__PATH=str(path))
    with subprocess.Popen(
        [*CLI, "dashboard", APP, "--port", str(port), "--log-level", "warning", *options],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}")
        try:
            _wait_until_it_answers(client, process)
            yield client
        finally:
            client.close()
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=STOP_TIMEOUT_SECONDS)
        assert process.returncode == 0, err
        assert "ran a worker" not in err


def _wait_until_it_answers(client: httpx.Client, process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        if process.poll() is not None:
            raise AssertionError(f"the command ended: {process.communicate()}")
        try:
            client.get("/")
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(POLL_SECONDS)


def test_the_command_serves_the_stores_jobs_and_acts_on_them(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    dead = anyio.run(_seed, path)

    with served(path) as client:
        overview = client.get("/")
        assert overview.status_code == 200
        assert re.search(
            r'state-dead" href="/jobs\?state=dead">\s*<span class="count">1<', overview.text
        )
        page = client.get("/job", params={"id": dead})
        token = re.search(r'name="csrf" value="([0-9a-f]+)"', page.text)
        assert token is not None
        retried = client.post("/job/action", data={"id": dead, "action": "retry", "csrf": token[1]})
        assert retried.status_code == 303

    assert anyio.run(_state, path, dead) is JobState.ENQUEUED


def test_read_only_offers_no_action(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    dead = anyio.run(_seed, path)

    with served(path, "--read-only") as client:
        page = client.get("/job", params={"id": dead})
        assert page.status_code == 200
        assert "<form" not in page.text
        assert client.post("/job/action", data={"id": dead, "action": "retry"}).status_code == 403

    assert anyio.run(_state, path, dead) is JobState.DEAD


def test_a_missing_app_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [*CLI, "dashboard", "no_such_module:container", "--port", str(_free_port())],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=STOP_TIMEOUT_SECONDS * 2,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot import module 'no_such_module'")
