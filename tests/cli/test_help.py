"""Every command explains itself, and importing the CLI registers no job handlers."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from masa_jobs import __version__
from masa_jobs.cli import app

from ._cli import REPO_ROOT, RUN_TIMEOUT_SECONDS

runner = CliRunner()


@pytest.mark.parametrize(
    ("command", "fragments"),
    [
        (
            (),
            ("demo", "worker", "bench", "jobs", "retry", "purge", "schedules", "workers", "health"),
        ),
        (("demo",), ("sign-up", "--backend")),
        (
            ("worker",),
            ("APP", "SIGTERM", "--concurrency", "--log-level", "--log-format", "--metrics-port"),
        ),
        (("bench",), ("--jobs", "--concurrency", "--latency-samples", "--json", "--store")),
        (("jobs",), ("APP", "newest jobs", "--state", "--name", "--limit", "--cursor", "--json")),
        (("show",), ("APP", "JOB_ID", "last error", "--json")),
        (("retry",), ("APP", "JOB_ID", "dead jobs again")),
        (("cancel",), ("APP", "JOB_ID", "not finished")),
        (("delete",), ("APP", "JOB_ID", "Remove jobs")),
        (("purge",), ("APP", "--older-than", "finished jobs", "how many")),
        (("schedules",), ("APP", "recurring jobs", "known", "--json")),
        (("trigger",), ("APP", "SCHEDULE_ID", "once now")),
        (("pause-schedule",), ("APP", "SCHEDULE_ID", "resume-schedule", "triggered")),
        (("resume-schedule",), ("APP", "SCHEDULE_ID", "paused", "missed_ticks")),
        (("workers",), ("APP", "live workers", "--json")),
        (("health",), ("APP", "--max-due-age", "--json", "Exit code 0")),
        (("dashboard",), ("APP", "--host", "--port", "--read-only", "no worker")),
    ],
)
def test_help_describes_the_command(command: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    result = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    assert "Usage" in result.output
    for fragment in fragments:
        assert fragment in result.output


def test_no_arguments_shows_help() -> None:
    result = runner.invoke(app, [], terminal_width=200)
    assert "Usage" in result.output
    assert "demo" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"masa-jobs {__version__}"


def test_importing_the_cli_registers_no_demo_or_bench_handlers() -> None:
    # In a fresh interpreter: this test process may import other handlers.
    code = (
        "import sys, masa_jobs, masa_jobs.cli\n"
        "from masa_jobs import JobRegistry\n"
        "names = JobRegistry.discover().names()\n"
        "assert not [n for n in names if n.startswith(('demo.', 'bench.'))], names\n"
        "loaded = [m for m in sys.modules if m.startswith('masa_jobs.cli._')]\n"
        "assert not [m for m in loaded if 'demo_jobs' in m or 'bench_jobs' in m], loaded\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stderr
