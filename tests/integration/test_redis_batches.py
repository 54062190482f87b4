"""The Redis store's packed arguments and batched index changes against a real
server: what the contract suite, whose batches are small, cannot show. A
script that moves many jobs gathers its sorted-set changes into one command
per set; new jobs and outcomes travel packed, with texts of any character;
a claim reads past only the excluded jobs it meets; each script carries the
helpers it names."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import timedelta
from typing import Any, cast
from uuid import uuid4

import pytest
import redis.asyncio

from masa_jobs import JobState
from masa_jobs.records import (
    DEFAULT_QUEUE,
    MIN_PRIORITY,
    JobEvent,
    JobOutcome,
    JobRecord,
    UniqueScope,
    utcnow,
)
from masa_jobs.stores._redis_scripts import (
    _PRELUDE_DEFINITIONS,
    DUE_HEAD,
    INDEX_BATCH_MIN,
    PRIORITY_SPAN_MS,
    SCRIPTS,
)
from tests.integration.test_redis import opened, raw_redis
from tests.integration.test_redis_listing import indexes_agree_with_jobs

pytestmark = pytest.mark.anyio

LEASE = timedelta(seconds=30)
# More jobs than a script moves one by one: their index changes go in batches.
MANY = 3 * INDEX_BATCH_MIN
# Texts the packed arguments must carry as they are: separators of the packing,
# characters of several UTF-8 bytes, a surrogate-free astral one, NUL, newlines.
ODD = "a,b:c;d+é\u3042🚀\x00\r\n"
# The per-queue index of each state that has one.
_INDEX_OF_STATE = {"scheduled": "due", "enqueued": "due", "processing": "leases"}


def new_job(**fields: Any) -> JobRecord:
    now = utcnow()
    values: dict[str, Any] = {
        "id": uuid4().hex,
        "name": "batch.job",
        "payload": '{"n": 1}',
        "state": JobState.ENQUEUED,
        "created_at": now,
        "next_try_at": now,
    }
    return JobRecord(**{**values, **fields})


def outcome(record: JobRecord, state: JobState, **fields: Any) -> JobOutcome:
    values: dict[str, Any] = {
        "job_id": record.id,
        "state": state,
        "attempts": record.attempts,
        "next_try_at": record.next_try_at,
        "finished_at": utcnow(),
        "lease_token": record.lease_token,
    }
    return JobOutcome(**{**values, **fields})


async def queue_indexes_agree_with_jobs(client: redis.asyncio.Redis, prefix: str) -> None:
    """Every pending job is in its queue's due index at the score and member its
    priority, due time, attempts and insertion give it, every processing job in
    its queue's leases at its lease expiry, and neither holds anything else."""
    tag = "{" + prefix + "}:"
    expected: dict[str, dict[str, float]] = {}
    async for key in client.scan_iter(match=f"{tag}job:*", count=1000):
        job_id = key[len(tag) + 4 :]
        names = ["state", "next", "attempts", "seq", "queue", "priority", "lease"]
        fields = cast(list[Any], await client.hmget(key, names))
        state, next_us, attempts, seq, queue, priority, lease = fields
        kind = _INDEX_OF_STATE.get(state)
        index = f"{tag}{kind}:{queue or DEFAULT_QUEUE}"
        if kind == "due":
            ms, within = divmod(int(next_us), 1000)
            level = MIN_PRIORITY if priority is None else int(priority)
            member = f"{within:03d}{int(attempts):08x}{int(seq):016x}{job_id}"
            assert len(member) == DUE_HEAD + len(job_id)
            expected.setdefault(index, {})[member] = float(level * PRIORITY_SPAN_MS + ms)
        elif kind == "leases":
            expected.setdefault(index, {})[job_id] = float(lease)
    found: dict[str, dict[str, float]] = {}
    for pattern in (f"{tag}due:*", f"{tag}leases:*"):
        async for key in client.scan_iter(match=pattern, count=1000):
            entries = cast(
                list[tuple[str, float]], await client.zrange(key, 0, -1, withscores=True)
            )
            if entries:
                found[key] = dict(entries)
    assert found == expected


async def every_index_agrees(client: redis.asyncio.Redis, prefix: str) -> None:
    await indexes_agree_with_jobs(client, prefix)
    await queue_indexes_agree_with_jobs(client, prefix)


