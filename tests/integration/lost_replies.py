"""What the stores on a server (PostgreSQL, Redis) promise when a reply is lost
on the wire, checked the same way for each: the server did the work, its
answer never arrived, and the call is answered as if it had."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import anyio

from masa_jobs.records import JobOutcome, JobRecord, JobState, utcnow
from masa_jobs.stores.base import Store
from tests.tcp_proxy import FaultProxy

__all__ = ["claim_answered_after_a_lost_reply", "outcome_answered_once_after_a_lost_reply"]

# A claim's lease, longer than any test.
LEASE = timedelta(seconds=30)


async def claim_answered_after_a_lost_reply(
    store: Store,
    direct: Store,
    proxy: FaultProxy,
    jobs: list[JobRecord],
    guard_seconds: float,
) -> None:
    """Of three stored ``jobs``, a claim of two through ``proxy`` loses its
    reply. Asked again, the claim would take other jobs, and the ones it
    leased would wait out their leases under a worker that does not know
    them. It answers with those two, held once under its token (``direct``
    reads them past the proxy), the third left; their outcomes apply."""
    worker_id = "worker-1"
    proxy.lose_next_reply()
    with anyio.fail_after(guard_seconds):
        claimed = await store.claim(worker_id, 2, LEASE)

    assert [record.id for record in claimed] == [job.id for job in jobs[:2]]
    for record in claimed:
        held = await direct.get(record.id)
        assert held is not None
        assert (held.state, held.attempts) == (JobState.PROCESSING, 1)
        assert (held.lease_owner, held.lease_token) == (worker_id, record.lease_token)
        assert record.attempts == 1
    left = await direct.get(jobs[2].id)
    assert left is not None
    assert left.state is JobState.ENQUEUED
    outcomes = [
        JobOutcome(
            record.id,
            JobState.SUCCEEDED,
            record.attempts,
            record.next_try_at,
            finished_at=utcnow(),
            lease_token=record.lease_token,
        )
        for record in claimed
    ]
    assert await store.finish(worker_id, outcomes) == {job.id for job in jobs[:2]}


async def outcome_answered_once_after_a_lost_reply(
    store: Store,
    direct: Store,
    proxy: FaultProxy,
    worker_id: str,
    outcome: JobOutcome,
    guard_seconds: float,
) -> None:
    """``outcome`` (a success of a job ``worker_id`` holds) is sent through
    ``proxy``, which loses its reply. Sent again, it would find the job no
    longer held and be refused: the worker would log a lost lease for a job
    that finished by its hand. It is answered as applied, and so is the
    worker's own retry later; it applied once (``direct`` reads the job past
    the proxy); an outcome of another state under its token is refused."""
    proxy.lose_next_reply()
    with anyio.fail_after(guard_seconds):
        assert await store.finish(worker_id, [outcome]) == {outcome.job_id}
    assert await store.finish(worker_id, [outcome]) == {outcome.job_id}

    done = await direct.get(outcome.job_id)
    assert done is not None
    assert (done.state, done.lease_token, done.lease_owner) == (JobState.SUCCEEDED, None, None)
    assert [event.state for event in done.history] == [JobState.SUCCEEDED]
    other = replace(outcome, state=JobState.DEAD, last_error="late")
    assert await store.finish(worker_id, [other]) == set()
