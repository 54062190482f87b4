"""Unique keys hold across processes: the store, not a read in Python, decides.

Five processes open their own store on one database (one SQLite file, one
PostgreSQL schema, one Redis prefix), meet at a barrier, and each adds ten
jobs with the same unique key at once: fifty concurrent enqueues. Exactly
one job is stored, and every enqueue answers its id.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from multiprocessing.synchronize import Barrier
from pathlib import Path
from typing import Any
from uuid import uuid4

import anyio
import anyio.to_thread
import pytest

from masa_jobs import JobRecord, JobState, UniqueScope
from masa_jobs.records import utcnow
from masa_jobs.stores._backends import build_store
from tests.listing import all_jobs
from tests.services import (
    POSTGRES_DSN,
    REDIS_URL,
    delete_redis_prefix,
    drop_postgres_schema,
    require_service,
    unique_name,
)

pytestmark = pytest.mark.anyio

PROCESSES = 5
ADDS_PER_PROCESS = 10
# Far above the time fifty inserts take: reached only if a process hangs.
RACE_TIMEOUT_SECONDS = 60.0


def _record(key: str) -> JobRecord:
    now = utcnow()
    return JobRecord(
        id=uuid4().hex,
        name="race.job",
        payload="{}",
        state=JobState.ENQUEUED,
        created_at=now,
        next_try_at=now,
        unique_key=key,
        unique_scope=UniqueScope.ACTIVE,
    )


async def _burst(settings: dict[str, Any], key: str, barrier: Barrier) -> list[str]:
    store = build_store(settings)
    await store.open()
    answers: list[str] = []
    try:
        records = [_record(key) for _ in range(ADDS_PER_PROCESS)]
        await anyio.to_thread.run_sync(barrier.wait, RACE_TIMEOUT_SECONDS)

        async def add(record: JobRecord) -> None:
            answers.extend(await store.add([record]))

        async with anyio.create_task_group() as adds:
            for record in records:
                adds.start_soon(add, record)
    finally:
        await store.aclose()
    return answers


def _enqueue_at_once(
    settings: dict[str, Any], key: str, barrier: Barrier, results: Any
) -> None:  # pragma: no cover - runs in a child process
    try:
        results.put(anyio.run(_burst, settings, key, barrier))
    except BaseException as exc:
        # The parent fails with the reason instead of waiting for a timeout.
        results.put(f"{type(exc).__name__}: {exc}")
        raise


def _settings(backend: str, tmp_path: Path, name: str) -> dict[str, Any]:
    if backend == "sqlite":
        return {"backend": "sqlite", "path": str(tmp_path / "race.sqlite3")}
    if backend == "postgres":
        require_service("PostgreSQL", POSTGRES_DSN)
        return {"backend": "postgres", "dsn": POSTGRES_DSN, "schema": name}
    require_service("Redis", REDIS_URL)
    return {"backend": "redis", "url": REDIS_URL, "prefix": name}


@pytest.fixture
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    name = unique_name()
    settings = _settings(request.param, tmp_path, name)
    yield settings
    if request.param == "postgres":
        drop_postgres_schema(name)
    elif request.param == "redis":
        delete_redis_prefix(name)


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("settings", ["sqlite", "postgres", "redis"], indirect=True)
async def test_fifty_concurrent_enqueues_of_one_key_store_one_job(
    settings: dict[str, Any],
) -> None:
    store = build_store(settings)
    await store.open()  # the schema exists before the race
    try:
        answers = await anyio.to_thread.run_sync(_race, settings)
        jobs = await all_jobs(store)
    finally:
        await store.aclose()

    assert len(answers) == PROCESSES * ADDS_PER_PROCESS
    assert len(jobs) == 1
    assert set(answers) == {jobs[0].id}


def _race(settings: dict[str, Any]) -> list[str]:
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(PROCESSES)
    results = context.Queue()
    key = f"race.job/{uuid4().hex}"
    processes = [
        context.Process(target=_enqueue_at_once, args=(settings, key, barrier, results))
        for _ in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    answers: list[str] = []
    for _ in processes:
        answer = results.get(timeout=RACE_TIMEOUT_SECONDS)
        assert isinstance(answer, list), f"an enqueuing process failed: {answer}"
        answers.extend(answer)
    for process in processes:
        process.join(timeout=RACE_TIMEOUT_SECONDS)
        assert process.exitcode == 0
    return answers
