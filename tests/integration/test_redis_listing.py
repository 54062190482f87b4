"""The Redis store's operator reads against a real server: the listing indexes
every script keeps, cursor pages that read a bounded number of entries per
script call, history kept by string surgery, the finish rate, and the one-time
upgrade of a store written before the listing indexes existed."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest
import redis.asyncio

from masa_jobs import JobQuery, JobState
from masa_jobs.queries import sort_key
from masa_jobs.records import (
    MAX_HISTORY_EVENTS,
    JobEvent,
    JobOutcome,
    JobRecord,
    ScheduleRecord,
    decode_history,
    to_us,
    utcnow,
)
from masa_jobs.stores import redis as redis_store_module
from masa_jobs.stores._listing import matches
from masa_jobs.stores.redis import LAYOUT_VERSION, RedisJobStore
from tests.integration.test_redis import opened, raw_redis

pytestmark = pytest.mark.anyio

LEASE = timedelta(seconds=30)
# A lease that has expired by the next call: the lease of a worker cut off.
EXPIRED = timedelta(0)
NAMES = ("mail.send", "report.build", "image.resize")
# The groups of the listing indexes, by stored state.
GROUP = {
    "scheduled": "pending",
    "enqueued": "pending",
    "processing": "processing",
    "succeeded": "succeeded",
    "dead": "dead",
    "cancelled": "cancelled",
}
# Far more pages than any test's jobs fill: a walk that goes on is a bug.
MAX_PAGES = 1000
# More members than Redis keeps in a compact sorted set, so that ZSCAN answers
# in several chunks, as it does on a large store.
BEYOND_LISTPACK = 300


def new_job(name: str = NAMES[0], delay: float = 0.0, **fields: Any) -> JobRecord:
    now = utcnow()
    values: dict[str, Any] = {
        "id": uuid4().hex,
        "name": name,
        "payload": '{"n": 1}',
        "state": JobState.SCHEDULED if delay > 0 else JobState.ENQUEUED,
        "created_at": now,
        "next_try_at": now + timedelta(seconds=delay),
    }
    return JobRecord(**{**values, **fields})


def outcome(record: JobRecord, state: JobState, **fields: Any) -> JobOutcome:
    values: dict[str, Any] = {
        "job_id": record.id,
        "state": state,
        "attempts": record.attempts,
        "next_try_at": record.next_try_at,
        "lease_token": record.lease_token,
    }
    return JobOutcome(**{**values, **fields})


class Spy:
    """Counts the script calls of every store, by script name."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[str] = []
        original = RedisJobStore._run

        async def run(store: RedisJobStore, script: str, args: list[Any], **how: Any) -> Any:
            self.calls.append(script)
            return await original(store, script, args, **how)

        monkeypatch.setattr(RedisJobStore, "_run", run)

    def count(self, script: str) -> int:
        return self.calls.count(script)


async def indexes_agree_with_jobs(client: redis.asyncio.Redis, prefix: str) -> None:
    """Every job is in the creation and name indexes of its state's group, at its
    creation time, and no index holds anything else."""
    tag = "{" + prefix + "}:"
    expected: dict[str, dict[str, float]] = {}
    async for key in client.scan_iter(match=f"{tag}job:*", count=1000):
        job_id = key[len(tag) + 4 :]
        state, created, name = await client.hmget(key, ["state", "created", "name"])
        group = GROUP[state]
        expected.setdefault(f"{tag}created:{group}", {})[job_id] = float(created)
        expected.setdefault(f"{tag}name:{group}:{name}", {})[job_id] = float(created)
    found: dict[str, dict[str, float]] = {}
    for pattern in (f"{tag}created:*", f"{tag}name:*"):
        async for key in client.scan_iter(match=pattern, count=1000):
            found[key] = dict(await client.zrange(key, 0, -1, withscores=True))
    assert found == expected


async def stored(store: RedisJobStore, job_id: str) -> JobRecord:
    record = await store.get(job_id)
    assert record is not None
    return record


