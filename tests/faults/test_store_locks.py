"""Renewals and outcomes racing on overlapping rows never deadlock (PostgreSQL).

Store level, no workers: each round claims a set of jobs, then renews two
overlapping subsets and records outcomes for two other overlapping subsets,
all four statements at once, each listing its ids in a random order. Rows
are locked in id order (``masa_jobs/stores/base.py``), so no round may fail;
fencing means each outcome applies once, whichever statement gets there first
(one history event), and the other statement answers it as applied, as a
send again after a lost reply is answered.
"""

from __future__ import annotations

import random
import time
from datetime import timedelta
from uuid import uuid4

import anyio
import asyncpg
import pytest

from masa_jobs.records import JobOutcome, JobRecord, JobState
from masa_jobs.stores.postgres import PostgresJobStore
from tests.services import POSTGRES_DSN

from .stores import FaultStore

pytestmark = [pytest.mark.anyio, pytest.mark.faults]

ROUNDS = 1000
JOBS = 30
SUBSET = 18
WORKER = "faults-lock-stress"


async def test_concurrent_renewals_and_outcomes_never_deadlock(postgres_store: FaultStore) -> None:
    store = PostgresJobStore.from_settings(
        {"dsn": POSTGRES_DSN, "schema": postgres_store.namespace, "pool_max_size": 8}
    )
    seed = time.time_ns()
    rng = random.Random(seed)
    await store.open()
    reader = await asyncpg.connect(POSTGRES_DSN)
    try:
        now = await store.now()
        await store.add(
            [
                JobRecord(
                    id=uuid4().hex,
                    name="faults-short",
                    payload="{}",
                    state=JobState.ENQUEUED,
                    created_at=now,
                    next_try_at=now,
                )
                for _ in range(JOBS)
            ]
        )
        for round_number in range(ROUNDS):
            problems = await _round(store, rng)
            problems += await _applied_twice(reader, postgres_store.namespace)
            assert not problems, f"round {round_number} (seed {seed}): " + "; ".join(problems)
    finally:
        await reader.close()
        await store.aclose()


async def _applied_twice(reader: asyncpg.Connection, schema: str) -> list[str]:
    """Jobs whose last two history events are of one attempt: an outcome
    applied twice under one token (each round adds one event per job)."""
    twice = await reader.fetch(
        f'SELECT id FROM "{schema}".jobs '
        "WHERE history->-1->>'attempt' = history->-2->>'attempt' ORDER BY id"
    )
    if not twice:
        return []
    return [f"outcomes applied twice under one token: {[row['id'] for row in twice]}"]


async def _round(store: PostgresJobStore, rng: random.Random) -> list[str]:
    held = await store.claim(WORKER, JOBS, timedelta(seconds=60))
    if len(held) != JOBS:
        return [f"claimed {len(held)} of {JOBS}: an outcome of the last round did not apply"]
    now = await store.now()
    outcomes = {
        record.id: JobOutcome(
            job_id=record.id,
            state=JobState.ENQUEUED,
            attempts=record.attempts,
            next_try_at=now,
            lease_token=record.lease_token,
        )
        for record in held
    }
    tokens = {record.id: record.lease_token or "" for record in held}
    renew = [rng.sample(list(tokens), SUBSET) for _ in range(2)]
    finish = [rng.sample(list(outcomes), SUBSET) for _ in range(2)]
    results: dict[str, set[str]] = {}

    async def extend(name: str, ids: list[str]) -> None:
        results[name] = await store.extend_leases(
            WORKER, {i: tokens[i] for i in ids}, timedelta(seconds=60)
        )

    async def record(name: str, ids: list[str]) -> None:
        results[name] = await store.finish(WORKER, [outcomes[i] for i in ids])

    async with anyio.create_task_group() as tg:
        tg.start_soon(extend, "renew0", renew[0])
        tg.start_soon(extend, "renew1", renew[1])
        tg.start_soon(record, "finish0", finish[0])
        tg.start_soon(record, "finish1", finish[1])
    problems = _fencing_problems(results, renew, finish)
    rest = [job for job in outcomes if job not in set(finish[0]) | set(finish[1])]
    applied = await store.finish(WORKER, [outcomes[job] for job in rest])
    if applied != set(rest):
        problems.append(f"outcomes of held jobs refused: {sorted(set(rest) - applied)}")
    return problems


def _fencing_problems(
    results: dict[str, set[str]], renew: list[list[str]], finish: list[list[str]]
) -> list[str]:
    problems = []
    for index, ids in enumerate(finish):
        # Applied by this statement or, first, by the other: answered either way.
        answered = results[f"finish{index}"]
        if answered != set(ids):
            problems.append(f"outcomes of held jobs refused: {sorted(set(ids) - answered)}")
    for index, ids in enumerate(renew):
        stray = results[f"renew{index}"] - set(ids)
        if stray:
            problems.append(f"renewed ids it was not given: {sorted(stray)}")
    return problems
