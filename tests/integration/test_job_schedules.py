"""A run-time schedule of an ordinary job, with args, across three worker processes.

``add_or_update_job_schedule`` from an enqueue-only process; three
``masa-jobs worker`` processes share the store. Each tick must store one
job (the ``integration-work`` job with the scheduled args), and each job must
run once.
"""

from __future__ import annotations

import math
from pathlib import Path

import anyio
import pytest

from masa_jobs import JobManager, JobState

from .app import Work
from .conftest import StoreUnderTest
from .harness import WorkerFleet, observer, read_records, wait_until

pytestmark = pytest.mark.anyio

# Long enough to span several scheduler passes of every worker.
RUN_SECONDS = 8
KEY = "scheduled-with-args"


async def test_three_workers_enqueue_the_args_once_per_tick(
    durable_store: StoreUnderTest, tmp_path: Path
) -> None:
    record_file = tmp_path / "records.txt"
    fleet = WorkerFleet(durable_store.env(), record_file)
    async with observer(durable_store) as manager:
        fleet.start(3, poll_interval=0.5)
        try:
            await wait_until(lambda: _workers_alive(manager, 3), timeout=60)
            started = anyio.current_time()
            await manager.add_or_update_job_schedule(
                "args-every-second", Work(key=KEY), "* * * * * *"
            )
            await anyio.sleep(RUN_SECONDS)  # the run under test, not a wait for a condition
            await manager.remove_schedule("args-every-second")
            elapsed = anyio.current_time() - started
            # Jobs of ticks fired before the removal still run; wait for them.
            await wait_until(lambda: _all_finished(manager), timeout=60)
            jobs = await manager.list(limit=1000)
        finally:
            codes = fleet.stop_all()
        assert codes == [0, 0, 0], fleet.logs()
    assert {(job.name, job.state) for job in jobs} == {("integration-work", JobState.SUCCEEDED)}
    assert all(job.args == {"key": KEY, "sleep": 0.0} for job in jobs)
    # One job per whole second the schedule existed, give or take the edges:
    # a tick fired twice would add a job per duplicate.
    assert RUN_SECONDS - 2 <= len(jobs) <= math.ceil(elapsed) + 1, [j.created_at for j in jobs]
    assert read_records(record_file)[KEY] == len(jobs), fleet.logs()


async def _workers_alive(manager: JobManager, count: int) -> bool:
    return len(await manager.workers()) >= count


async def _all_finished(manager: JobManager) -> bool:
    counts = await manager.count()
    return not any(
        counts[state] for state in (JobState.SCHEDULED, JobState.ENQUEUED, JobState.PROCESSING)
    )
