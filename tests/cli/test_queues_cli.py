"""``masa-jobs queues``, ``pause-queue`` and ``resume-queue`` (SQLite store), and
``masa-jobs worker --queues``.

The commands run in a subprocess on tests/cli/ops_app.py, like the other
operator commands; the paused set is read back from the store itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import pytest

from masa_jobs.stores.sqlite import SqliteJobStore

from ._cli import clean_env, run_cli

APP = "tests.cli.ops_app:container"


async def _paused(path: Path) -> set[str]:
    store = SqliteJobStore(path)
    await store.open()
    try:
        return await store.paused_queues()
    finally:
        await store.aclose()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.sqlite3"


def env(path: Path) -> dict[str, str]:
    return clean_env(MASA_JOBS_STORE__BACKEND="sqlite", MASA_JOBS_STORE__PATH=str(path))


def test_pause_list_and_resume_a_queue(path: Path) -> None:
    paused = run_cli("pause-queue", APP, "reports", env=env(path))
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout == "paused queue reports\n"
    assert anyio.run(_paused, path) == {"reports"}

    listed = run_cli("queues", APP, env=env(path))
    assert listed.stdout == "paused queues: reports\n"
    as_json = run_cli("queues", APP, "--json", env=env(path))
    assert json.loads(as_json.stdout) == {"paused": ["reports"]}

    resumed = run_cli("resume-queue", APP, "reports", env=env(path))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout == "resumed queue reports\n"
    assert anyio.run(_paused, path) == set()
    assert run_cli("queues", APP, env=env(path)).stdout == "no queue is paused\n"


def test_a_bad_queue_name_is_one_line_and_changes_nothing(path: Path) -> None:
    result = run_cli("pause-queue", APP, "two words", env=env(path))

    assert result.returncode != 0
    assert "not a valid queue name" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert anyio.run(_paused, path) == set()


def test_the_worker_refuses_a_bad_queues_flag(path: Path) -> None:
    result = run_cli("worker", APP, "--queues", "a,*", env=env(path))

    assert result.returncode != 0
    assert "stands alone" in result.stderr
