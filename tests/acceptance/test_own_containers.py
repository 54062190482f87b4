"""A project with its own ``containers.py``, through every entry point a user has.

The sample project (own_containers_project/) is dependency-injector's layout:
``containers.py`` with ``AppContainer(BackgroundJobContainer)`` and a service,
``jobs.py`` whose handler gets that service injected, ``app.py`` a FastAPI
app, ``enqueue.py`` a script. Each entry point runs as its own process with
the project directory as the working directory, configured only by
``MASA_JOBS_...`` variables, as in production: plain ``python`` (a script and
``-c``), ``uvicorn``, ``masa-jobs worker containers:container`` and
``pytest``. The jobs the producers enqueue run in the separate worker, with
the project's service.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from masa_jobs.containers import BackgroundJobContainer

from masa_jobs import JobInfo, JobState
from tests.services import POSTGRES_DSN, require_service, unique_name

pytestmark = [pytest.mark.acceptance, pytest.mark.skipif(sys.platform == "win32", reason="POSIX")]

PROJECT = Path(__file__).parent / "own_containers_project"
MASA_JOBS = Path(sys.executable).parent / "masa-jobs"
# Generous bounds for a loaded machine; a passing run takes a fraction of them.
RUN_TIMEOUT = 60.0
JOBS_TIMEOUT = 30.0
PORT_TIMEOUT = 30.0
ENQUEUE_ONE = (
    "import anyio\n"
    "from containers import container\n"
    "from jobs import Greet\n"
    "from masa_jobs import BackgroundJobManager, MasaApp\n"
    "async def main():\n"
    "    async with MasaApp.lifespan():\n"
    "        print(await BackgroundJobManager.enqueue(Greet(name='linus')))\n"
    "MasaApp.build(container)\n"
    "anyio.run(main)\n"
)


def project_env(store: Mapping[str, str], greetings: Path, **extra: str) -> dict[str, str]:
    """The test's environment without MASA_JOBS_... settings of its own, plus the project's."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("MASA_JOBS_") and k != "PYTHONPATH"
    }
    env.update(store)
    env["MASA_JOBS_OPTIONS__JOB_PACKAGES"] = "jobs"
    env["GREETINGS_FILE"] = str(greetings)
    env.update(extra)
    return env


def producer_env(store: Mapping[str, str], greetings: Path) -> dict[str, str]:
    """A process that only enqueues: the worker runs elsewhere."""
    return project_env(store, greetings, MASA_JOBS_OPTIONS__DISABLE_BACKGROUND_JOB="true")


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        args,
        cwd=PROJECT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result


@contextmanager
def background(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[str]]:
    """A long-running process, stopped with SIGTERM (killed if it does not stop) on exit."""
    with log.open("w", encoding="utf-8") as out:
        process = subprocess.Popen(
            args, cwd=PROJECT, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=out, text=True
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=RUN_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[str], log: Path) -> None:
    deadline = time.monotonic() + PORT_TIMEOUT
    while time.monotonic() < deadline:
        assert process.poll() is None, f"uvicorn exited:\n{log.read_text()}"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(
        f"uvicorn did not listen on {port} in {PORT_TIMEOUT} s:\n{log.read_text()}"
    )


def finished_jobs(store: dict[str, Any], job_ids: list[str]) -> list[JobInfo]:
    """Wait, reading the shared store from this process, until every job is finished."""
    return anyio.run(_finished_jobs, store, job_ids)


async def _finished_jobs(store: dict[str, Any], job_ids: list[str]) -> list[JobInfo]:
    container = BackgroundJobContainer()
    container.config.from_dict({"store": store})
    manager = container.job_manager()
    await container.job_store().open()
    try:
        with anyio.fail_after(JOBS_TIMEOUT):
            while True:
                infos = [await manager.get(job_id) for job_id in job_ids]
                if all(info is not None and info.state.is_finished for info in infos):
                    return [info for info in infos if info is not None]
                await anyio.sleep(0.05)
    finally:
        await container.job_store().aclose()


def enqueue_from_the_web(port: int, name: str) -> str:
    response = httpx.post(f"http://127.0.0.1:{port}/greet/{name}", timeout=RUN_TIMEOUT)
    response.raise_for_status()
    job_id: str = response.json()["job_id"]
    return job_id


