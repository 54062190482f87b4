"""``masa-jobs health APP``: exit 0 healthy, 1 unhealthy, 2 for a usage error."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from ._cli import RUN_TIMEOUT_SECONDS, clean_env, run_cli, running_cli

APP = "tests.cli.worker_app:container"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def sqlite_env(folder: Path) -> dict[str, str]:
    path = str(folder / "jobs.sqlite3")
    return clean_env(MASA_JOBS_STORE__BACKEND="sqlite", MASA_JOBS_STORE__PATH=path)


def test_a_store_without_a_live_worker_is_unhealthy(tmp_path: Path) -> None:
    result = run_cli("health", APP, env=sqlite_env(tmp_path))

    assert result.returncode == 1, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "UNHEALTHY"
    assert lines[1].split()[:3] == ["ok", "store", "answered"]
    assert "FAIL  workers     no live worker" in result.stdout
    assert "ok    oldest_due" in result.stdout
    assert "ok    leases" in result.stdout


def test_a_store_with_a_live_worker_is_healthy_also_as_json(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path)
    with running_cli("worker", APP, env=env) as (process, log):
        log.wait_for("masa-jobs worker", "started")
        human = run_cli("health", APP, env=env)
        as_json = run_cli("health", APP, "--json", env=env)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=RUN_TIMEOUT_SECONDS) == 0

    assert human.returncode == 0, human.stdout + human.stderr
    assert human.stdout.startswith("healthy\n")
    assert "ok    workers     1 live worker, 0 jobs running" in human.stdout
    report = json.loads(as_json.stdout)
    assert as_json.returncode == 0
    assert report["healthy"] is True
    assert [check["name"] for check in report["checks"]] == [
        "store",
        "workers",
        "oldest_due",
        "leases",
    ]
    assert all(check["ok"] for check in report["checks"])


def test_a_store_that_cannot_be_opened_is_unhealthy(tmp_path: Path) -> None:
    env = clean_env(
        MASA_JOBS_STORE__BACKEND="sqlite",
        MASA_JOBS_STORE__PATH=str(tmp_path / "missing" / "jobs.sqlite3"),
    )

    result = run_cli("health", APP, "--json", env=env)

    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    assert report["healthy"] is False
    store = report["checks"][0]
    assert store["name"] == "store"
    assert store["detail"].startswith("cannot open the store: ")
    assert "does not exist" in store["detail"]


def test_max_due_age_is_checked_and_a_bad_app_is_a_usage_error(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path)

    zero = run_cli("health", APP, "--max-due-age", "0", env=env)
    missing = run_cli("health", "no_such_module:container", env=env)

    assert zero.returncode == 2
    assert "--max-due-age" in zero.stderr
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: cannot import module 'no_such_module'")


def test_the_memory_store_gets_a_warning() -> None:
    result = run_cli("health", "tests.cli.worker_app:busy_container")

    assert result.returncode == 1
    assert "warning: the memory store keeps jobs inside the process" in result.stderr


def test_help_describes_the_checks_and_exit_codes() -> None:
    result = run_cli("health", "--help", env=clean_env(COLUMNS="200"))

    assert result.returncode == 0
    for fragment in ("APP", "--json", "--max-due-age", "live", "lease", "Exit code 0"):
        assert fragment in result.stdout
