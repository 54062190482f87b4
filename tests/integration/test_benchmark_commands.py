"""The benchmark commands that reach into the worker still run (no figure is judged).

``tests.benchmarks.pickup_breakdown`` notes moments inside both processes by
wrapping internal calls; a renamed one would silently drop a step, or fail.
Run as a command, as a reader of docs/performance.md would, in a process of
its own: its wrappers never touch this test session.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli._cli import REPO_ROOT, clean_env
from tests.services import POSTGRES_DSN, REDIS_URL, require_service

from ..benchmarks.pickup_breakdown import STEPS

# A worker process starts and serves a few jobs: seconds, not minutes.
COMMAND_TIMEOUT_SECONDS = 120


@pytest.mark.parametrize(
    ("store", "service", "setting", "address"),
    [
        ("redis", "Redis", "MASA_JOBS_STORE__URL", REDIS_URL),
        ("postgres", "PostgreSQL", "MASA_JOBS_STORE__DSN", POSTGRES_DSN),
    ],
)
def test_pickup_breakdown_times_every_step(
    store: str, service: str, setting: str, address: str
) -> None:
    require_service(service, address)
    env = clean_env(**{setting: address})
    command = [sys.executable, "-m", "tests.benchmarks.pickup_breakdown", "--store", store]

    done = subprocess.run(
        [*command, "--samples", "5", "--gap", "0.001"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{store}: 5 pickups")
    for step in STEPS:
        assert step in done.stdout, f"{step!r} missing:\n{done.stdout}"
