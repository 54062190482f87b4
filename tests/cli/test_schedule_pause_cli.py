"""``masa-jobs pause-schedule`` and ``resume-schedule`` (SQLite store).

The commands run in a subprocess on tests/cli/ops_app.py, like the other
operator commands, on a schedule of an ordinary job stored beforehand.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from masa_jobs import ScheduleRecord
from masa_jobs.records import utcnow
from masa_jobs.stores.sqlite import SqliteJobStore

from ._cli import clean_env, run_cli

APP = "tests.cli.ops_app:container"


@asynccontextmanager
async def opened(path: Path) -> AsyncIterator[SqliteJobStore]:
    store = SqliteJobStore(path)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


async def _seed(path: Path) -> None:
    now = utcnow()
    async with opened(path) as store:
        await store.upsert_schedule(
            ScheduleRecord(
                id="ping.nightly",
                job_class="job:ops.ping",
                cron_expression="0 3 * * *",
                timezone="UTC",
                next_fire_at=now + timedelta(hours=12),
                created_at=now,
                updated_at=now,
                payload='{"text":"every night"}',
            )
        )


async def _paused(path: Path) -> bool:
    async with opened(path) as store:
        schedule = await store.get_schedule("ping.nightly")
        assert schedule is not None
        return schedule.paused


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.sqlite3"
    anyio.run(_seed, path)
    return path


def env(path: Path) -> dict[str, str]:
    return clean_env(MASA_JOBS_STORE__BACKEND="sqlite", MASA_JOBS_STORE__PATH=str(path))


def listed_paused(path: Path) -> list[tuple[str, bool]]:
    result = run_cli("schedules", APP, "--json", env=env(path))
    assert result.returncode == 0, result.stderr
    return [(s["id"], s["paused"]) for s in json.loads(result.stdout)]


def test_pause_and_resume_a_schedule(path: Path) -> None:
    paused = run_cli("pause-schedule", APP, "ping.nightly", env=env(path))

    assert paused.returncode == 0, paused.stderr
    assert "paused ping.nightly" in paused.stdout
    assert anyio.run(_paused, path) is True
    assert listed_paused(path) == [("ping.nightly", True)]
    table = run_cli("schedules", APP, env=env(path))
    assert table.returncode == 0, table.stderr
    assert "paused" in table.stdout

    resumed = run_cli("resume-schedule", APP, "ping.nightly", env=env(path))

    assert resumed.returncode == 0, resumed.stderr
    assert "resumed ping.nightly" in resumed.stdout
    assert anyio.run(_paused, path) is False
    assert listed_paused(path) == [("ping.nightly", False)]


def test_a_paused_schedule_can_be_triggered(path: Path) -> None:
    run_cli("pause-schedule", APP, "ping.nightly", env=env(path))

    result = run_cli("trigger", APP, "ping.nightly", env=env(path))

    assert result.returncode == 0, result.stderr
    assert "enqueued" in result.stdout


@pytest.mark.parametrize("command", ["pause-schedule", "resume-schedule"])
def test_an_unknown_id_is_an_error_naming_the_fix(path: Path, command: str) -> None:
    result = run_cli(command, APP, "nope", env=env(path))

    assert result.returncode != 0
    assert "no recurring job with id 'nope'" in result.stderr
    assert "masa-jobs schedules APP" in result.stderr
