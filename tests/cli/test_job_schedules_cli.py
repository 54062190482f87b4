"""``masa-jobs schedules`` and ``trigger`` on schedules of ordinary jobs (SQLite store).

The schedules are stored as ``add_or_update_job_schedule`` stores them: a
``job_class`` of ``job:<job name>`` and the args as the payload. The commands
run in a subprocess on tests/cli/ops_app.py, which handles ``ops.ping``.
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
from masa_jobs.records import JobRecord, utcnow
from masa_jobs.stores.sqlite import SqliteJobStore
from tests.listing import all_jobs

from ._cli import clean_env, run_cli

APP = "tests.cli.ops_app:container"
PING_ARGS = '{"text":"every night"}'


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
        for schedule_id, job_name in (("ping.nightly", "ops.ping"), ("old.job", "gone.job")):
            await store.upsert_schedule(
                ScheduleRecord(
                    id=schedule_id,
                    job_class=f"job:{job_name}",
                    cron_expression="0 3 * * *",
                    timezone="UTC",
                    next_fire_at=now + timedelta(hours=12),
                    created_at=now,
                    updated_at=now,
                    payload=PING_ARGS,
                )
            )


async def _jobs(path: Path) -> list[JobRecord]:
    async with opened(path) as store:
        return await all_jobs(store, None, limit=100)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.sqlite3"
    anyio.run(_seed, path)
    return path


def env(path: Path) -> dict[str, str]:
    return clean_env(MASA_JOBS_STORE__BACKEND="sqlite", MASA_JOBS_STORE__PATH=str(path))


def test_schedules_lists_job_schedules_with_their_args(path: Path) -> None:
    as_json = run_cli("schedules", APP, "--json", env=env(path))
    table = run_cli("schedules", APP, env=env(path))

    assert as_json.returncode == 0, as_json.stderr
    listed = json.loads(as_json.stdout)
    assert [(s["id"], s["job_class"], s["known"], s["args"]) for s in listed] == [
        ("old.job", "job:gone.job", False, {"text": "every night"}),
        ("ping.nightly", "job:ops.ping", True, {"text": "every night"}),
    ]
    assert table.returncode == 0, table.stderr
    for text in ("ping.nightly", "job:ops.ping", "old.job"):
        assert text in table.stdout


def test_trigger_enqueues_the_job_with_its_args(path: Path) -> None:
    result = run_cli("trigger", APP, "ping.nightly", env=env(path))

    assert result.returncode == 0, result.stderr
    [job] = anyio.run(_jobs, path)
    assert (job.name, job.payload) == ("ops.ping", PING_ARGS)
    assert f"job {job.id} enqueued" in result.stdout