async def walk(store: RedisJobStore, query: JobQuery, now: datetime) -> list[str]:
    """Every id a query lists, page after page, with one ``now`` throughout."""
    seen: list[str] = []
    for _ in range(MAX_PAGES):
        page = await store.list_jobs(query, now)
        assert len(page.items) <= query.limit
        seen.extend(record.id for record in page.items)
        if page.next_cursor is None:
            return seen
        query = replace(query, cursor=page.next_cursor)
    raise AssertionError(f"paging did not end after {MAX_PAGES} pages")


# -- the listing indexes -------------------------------------------------------------


async def test_every_move_keeps_the_listing_indexes(prefix: str) -> None:
    async with opened(prefix) as store, raw_redis() as client:
        jobs = [new_job(NAMES[i % 3]) for i in range(6)] + [new_job(delay=3600)]
        await store.add(jobs)
        await indexes_agree_with_jobs(client, prefix)

        held = await store.claim("worker", 5, LEASE)
        await indexes_agree_with_jobs(client, prefix)

        retry_at = await store.now()
        await store.finish(
            "worker",
            [
                outcome(held[0], JobState.SUCCEEDED),
                outcome(held[1], JobState.DEAD, last_error="boom"),
                outcome(held[2], JobState.SCHEDULED, next_try_at=retry_at),
            ],
        )
        await indexes_agree_with_jobs(client, prefix)

        await store.transition(held[1].id, [JobState.DEAD], JobState.ENQUEUED, utcnow())
        await store.transition(held[3].id, [JobState.PROCESSING], JobState.CANCELLED, utcnow())
        await store.transition(jobs[6].id, [JobState.SCHEDULED], JobState.CANCELLED, utcnow())
        await indexes_agree_with_jobs(client, prefix)

        # An expired lease claimed again stays processing, in the same indexes.
        [lapsed] = await store.claim("worker", 1, EXPIRED, exclude=[held[4].id])
        [again] = await store.claim("other", 1, LEASE, exclude=[held[4].id])
        assert again.id == lapsed.id
        await indexes_agree_with_jobs(client, prefix)

        assert await store.delete(held[4].id)
        assert await store.delete(jobs[6].id)
        await indexes_agree_with_jobs(client, prefix)

        later = await store.now() + timedelta(seconds=1)
        assert await store.purge([JobState.SUCCEEDED, JobState.CANCELLED], later) == 2
        await indexes_agree_with_jobs(client, prefix)

        now = await store.now()
        schedule = ScheduleRecord("nightly", "job:mail.send", "0 3 * * *", "UTC", now, now, now)
        await store.upsert_schedule(schedule)
        assert await store.fire_schedule("nightly", now, now + timedelta(days=1), new_job())
        await indexes_agree_with_jobs(client, prefix)


# -- pages -----------------------------------------------------------------------------


async def population(store: RedisJobStore, prefix: str) -> list[JobRecord]:
    """Jobs of three names in every state, some created in one batch (one
    creation time), some due and some later; returns them as stored."""
    await store.add([new_job(NAMES[i % 3], delay=3600 * (i % 2)) for i in range(24)])
    for i in range(12):
        await store.add([new_job(NAMES[i % 3], delay=3600 * (i % 3 == 0))])
    held = await store.claim("worker", 9, LEASE)
    states = itertools.cycle([JobState.SUCCEEDED, JobState.DEAD, JobState.SCHEDULED])
    finished = [outcome(record, next(states), last_error="e") for record in held[:6]]
    await store.finish("worker", finished)
    for record in held[6:8]:
        await store.transition(record.id, [JobState.PROCESSING], JobState.CANCELLED, utcnow())
    tag = "{" + prefix + "}:"
    async with raw_redis() as client:
        ids = [key[len(tag) + 4 :] async for key in client.scan_iter(match=f"{tag}job:*")]
    records = [await store.get(job_id) for job_id in ids]
    return [record for record in records if record is not None]


