"""Worker clocks decide nothing: on every store, a worker whose clock is two
hours off steals no job from a healthy worker and runs no job early."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import anyio
import pytest

from masa_jobs import DefaultJobManager, JobRegistry, JobState, JobStore, Worker
from masa_jobs.records import utcnow
from tests.unit import support
from tests.unit.support import (
    ALL_HANDLERS,
    Blocking,
    Greet,
    ShiftedClock,
    calls_of,
    fast_options,
    gate,
    running,
    signal,
    wait_for_record,
)

pytestmark = pytest.mark.anyio

# Long enough that the skewed worker claims several times while the job runs.
LEASE_SECONDS = 0.6
DELAY = timedelta(seconds=0.8)


@pytest.fixture(autouse=True)
def _clean_support() -> Iterator[None]:
    for state in (support.CALLS, support.SIGNALS, support.GATES, support.FAILURES):
        state.clear()
    yield
    for state in (support.CALLS, support.SIGNALS, support.GATES, support.FAILURES):
        state.clear()


@pytest.mark.parametrize("skew", [timedelta(hours=2), timedelta(hours=-2)], ids=["ahead", "behind"])
async def test_a_skewed_worker_steals_nothing_and_runs_nothing_early(
    store: JobStore, skew: timedelta
) -> None:
    registry = JobRegistry(ALL_HANDLERS)
    options = fast_options(lease_timeout=LEASE_SECONDS, poll_interval=0.2)
    manager = DefaultJobManager(store, registry, options)  # type: ignore[arg-type]
    healthy = Worker(store, registry, options, worker_id="healthy")
    skewed = Worker(store, registry, options, worker_id="skewed", clock=ShiftedClock(skew))
    release = gate("long")
    started = signal("long")

    async with running(healthy):
        long_job = await manager.enqueue(Blocking(key="long"))
        with anyio.fail_after(5):
            await started.wait()
        async with running(skewed):
            enqueued_at = await store.now()
            delayed = await manager.enqueue(Greet(key="later"), delay=DELAY)
            done = await wait_for_record(store, delayed, lambda r: r.state is JobState.SUCCEEDED)
            # The long job has outlived several of the skewed worker's claims.
            held = await store.get(long_job)
            assert held is not None
            assert held.lease_owner == "healthy"
            release.set()
            finished = await wait_for_record(
                store, long_job, lambda r: r.state is JobState.SUCCEEDED
            )

    assert finished.attempts == 1
    assert calls_of("blocking") == ["long"]
    assert done.last_try_at is not None
    assert done.last_try_at >= enqueued_at + DELAY - timedelta(milliseconds=50)
    assert healthy.leases_lost == skewed.leases_lost == 0
    assert utcnow() - enqueued_at < timedelta(minutes=1)
