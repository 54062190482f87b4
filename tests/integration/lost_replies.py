"""What the stores on a server (PostgreSQL, Redis) promise when a reply is lost
on the wire, checked the same way for each: the server did the work, its
answer never arrived, and the call is answered as if it had."""

from __future__ import annotations

from dataclasses import replace

import anyio

from masa_jobs.records import JobOutcome, JobState
from masa_jobs.stores.base import Store
from tests.tcp_proxy import FaultProxy

__all__ = ["outcome_answered_once_after_a_lost_reply"]


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