QUERY_STATES: list[frozenset[JobState] | None] = [
    None,
    frozenset({JobState.SCHEDULED}),
    frozenset({JobState.ENQUEUED}),
    frozenset({JobState.SCHEDULED, JobState.DEAD}),
    frozenset({JobState.ENQUEUED, JobState.PROCESSING, JobState.CANCELLED}),
    frozenset({JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED}),
]


@pytest.mark.parametrize("budget", [1, 3, 1000])
async def test_pages_list_what_the_query_keeps_whatever_the_budget(
    prefix: str, monkeypatch: pytest.MonkeyPatch, budget: int
) -> None:
    # A small budget makes the script stop early and the client call again:
    # the pages must be the same as with the whole page in one call.
    monkeypatch.setattr(redis_store_module, "LIST_SCAN_BUDGET", budget)
    async with opened(prefix) as store:
        records = await population(store, prefix)
        now = await store.now()
        stamps = sorted({record.created_at for record in records})
        for states, name, newest_first, limit, bounds in itertools.product(
            QUERY_STATES,
            (None, NAMES[1]),
            (True, False),
            (1, 4, 50),
            ((None, None), (stamps[1], stamps[-2])),
        ):
            query = JobQuery(
                states=states,
                name=name,
                newest_first=newest_first,
                limit=limit,
                created_from=bounds[0],
                created_until=bounds[1],
            )
            kept = sorted(
                (r for r in records if matches(r, query, now)),
                key=sort_key,
                reverse=newest_first,
            )
            assert await walk(store, query, now) == [r.id for r in kept], query


async def test_a_page_of_enqueued_jobs_looks_past_scheduled_ones_in_bounded_calls(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store_module, "LIST_SCAN_BUDGET", 10)
    spy = Spy(monkeypatch)
    async with opened(prefix) as store:
        first = new_job()
        await store.add([first])
        await store.add([new_job(delay=3600) for _ in range(95)])
        last = new_job()
        await store.add([last])

        page = await store.list_jobs(JobQuery.of(JobState.ENQUEUED), await store.now())

        assert [record.id for record in page.items] == [last.id, first.id]
        # 97 entries examined, at most 10 per call: 10 calls, each one short.
        assert spy.count("page") == 10


@pytest.mark.parametrize("newest_first", [True, False])
async def test_a_cursor_whose_job_left_seeks_among_jobs_of_one_microsecond(
    prefix: str, newest_first: bool
) -> None:
    # One batch shares one creation time: the cursor's place among them is
    # found by id, even after the cursor's own job was deleted.
    async with opened(prefix) as store:
        batch = [new_job(id=f"job-{i:02d}") for i in range(30)]
        await store.add(batch)
        query = JobQuery(limit=4, newest_first=newest_first)
        listed: list[str] = []
        for _ in range(MAX_PAGES):
            page = await store.list_jobs(query, await store.now())
            listed.extend(record.id for record in page.items)
            if page.next_cursor is None:
                break
            assert await store.delete(page.items[-1].id)
            query = replace(query, cursor=page.next_cursor)

        assert listed == sorted((job.id for job in batch), reverse=newest_first)


async def test_counts_and_the_oldest_due_job(prefix: str) -> None:
    async with opened(prefix) as store:
        assert await store.oldest_due_at() is None
        soon = new_job(delay=60)
        await store.add([new_job(delay=3600), soon])
        late = new_job(delay=-120)
        await store.add([late])

        oldest = await store.oldest_due_at()
        counts = await store.count_by_state(await store.now())

        assert oldest == (await stored(store, late.id)).next_try_at
        assert counts[JobState.SCHEDULED] == 2
        assert counts[JobState.ENQUEUED] == 1
        assert [record.id for record in await store.claim("worker", 10, LEASE)] == [late.id]
        assert await store.oldest_due_at() == (await stored(store, soon.id)).next_try_at


# -- history -------------------------------------------------------------------------


