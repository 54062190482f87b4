"""``masa-jobs worker``: ``--metrics-port`` serves /metrics, ``--log-format json`` logs JSON."""

from __future__ import annotations

import json
import re
import signal
import socket
import sys
import urllib.request
from pathlib import Path

import pytest

from ._cli import RUN_TIMEOUT_SECONDS, clean_env, run_cli, running_cli

APP = "tests.cli.worker_app:container"

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def sqlite_env(folder: Path, **extra: str) -> dict[str, str]:
    path = str(folder / "jobs.sqlite3")
    return clean_env(MASA_JOBS_STORE__BACKEND="sqlite", MASA_JOBS_STORE__PATH=path, **extra)


def test_the_worker_serves_metrics_with_the_store_gauges(tmp_path: Path) -> None:
    args = ("worker", APP, "--metrics-port", "0", "--backend", "trio")
    with running_cli(*args, env=sqlite_env(tmp_path)) as (process, log):
        line = log.wait_for("metrics at http://127.0.0.1:")
        log.wait_for("masa-jobs worker", "started")
        found = re.search(r"http://127\.0\.0\.1:\d+/metrics", line)
        assert found is not None
        with urllib.request.urlopen(found.group(0), timeout=RUN_TIMEOUT_SECONDS) as answer:
            body = answer.read().decode()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=RUN_TIMEOUT_SECONDS)
        rest = log.rest()

    assert code == 0, rest
    assert "masa_jobs_store_up 1.0" in body
    assert "masa_jobs_workers_live 1.0" in body
    assert 'masa_jobs_jobs{state="enqueued"} 0.0' in body
    assert "# TYPE masa_jobs_jobs_started_total counter" in body


def test_a_metrics_port_in_use_is_a_usage_error(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_cli("worker", APP, "--metrics-port", port, env=sqlite_env(tmp_path))

    assert result.returncode == 2
    assert f"error: cannot serve metrics on 127.0.0.1:{port}" in result.stderr
    assert "choose another --metrics-port" in result.stderr


def test_metrics_off_refuses_a_metrics_port(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path, MASA_JOBS_OPTIONS__METRICS="false")

    result = run_cli("worker", APP, "--metrics-port", "0", env=env)

    assert result.returncode == 2
    assert "options.metrics is false" in result.stderr
    assert "MASA_JOBS_OPTIONS__METRICS=true" in result.stderr


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        pytest.param(("--log-format", "json"), {}, id="flag"),
        pytest.param((), {"MASA_JOBS_OPTIONS__LOG_FORMAT": "json"}, id="option"),
    ],
)
def test_json_logs_are_one_object_a_line(
    args: tuple[str, ...], extra: dict[str, str], tmp_path: Path
) -> None:
    env = sqlite_env(tmp_path, **extra)
    with running_cli("worker", APP, *args, env=env) as (process, log):
        started = log.wait_for("masa-jobs worker", "started")
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=RUN_TIMEOUT_SECONDS)
        rest = log.rest()

    assert code == 0, rest
    line = json.loads(started)
    assert line["level"] == "INFO"
    assert line["logger"] == "masa_jobs.cli"
    assert line["message"].startswith("masa-jobs worker ")
    for text in rest.splitlines():
        assert isinstance(json.loads(text), dict)


def test_the_flag_wins_over_the_option(tmp_path: Path) -> None:
    env = sqlite_env(tmp_path, MASA_JOBS_OPTIONS__LOG_FORMAT="json")
    with running_cli("worker", APP, "--log-format", "text", env=env) as (process, log):
        started = log.wait_for("masa-jobs worker", "started")
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=RUN_TIMEOUT_SECONDS)

    assert not started.startswith("{")
    assert " INFO    masa_jobs.cli: masa-jobs worker " in started


def test_help_lists_the_flags() -> None:
    result = run_cli("worker", "--help", env=clean_env(COLUMNS="200"))

    assert result.returncode == 0
    for fragment in ("--metrics-port", "--metrics-host", "--log-format", "metrics extra"):
        assert fragment in result.stdout