def web_and_worker_run_the_jobs(
    store_env: dict[str, str], store: dict[str, Any], tmp_path: Path
) -> tuple[list[str], str]:
    """uvicorn enqueues, a separate ``masa-jobs worker`` runs; the web log names the store."""
    greetings = tmp_path / "greetings.txt"
    port = free_port()
    web_log, worker_log = tmp_path / "web.log", tmp_path / "worker.log"
    uvicorn = [sys.executable, "-m", "uvicorn", "app:app", "--host", "127.0.0.1"]
    with background(
        [*uvicorn, "--port", str(port)], producer_env(store_env, greetings), web_log
    ) as web:
        wait_for_port(port, web, web_log)
        job_ids = [enqueue_from_the_web(port, name) for name in ("ada", "grace")]
        worker_env = project_env(store_env, greetings)
        with background([str(MASA_JOBS), "worker", "containers:container"], worker_env, worker_log):
            infos = finished_jobs(store, job_ids)
    assert [(i.state, i.attempts) for i in infos] == [(JobState.SUCCEEDED, 1)] * 2, infos
    greeted = set(greetings.read_text(encoding="utf-8").splitlines())
    assert {"hello ada", "hello grace"} <= greeted
    return job_ids, web_log.read_text(encoding="utf-8")


def test_every_entry_point_of_a_project_with_its_own_containers_py(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    store_env = {"MASA_JOBS_STORE__BACKEND": "sqlite", "MASA_JOBS_STORE__PATH": str(path)}
    store = {"backend": "sqlite", "path": str(path)}
    greetings = tmp_path / "greetings.txt"
    producer = producer_env(store_env, greetings)

    # plain python: a script, and -c (the project's directory first on the path).
    script = run([sys.executable, "enqueue.py", "alan", "margaret"], producer).stdout.split()
    inline = run([sys.executable, "-c", ENQUEUE_ONE], producer).stdout.split()
    # uvicorn enqueues, and the worker (console script) runs everything.
    _, web_log = web_and_worker_run_the_jobs(store_env, store, tmp_path)
    infos = finished_jobs(store, [*script, *inline])

    assert [(i.state, i.attempts) for i in infos] == [(JobState.SUCCEEDED, 1)] * 3, infos
    assert sorted(greetings.read_text(encoding="utf-8").splitlines()) == [
        "hello ada",
        "hello alan",
        "hello grace",
        "hello linus",
        "hello margaret",
    ]
    assert f"masa-jobs: store SqliteJobStore(path='{path}'), worker off" in web_log


def test_pytest_in_the_project_uses_its_containers_py(tmp_path: Path) -> None:
    env = project_env({}, tmp_path / "unused.txt")
    result = run([sys.executable, "-m", "pytest", "-q", "check_greeter.py"], env)

    assert "1 passed" in result.stdout


def test_a_producer_only_process_on_the_memory_store_fails_at_build(tmp_path: Path) -> None:
    # The mistake the environment used to hide: no store configured anywhere.
    env = producer_env({}, tmp_path / "greetings.txt")
    result = subprocess.run(
        [sys.executable, "enqueue.py", "ada"],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )

    assert result.returncode != 0
    assert "ConfigurationError" in result.stderr
    assert "MASA_JOBS_STORE__BACKEND" in result.stderr
    assert result.stdout == ""


def test_web_process_and_worker_configured_by_the_environment_on_postgres(
    tmp_path: Path,
) -> None:
    require_service("PostgreSQL", POSTGRES_DSN)
    schema = unique_name("masa_own_containers")
    store_env = {
        "MASA_JOBS_STORE__BACKEND": "postgres",
        "MASA_JOBS_STORE__DSN": POSTGRES_DSN,
        "MASA_JOBS_STORE__SCHEMA": schema,
    }
    store = {"backend": "postgres", "dsn": POSTGRES_DSN, "schema": schema}
    try:
        _, web_log = web_and_worker_run_the_jobs(store_env, store, tmp_path)
    finally:
        anyio.run(_drop_schema, schema)

    assert "masa-jobs: store PostgresJobStore(" in web_log
    assert f"schema='{schema}'), worker off" in web_log


async def _drop_schema(schema: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(POSTGRES_DSN)
    try:
        # The name is generated by unique_name, never taken from input.
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()
