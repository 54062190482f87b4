"""Operator reads of the local stores agree with a scan of every job.

The memory and SQLite stores answer lists, counts, the earliest due time and
finish rates from indexes (the memory store's are brought up to date on
read). A random run of adds, claims, outcomes, operator moves, deletes and
purges checks every answer against the definition: a scan of every job
(``_listing.matches`` and ``display_state``).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from masa_jobs import JobOutcome, JobQuery, JobRecord, JobState, MemoryJobStore
from masa_jobs.queries import sort_key
from masa_jobs.records import FINISHED_STATES, PENDING_STATES, display_state
from masa_jobs.stores._listing import matches
from masa_jobs.stores.base import Store
from masa_jobs.stores.sqlite import SqliteJobStore

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 5, 1, 3, 0, tzinfo=UTC)
LEASE = timedelta(seconds=60)
NAMES = ("mail", "report", "resize")
STEPS = 240
# Random runs, each a different mix of operations (fixed seeds: failures replay).
SEEDS = (1, 2, 3)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


StoreMaker = Callable[[Path, Clock], Store]
MAKERS: dict[str, StoreMaker] = {
    "memory": lambda path, clock: MemoryJobStore(clock=clock),
    "sqlite": lambda path, clock: SqliteJobStore(path / "jobs.db", clock=clock),
}


@asynccontextmanager
async def opened(maker: StoreMaker, path: Path, clock: Clock) -> AsyncIterator[Store]:
    store = maker(path, clock)
    await store.open()
    try:
        yield store
    finally:
        await store.aclose()


class Run:
    """One random run against one store, with the ids it has handed out."""

    def __init__(self, store: Store, clock: Clock, rng: random.Random) -> None:
        self.store, self.clock, self.rng = store, clock, rng
        self.ids: list[str] = []
        self.held: dict[str, JobRecord] = {}

    def seconds(self, *choices: float) -> timedelta:
        return timedelta(seconds=self.rng.choice(choices))

    def new_job(self, n: int, created: datetime, now: datetime) -> JobRecord:
        """A new pending job; stored enqueued only when due at once, as the
        manager stores it (a scheduled one may be due or not)."""
        due = now + self.seconds(-60, 0, 5, 3600)
        enqueued = due <= created and self.rng.random() < 0.5
        return JobRecord(
            id=f"job-{len(self.ids) + n:04d}-{self.rng.randrange(1000):03d}",
            name=self.rng.choice(NAMES),
            payload="{}",
            state=JobState.ENQUEUED if enqueued else JobState.SCHEDULED,
            created_at=created,
            next_try_at=due,
        )

    async def add(self) -> None:
        now = self.clock.now
        # Several jobs of a batch may share one creation time: ids break the tie.
        created = now - self.seconds(0, 0, 1, 30)
        batch = [self.new_job(n, created, now) for n in range(self.rng.randint(1, 4))]
        await self.store.add(batch)
        self.ids.extend(r.id for r in batch)

    async def claim(self) -> None:
        for record in await self.store.claim("worker-1", self.rng.randint(1, 4), LEASE):
            self.held[record.id] = record

    async def finish(self) -> None:
        chosen = [r for r in self.held.values() if self.rng.random() < 0.6]
        outcomes = [self.outcome(r) for r in chosen]
        await self.store.finish("worker-1", outcomes)
        for record in chosen:
            del self.held[record.id]

    def outcome(self, record: JobRecord) -> JobOutcome:
        now = self.clock.now
        state = self.rng.choice((JobState.SUCCEEDED, JobState.DEAD, JobState.SCHEDULED))
        finished = state in FINISHED_STATES
        return JobOutcome(
            job_id=record.id,
            state=state,
            attempts=record.attempts,
            next_try_at=now if finished else now + self.seconds(0, 10, 600),
            last_error=None if state is JobState.SUCCEEDED else "boom",
            finished_at=now if finished else None,
            lease_token=record.lease_token,
        )

    async def move(self) -> None:
        if self.ids:
            job_id = self.rng.choice(self.ids)
            target = self.rng.choice((JobState.ENQUEUED, JobState.CANCELLED, JobState.DEAD))
            await self.store.transition(job_id, list(JobState), target, self.clock.now)
            self.held.pop(job_id, None)

    async def delete(self) -> None:
        if self.ids:
            job_id = self.rng.choice(self.ids)
            await self.store.delete(job_id)
            self.held.pop(job_id, None)

    async def purge(self) -> None:
        before = self.clock.now - self.seconds(0, 20, 120)
        states = self.rng.choice((FINISHED_STATES, {JobState.DEAD}, {JobState.SUCCEEDED}))
        limit = self.rng.choice((None, 1, 3))
        expected = await self.purgeable(states, before)
        removed = await self.store.purge(states, before, limit=limit)
        assert removed == (expected if limit is None else min(limit, expected))

    async def purgeable(self, states: frozenset[JobState] | set[JobState], before: datetime) -> int:
        return sum(
            1
            for r in await self.every_job()
            if r.state in states and r.finished_at is not None and r.finished_at < before
        )

    async def step(self) -> None:
        operation = self.rng.choices(
            (self.add, self.claim, self.finish, self.move, self.delete, self.purge),
            weights=(5, 4, 4, 1, 1, 1),
        )[0]
        await operation()
        self.clock.now += self.seconds(0, 1, 7)

    async def every_job(self) -> list[JobRecord]:
        found = [await self.store.get(job_id) for job_id in self.ids]
        return [r for r in found if r is not None]

    def random_query(self) -> JobQuery:
        rng = self.rng
        states = rng.choice((None, None, *([s] for s in JobState), list(PENDING_STATES)))
        extra = {}
        if rng.random() < 0.3:
            extra["created_from"] = T0 + self.seconds(0, 30, 200)
        if rng.random() < 0.3:
            extra["created_until"] = T0 + self.seconds(100, 300, 900)
        return JobQuery.of(
            states,
            name=rng.choice((None, None, *NAMES)),
            newest_first=rng.random() < 0.7,
            limit=rng.choice((1, 2, 5, 50)),
            **extra,
        )

    async def check(self) -> None:
        every = await self.every_job()
        # Now, or the due time of a job: pending jobs due exactly now are enqueued.
        due_times = [r.next_try_at for r in every if r.state in PENDING_STATES]
        now = self.rng.choice([self.clock.now + self.seconds(-10, 0, 10), *due_times[:5]])
        for _ in range(6):
            query = self.random_query()
            expected = sorted(
                (r for r in every if matches(r, query, now)),
                key=sort_key,
                reverse=query.newest_first,
            )
            assert await walk(self.store, query, now) == expected, query
        await self.check_counts(every, now)

    async def check_counts(self, every: list[JobRecord], now: datetime) -> None:
        counts = Counter(display_state(r, now) for r in every)
        assert await self.store.count_by_state(now) == {s: counts[s] for s in JobState}
        pending = [r.next_try_at for r in every if r.state in PENDING_STATES]
        assert await self.store.oldest_due_at() == min(pending, default=None)
        since = T0 + self.seconds(0, 90)
        minutes = Counter(
            r.finished_at.replace(second=0, microsecond=0)
            for r in every
            if r.state in FINISHED_STATES and r.finished_at is not None and r.finished_at >= since
        )
        assert await self.store.finished_per_minute(since) == sorted(minutes.items())


async def walk(store: Store, query: JobQuery, now: datetime) -> list[JobRecord]:
    found: list[JobRecord] = []
    while True:
        page = await store.list_jobs(query, now)
        assert len(page.items) <= query.limit
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        query = replace(query, cursor=page.next_cursor)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("store_name", MAKERS)
async def test_operator_reads_agree_with_a_scan_of_every_job(
    tmp_path: Path, store_name: str, seed: int
) -> None:
    clock = Clock()
    async with opened(MAKERS[store_name], tmp_path, clock) as store:
        run = Run(store, clock, random.Random(seed))
        for step in range(STEPS):
            await run.step()
            if step % 20 == 19:
                await run.check()
        await run.check()


@pytest.mark.parametrize("store_name", MAKERS)
async def test_reads_of_an_empty_store(tmp_path: Path, store_name: str) -> None:
    clock = Clock()
    async with opened(MAKERS[store_name], tmp_path, clock) as store:
        assert await store.oldest_due_at() is None
        assert await store.finished_per_minute(T0) == []
        assert await store.count_by_state(T0) == dict.fromkeys(JobState, 0)
        assert (await store.list_jobs(JobQuery(), T0)).items == ()
        assert await store.purge(FINISHED_STATES, T0 + LEASE) == 0