# Error texts a string surgery must not misread: quotes, backslashes, and text
# that looks like the boundary of two events.
AWKWARD_ERRORS = (
    'quote " and backslash \\ and \\"',
    '},{"at":1,"state":"dead","attempt":9}]',
    'Traceback (most recent call last):\n  File "x.py", line 1\n\tboom: é ✓ /path',
    "[",
    "",
)


async def run_and_fail(store: RedisJobStore, job_id: str, error: str) -> JobRecord:
    [held] = await store.claim("worker-9", 1, LEASE)
    assert held.id == job_id
    due = await store.now() - timedelta(seconds=1)
    applied = await store.finish(
        "worker-9", [outcome(held, JobState.SCHEDULED, next_try_at=due, last_error=error)]
    )
    assert applied == {job_id}
    return held


async def test_history_keeps_awkward_error_texts_and_only_the_newest_events(
    prefix: str,
) -> None:
    async with opened(prefix) as store, raw_redis() as client:
        job = new_job()
        await store.add([job])
        errors = [f"{AWKWARD_ERRORS[i % len(AWKWARD_ERRORS)]}#{i}" for i in range(57)]
        started = [(await run_and_fail(store, job.id, error)).last_try_at for error in errors]

        stored = await store.get(job.id)
        assert stored is not None
        history = stored.history
        assert [event.error for event in history] == errors[-MAX_HISTORY_EVENTS:]
        assert [event.attempt for event in history] == list(range(8, 58))
        assert [event.started_at for event in history] == started[-MAX_HISTORY_EVENTS:]
        assert {event.worker for event in history} == {"worker-9"}
        # The stored text is the JSON array records.encode_history writes.
        text = await client.hget("{" + prefix + "}:job:" + job.id, "history")
        assert len(json.loads(text)) == MAX_HISTORY_EVENTS


async def test_a_history_given_to_add_is_kept_and_trimmed_on_append(prefix: str) -> None:
    async with opened(prefix) as store:
        base = datetime(2024, 5, 1, tzinfo=UTC)
        given = tuple(
            JobEvent(base + timedelta(seconds=i), JobState.SCHEDULED, i, error=f"old {i}")
            for i in range(MAX_HISTORY_EVENTS)
        )
        job = replace(new_job(), history=given, headers='{"traceparent":"00-ab-cd-01"}')
        await store.add([job])

        [held] = await store.claim("worker-1", 1, LEASE)
        assert held.headers == job.headers
        await store.finish("worker-1", [outcome(held, JobState.SUCCEEDED)])
        stored = await store.get(job.id)

        assert stored is not None
        assert stored.history[:-1] == given[1:]
        assert stored.history[-1].state is JobState.SUCCEEDED
        assert stored.history[-1].worker == "worker-1"
        assert stored.headers == job.headers


async def test_a_damaged_history_is_replaced_not_extended(prefix: str) -> None:
    async with opened(prefix) as store, raw_redis() as client:
        job = new_job()
        await store.add([job])
        await client.hset("{" + prefix + "}:job:" + job.id, "history", "not json")

        await run_and_fail(store, job.id, "boom")

        text = await client.hget("{" + prefix + "}:job:" + job.id, "history")
        assert [event.error for event in decode_history(text)] == ["boom"]


# -- the finish rate ---------------------------------------------------------------------