async def test_batched_moves_keep_every_index(prefix: str) -> None:
    async with opened(prefix) as store, raw_redis() as client:
        jobs = [
            new_job(name=f"batch.job{i % 3}", queue=("mail", "sms")[i % 2], priority=i % 4)
            for i in range(MANY)
        ]
        await store.add(jobs)
        await every_index_agrees(client, prefix)

        held = await store.claim("worker", MANY, LEASE)
        assert sorted(job.id for job in held) == sorted(job.id for job in jobs)
        await every_index_agrees(client, prefix)

        retry_at = await store.now()
        outcomes = [
            outcome(job, (JobState.SUCCEEDED, JobState.DEAD, JobState.SCHEDULED)[i % 3])
            for i, job in enumerate(held)
        ]
        outcomes = [
            replace(o, next_try_at=retry_at, last_error="retry")
            if o.state is JobState.SCHEDULED
            else o
            for o in outcomes
        ]
        applied = await store.finish("worker", outcomes)
        assert applied == {job.id for job in held}
        await every_index_agrees(client, prefix)

        counts = await store.count_by_state(await store.now())
        assert counts[JobState.SUCCEEDED] == counts[JobState.DEAD] == MANY // 3
        again = await store.claim("worker", MANY, LEASE)
        assert {job.id for job in again} == {o.job_id for o in outcomes if o.state.is_pending}
        await every_index_agrees(client, prefix)


async def test_a_claim_reads_past_only_the_excluded_jobs_it_meets(prefix: str) -> None:
    async with opened(prefix) as store:
        now = utcnow()
        jobs = [
            new_job(created_at=now, next_try_at=now - timedelta(seconds=10 - i)) for i in range(6)
        ]
        await store.add(jobs)
        excluded = [jobs[0].id, jobs[2].id]
        claimed = await store.claim("worker", 3, LEASE, exclude=excluded)
        assert [job.id for job in claimed] == [jobs[1].id, jobs[3].id, jobs[4].id]
        rest = await store.claim("worker", 3, LEASE, exclude=excluded)
        assert [job.id for job in rest] == [jobs[5].id]


def rich_job(index: int) -> JobRecord:
    """A new job with every field a new job may carry, in texts of any character."""
    now = utcnow()
    return new_job(
        id=f"{ODD}{index}",
        name=f"batch{ODD}",
        payload=f'{{"text": "{ODD}"}}',
        attempts=2,
        last_try_at=now - timedelta(minutes=1),
        last_error=f"Traceback{ODD}",
        done_handlers=(f"h.{ODD}", "h.B"),
        headers=f'{{"traceparent": "{ODD}"}}',
        history=(
            JobEvent(at=now, state=JobState.SCHEDULED, attempt=1, error=ODD, worker=ODD),
            JobEvent(at=now, state=JobState.SCHEDULED, attempt=2),
        ),
        queue=f"q{ODD}",
        priority=3,
        unique_key=f"key{ODD}{index}",
        unique_scope=UniqueScope.ACTIVE,
    )


@pytest.mark.parametrize("batch", [1, INDEX_BATCH_MIN], ids=["one", "batched"])
async def test_new_jobs_and_outcomes_carry_texts_of_any_character(prefix: str, batch: int) -> None:
    async with opened(prefix) as store:
        jobs = [rich_job(i) for i in range(batch)]
        assert await store.add(jobs) == [job.id for job in jobs]
        for job in jobs:
            stored = await store.get(job.id)
            assert stored is not None
            rebased = replace(job, created_at=stored.created_at, next_try_at=stored.next_try_at)
            assert stored == rebased

        held = await store.claim("worker", batch, LEASE, queues=[f"q{ODD}"])
        assert {job.id for job in held} == {job.id for job in jobs}
        done = (f"h.{ODD}", "h.C")
        outcomes = [
            outcome(job, JobState.DEAD, last_error=f"boom{ODD}", done_handlers=done) for job in held
        ]
        assert await store.finish("worker", outcomes) == {job.id for job in jobs}
        for job in jobs:
            stored = await store.get(job.id)
            assert stored is not None
            assert stored.state is JobState.DEAD
            assert stored.last_error == f"boom{ODD}"
            assert stored.done_handlers == done
            assert stored.history[-1].error == f"boom{ODD}"
            assert stored.history[-1].worker == "worker"


def test_every_script_defines_each_helper_it_names() -> None:
    """A script that named a helper of the prelude without carrying it would
    fail only on the path that calls it: each carries every one it names."""
    helpers = {name for names, _ in _PRELUDE_DEFINITIONS for name in names}
    declared = re.compile(r"^local (?:function (\w+)|([\w, ]+?) =)", re.MULTILINE)
    texts = re.compile(r"'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"")
    for script, text in SCRIPTS.items():
        code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
        named = helpers & set(re.findall(r"[A-Za-z_]\w*", texts.sub("", code)))
        defined = set()
        for function, variables in declared.findall(text):
            defined |= {name.strip() for name in (function or variables).split(",")}
        assert named <= defined, f"{script} names {sorted(named - defined)} without them"
