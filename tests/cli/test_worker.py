"""``masa-jobs worker APP``: starts, says so, stops gracefully; bad APP values are clear."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ._cli import RUN_TIMEOUT_SECONDS, clean_env, run_cli, running_cli

APP_MODULE = "tests.cli.worker_app"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def sqlite_env(folder: Path, **extra: str) -> dict[str, str]:
    """A durable store from the environment, as a worker process is configured."""
    path = str(folder / "jobs.sqlite3")
    return clean_env(MASA_JOBS_STORE__BACKEND="sqlite", MASA_JOBS_STORE__PATH=path, **extra)


def _stop(process: subprocess.Popen[str], signum: signal.Signals) -> int:
    process.send_signal(signum)
    return process.wait(timeout=RUN_TIMEOUT_SECONDS)


@pytest.mark.parametrize(
    ("attribute", "args", "env", "concurrency", "queues"),
    [
        pytest.param("container", (), {}, 10, "default", id="instance"),
        pytest.param(
            "create_container", ("--backend", "trio"), {}, 10, "default", id="factory-trio"
        ),
        pytest.param(
            "embedding",
            (),
            {"MASA_JOBS_OPTIONS__CONCURRENCY": "3", "MASA_JOBS_OPTIONS__QUEUES": "mail,default"},
            3,
            "mail,default",
            id="embedded-env",
        ),
        pytest.param(
            "container",
            ("--concurrency", "5", "--queues", "critical:2,default"),
            {"MASA_JOBS_OPTIONS__CONCURRENCY": "3", "MASA_JOBS_OPTIONS__QUEUES": "mail"},
            5,
            "critical:2,default",
            id="flags-over-env",
        ),
    ],
)
def test_worker_starts_then_stops_gracefully_on_sigterm(
    attribute: str,
    args: tuple[str, ...],
    env: dict[str, str],
    concurrency: int,
    queues: str,
    tmp_path: Path,
) -> None:
    app = f"{APP_MODULE}:{attribute}"
    with running_cli("worker", app, *args, env=sqlite_env(tmp_path, **env)) as (process, log):
        started = log.wait_for("masa-jobs worker", "started")
        assert f"store sqlite (SqliteJobStore(path='{tmp_path / 'jobs.sqlite3'}'))" in started
        assert "2 handlers for 2 job names" in started
        assert f"concurrency {concurrency}, queues {queues}" in started

        code = _stop(process, signal.SIGTERM)
        rest = log.rest()
    assert code == 0, rest
    assert "received SIGTERM" in rest
    assert "stopped gracefully" in rest


def test_worker_stops_gracefully_on_sigint(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path)
    with running_cli("worker", f"{APP_MODULE}:container", env=env) as (process, log):
        log.wait_for("masa-jobs worker", "started")
        code = _stop(process, signal.SIGINT)
        rest = log.rest()
    assert code == 0, rest
    assert "stopped gracefully" in rest
    assert "Traceback" not in rest


def test_a_second_signal_stops_at_once_with_exit_code_1() -> None:
    with running_cli("worker", f"{APP_MODULE}:busy_container") as (process, log):
        log.wait_for("nap started")
        process.send_signal(signal.SIGTERM)
        log.wait_for("received SIGTERM")
        code = _stop(process, signal.SIGINT)
        rest = log.rest()
    assert code == 1, rest
    assert "stopped at once" in rest


@pytest.mark.parametrize(
    ("app", "env", "message"),
    [
        pytest.param(
            "no_such_module:app", {}, "cannot import module 'no_such_module'", id="module"
        ),
        pytest.param(APP_MODULE, {}, "APP must be 'module:attribute'", id="no-attribute"),
        pytest.param(f"{APP_MODULE}:missing", {}, "has no attribute 'missing'", id="missing"),
        pytest.param(f"{APP_MODULE}:AppContainer", {}, "not an instance", id="class"),
        pytest.param(f"{APP_MODULE}:needs_arguments", {}, "takes arguments", id="factory-args"),
        pytest.param(f"{APP_MODULE}:not_a_container", {}, "is a str, not a container", id="str"),
        pytest.param(
            f"{APP_MODULE}:container",
            {"MASA_JOBS_STORE__BACKEND": "nope"},
            "unknown store backend 'nope'",
            id="backend",
        ),
        pytest.param(
            f"{APP_MODULE}:container",
            {"MASA_JOBS_OPTIONS__POLL_INTERVAL": "-1"},
            "options.poll_interval",
            id="option",
        ),
        pytest.param(
            f"{APP_MODULE}:container",
            {"MASA_JOBS_OPTIONS__DISABLE_BACKGROUND_JOB": "true"},
            "disable_background_job",
            id="disabled",
        ),
        pytest.param(
            f"{APP_MODULE}:container",
            {
                "MASA_JOBS_STORE__BACKEND": "sqlite",
                "MASA_JOBS_STORE__PATH": "/no/such/folder/jobs.sqlite3",
            },
            "/no/such/folder/jobs.sqlite3",
            id="store-unreachable",
        ),
    ],
)
def test_bad_app_or_config_is_one_clear_line_and_exit_code_2(
    app: str, env: dict[str, str], message: str
) -> None:
    result = run_cli("worker", app, env=clean_env(**env))

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_a_worker_on_the_memory_store_with_nothing_to_run_is_refused() -> None:
    result = run_cli("worker", f"{APP_MODULE}:container", env=clean_env())

    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: the store is the in-memory one")
    assert "MASA_JOBS_STORE__BACKEND" in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr


def test_a_store_whose_driver_needs_asyncio_refuses_trio_in_one_line() -> None:
    env = clean_env(MASA_JOBS_STORE__BACKEND="redis", MASA_JOBS_STORE__URL="redis://127.0.0.1:1/0")
    result = run_cli("worker", f"{APP_MODULE}:container", "--backend", "trio", env=env)

    assert result.returncode == 2, result.stderr
    assert (
        result.stderr
        == "error: the redis store's driver runs on asyncio only: drop --backend trio\n"
    )