async def test_finished_per_minute_counts_each_minute_of_the_window(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One minute per script call: a long window takes several short calls.
    monkeypatch.setattr(redis_store_module, "RATE_MINUTES_PER_CALL", 1)
    async with opened(prefix) as store, raw_redis() as client:
        minute = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
        at = {
            "succeeded": [minute + timedelta(seconds=s) for s in (5, 50, 61, 62, 185)],
            "dead": [minute + timedelta(seconds=s) for s in (55, 119)],
            "cancelled": [minute - timedelta(seconds=1)],
        }
        # The finish-time indexes alone decide the rate: fill them directly.
        for state, stamps in at.items():
            await client.zadd(
                "{" + prefix + "}:done:" + state,
                {f"{state}-{i}": to_us(stamp) for i, stamp in enumerate(stamps)},
            )

        rate = await store.finished_per_minute(minute + timedelta(seconds=10))

        assert rate == [
            (minute, 2),
            (minute + timedelta(minutes=1), 3),
            (minute + timedelta(minutes=3), 1),
        ]


async def test_finished_jobs_show_in_the_rate_of_their_minute(prefix: str) -> None:
    async with opened(prefix) as store:
        since = await store.now()
        await store.add([new_job() for _ in range(4)])
        held = await store.claim("worker", 4, LEASE)
        await store.finish("worker", [outcome(r, JobState.SUCCEEDED) for r in held[:3]])
        await store.transition(held[3].id, [JobState.PROCESSING], JobState.CANCELLED, utcnow())

        rate = await store.finished_per_minute(since)

        assert sum(count for _, count in rate) == 4
        assert all(moment.second == moment.microsecond == 0 for moment, _ in rate)
        assert await store.finished_per_minute(await store.now() + timedelta(minutes=1)) == []


# -- a store written before the listing indexes ------------------------------------------


async def write_old_layout(client: redis.asyncio.Redis, prefix: str) -> dict[str, str]:
    """Jobs as the layout before the listing indexes kept them: pending, processing
    and finished, with the creation indexes of that layout only. Returns id -> state."""
    tag = "{" + prefix + "}:"
    now = to_us(utcnow())
    jobs: dict[str, str] = {}
    for i in range(BEYOND_LISTPACK + 3):
        job_id = f"old-{i:04d}"
        state = ("processing", "succeeded", "dead")[i] if i < 3 else "enqueued"
        created = str(now + i)
        await client.hset(
            f"{tag}job:{job_id}",
            mapping={
                "name": NAMES[i % 3],
                "payload": "{}",
                "state": state,
                "created": created,
                "next": created,
                "attempts": "1" if i < 3 else "0",
                "seq": str(i),
            },
        )
        if state == "processing":
            await client.zadd(f"{tag}leases", {job_id: now + 3_600_000_000})
        elif state == "enqueued":
            await client.zadd(f"{tag}pending", {f"{0:08x}{i:016x}{job_id}": created})
            await client.zadd(f"{tag}created:pending", {job_id: created})
        else:
            await client.zadd(f"{tag}done:{state}", {job_id: now})
            await client.zadd(f"{tag}created:{state}", {job_id: created})
        jobs[job_id] = state
    await client.set(f"{tag}seq", BEYOND_LISTPACK + 3)
    return jobs


async def test_a_store_of_the_old_layout_gets_its_listing_indexes_once_in_chunks(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_store_module, "REINDEX_CHUNK", 50)
    spy = Spy(monkeypatch)
    async with raw_redis() as client:
        jobs = await write_old_layout(client, prefix)

        async with opened(prefix) as store:
            assert await client.get("{" + prefix + "}:layout") == LAYOUT_VERSION
            # Several short scripts, not one long one.
            assert spy.count("reindex") >= BEYOND_LISTPACK // 50
            await indexes_agree_with_jobs(client, prefix)
            now = await store.now()
            by_name = await walk(store, JobQuery(name=NAMES[1], limit=100), now)
            running = await walk(store, JobQuery.of(JobState.PROCESSING), now)

        assert sorted(by_name) == sorted(i for i in jobs if int(i[4:]) % 3 == 1)
        assert running == ["old-0000"]

        upgraded = spy.count("reindex")
        async with opened(prefix):
            pass
        assert spy.count("reindex") == upgraded


async def test_a_new_store_records_its_layout_at_once(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = Spy(monkeypatch)
    async with raw_redis() as client, opened(prefix):
        assert await client.get("{" + prefix + "}:layout") == LAYOUT_VERSION
    assert spy.count("reindex") == 0
