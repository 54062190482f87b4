"""Jobs, recurring jobs and workers for the dashboard tests, made through the store API.

Jobs reach each state the way a worker and an operator would move them:
``add`` (scheduled or enqueued), ``claim`` (processing), ``finish``
(succeeded, a retry, dead) and ``transition`` (cancelled).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

from masa_jobs import JobState
from masa_jobs.records import JobOutcome, JobRecord, ScheduleRecord, WorkerInfo
from masa_jobs.stores.base import Store

__all__ = ["LEASE", "WORKER", "Seeded", "new_job", "run_to_death", "seed_states", "seed_throughput"]

LEASE = timedelta(minutes=5)
WORKER = "web-1:4242:7f3a"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
FAILURE = (
    "mail.send failed:\nTraceback (most recent call last):\n"
    '  File "shop/mail.py", line 42, in executing\n'
    "    await self.smtp.send(message)\n"
    "ConnectionRefusedError: [Errno 111] Connection refused"
)


def new_job(
    name: str,
    args: dict[str, Any],
    *,
    created_at: datetime,
    due_at: datetime | None = None,
    job_id: str | None = None,
    headers: dict[str, str] | None = None,
) -> JobRecord:
    """A pending job as the manager would store it (due at once unless ``due_at``)."""
    due = created_at if due_at is None else due_at
    return JobRecord(
        id=job_id or uuid4().hex,
        name=name,
        payload=json.dumps(args),
        state=JobState.SCHEDULED if due > created_at else JobState.ENQUEUED,
        created_at=created_at,
        next_try_at=due,
        headers=json.dumps(headers) if headers else None,
    )


async def _claim_only(store: Store, record: JobRecord) -> JobRecord:
    """Add ``record`` and claim it (no other job may be due)."""
    await store.add((record,))
    claimed = await store.claim(WORKER, 10, LEASE)
    assert [job.id for job in claimed] == [record.id], "another job was due"
    return claimed[0]


async def _finish(
    store: Store, held: JobRecord, state: JobState, error: str | None, when: datetime
) -> None:
    outcome = JobOutcome(
        job_id=held.id,
        state=state,
        attempts=held.attempts,
        next_try_at=when,
        last_error=error,
        finished_at=when if state.is_finished else None,
        lease_token=held.lease_token,
    )
    assert await store.finish(WORKER, (outcome,)) == {held.id}


async def run_to_death(store: Store, record: JobRecord, error: str = FAILURE) -> None:
    """Add ``record``, fail it once (a retry), then fail it for good (dead)."""
    held = await _claim_only(store, record)
    await _finish(store, held, JobState.SCHEDULED, error, await store.now())
    held = (await store.claim(WORKER, 10, LEASE))[0]
    assert held.id == record.id
    await _finish(store, held, JobState.DEAD, error, await store.now())


@dataclass(frozen=True)
class Seeded:
    """The id of the job in each state."""

    ids: dict[JobState, str]


async def seed_states(store: Store) -> Seeded:
    """One job in each of the six states, two recurring jobs and a live worker."""
    now = await store.now()
    ids: dict[JobState, str] = {}

    processing = new_job("report.build", {"report": "sales", "month": "2024-05"}, created_at=now)
    ids[JobState.PROCESSING] = (await _claim_only(store, processing)).id

    succeeded = new_job(
        "mail.send",
        {"to": "ada@example.com", "template": "welcome"},
        created_at=now,
        headers={"traceparent": TRACEPARENT},
    )
    held = await _claim_only(store, succeeded)
    await _finish(store, held, JobState.SUCCEEDED, None, await store.now())
    ids[JobState.SUCCEEDED] = succeeded.id

    dead = new_job("mail.send", {"to": "bob@example.invalid", "template": "reset"}, created_at=now)
    await run_to_death(store, dead)
    ids[JobState.DEAD] = dead.id

    cancelled = new_job("image.resize", {"image": 7, "width": 640}, created_at=now)
    await store.add((cancelled,))
    assert await store.transition(
        cancelled.id, (JobState.ENQUEUED,), JobState.CANCELLED, await store.now()
    )
    ids[JobState.CANCELLED] = cancelled.id

    # Last, so that no claim above takes them.
    enqueued = new_job("mail.send", {"to": "eve@example.com", "template": "digest"}, created_at=now)
    scheduled = new_job(
        "report.build",
        {"report": "stock", "month": "2024-06"},
        created_at=now,
        due_at=now + timedelta(hours=2),
    )
    await store.add((enqueued, scheduled))
    ids[JobState.ENQUEUED], ids[JobState.SCHEDULED] = enqueued.id, scheduled.id

    await _seed_schedules(store, now)
    await store.heartbeat(
        WorkerInfo(
            id=WORKER,
            host="web-1",
            pid=4242,
            started_at=now - timedelta(hours=3, minutes=12),
            last_seen_at=now,
            running_jobs=1,
        )
    )
    return Seeded(ids)


async def _seed_schedules(store: Store, now: datetime) -> None:
    await store.upsert_schedule(
        ScheduleRecord(
            id="nightly-report",
            job_class="job:report.build",
            cron_expression="0 3 * * *",
            timezone="Europe/Berlin",
            next_fire_at=now + timedelta(hours=9),
            created_at=now - timedelta(days=3),
            updated_at=now - timedelta(days=3),
            last_fire_at=now - timedelta(hours=15),
            payload=json.dumps({"report": "daily", "month": "current"}),
        )
    )
    await store.upsert_schedule(
        ScheduleRecord(
            id="cleanup",
            job_class="shop.jobs.Cleanup",
            cron_expression="*/15 * * * *",
            timezone="UTC",
            next_fire_at=now + timedelta(minutes=7),
            created_at=now - timedelta(days=3),
            updated_at=now - timedelta(days=3),
            paused=True,
        )
    )


async def seed_throughput(store: Store, per_minute: list[int]) -> None:
    """Jobs that succeeded over the last hour: ``per_minute[i]`` of them ``i``
    minutes ago (stamped by the outcome's ``finished_at``)."""
    now = await store.now()
    records = [
        new_job("mail.send", {"to": f"user{i}@example.com"}, created_at=now - timedelta(hours=1))
        for i in range(sum(per_minute))
    ]
    await store.add(records)
    held = await store.claim(WORKER, len(records), LEASE)
    assert len(held) == len(records)
    finished_at = [
        now - timedelta(minutes=minutes, seconds=5)
        for minutes, count in enumerate(per_minute)
        for _ in range(count)
    ]
    outcomes = [
        JobOutcome(
            job_id=job.id,
            state=JobState.SUCCEEDED,
            attempts=job.attempts,
            next_try_at=when,
            finished_at=when,
            lease_token=job.lease_token,
        )
        for job, when in zip(held, finished_at, strict=True)
    ]
    assert len(await store.finish(WORKER, outcomes)) == len(outcomes)
