"""Real ``masa-jobs worker`` processes sharing one durable store."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import anyio
import pytest

from masa_jobs import JobManager, JobState
from tests.tcp_proxy import in_front_of, through

from .app import Work
from .conftest import StoreUnderTest
from .harness import (
    REPO_ROOT,
    WorkerFleet,
    observer,
    read_records,
    records_by_pid,
    wait_until,
)

pytestmark = pytest.mark.anyio


async def succeeded(manager: JobManager) -> int:
    return (await manager.count())[JobState.SUCCEEDED]


async def test_four_workers_run_every_job_exactly_once(
    durable_store: StoreUnderTest, tmp_path: Path
) -> None:
    jobs = 10_000
    record_file = tmp_path / "records.txt"
    fleet = WorkerFleet(durable_store.env(), record_file)
    async with observer(durable_store) as manager:
        fleet.start(4, concurrency=20, poll_interval=1)
        try:
            # All four are up before the jobs arrive: a fast store could run them
            # all before a slow-starting worker installs its SIGTERM handler.
            await wait_until(lambda: _workers_are(manager, 4), timeout=60, interval=0.1)
            for start in range(0, jobs, 1_000):
                await manager.enqueue_many(
                    (Work(key=f"job-{i}"), None) for i in range(start, start + 1_000)
                )
            await wait_until(lambda: _count_is(manager, jobs), timeout=240, interval=0.5)
        finally:
            codes = fleet.stop_all()
        assert codes == [0, 0, 0, 0], fleet.logs()
        done = read_records(record_file)
        assert len(done) == jobs
        assert set(done.values()) == {1}, "a job ran more than once"
        counts = await manager.count()
        assert counts[JobState.SUCCEEDED] == jobs
        assert counts[JobState.DEAD] == 0


async def _count_is(manager: JobManager, expected: int) -> bool:
    return await succeeded(manager) >= expected


async def _workers_are(manager: JobManager, expected: int) -> bool:
    return len(await manager.workers()) >= expected


async def test_a_killed_worker_s_job_runs_again_elsewhere(
    durable_store: StoreUnderTest, tmp_path: Path
) -> None:
    record_file = tmp_path / "records.txt"
    fleet = WorkerFleet(durable_store.env(), record_file)
    lease_timeout = 2
    async with observer(durable_store) as manager:
        slow_id = await manager.enqueue(Work(key="slow", sleep=2.0))
        fleet.start(2, lease_timeout=lease_timeout, poll_interval=0.5)
        try:
            await wait_until(
                lambda: _recorded(record_file, "start", "slow"), timeout=30, interval=0.05
            )
            victim_pid = records_by_pid(record_file, "start")["slow"]
            victim = next(p for p in fleet.processes if p.pid == victim_pid)
            fleet.kill(victim)
            quick_ids = await manager.enqueue_many(
                (Work(key=f"quick-{i}"), None) for i in range(20)
            )
            await wait_until(
                lambda: _all_succeeded(manager, [slow_id, *quick_ids]),
                timeout=lease_timeout + 2.0 + 10,
            )
        finally:
            fleet.stop_all()
        info = await manager.get(slow_id)
        assert info is not None
        assert info.state is JobState.SUCCEEDED
        assert info.attempts == 2, "the crashed attempt and the successful one"
        assert records_by_pid(record_file, "done")["slow"] != victim_pid
        done = read_records(record_file)
        assert all(done[f"quick-{i}"] == 1 for i in range(20))


async def _recorded(record_file: Path, event: str, key: str) -> bool:
    return read_records(record_file, event)[key] > 0


async def _all_succeeded(manager: JobManager, job_ids: list[str]) -> bool:
    for job_id in job_ids:
        info = await manager.get(job_id)
        if info is None or info.state is not JobState.SUCCEEDED:
            return False
    return True


# SQLite has no connection to cut: the stores on a server only.
@pytest.mark.parametrize("durable_store", ["postgres", "redis"], indirect=True)
async def test_a_cut_connection_loses_no_job(durable_store: StoreUnderTest, tmp_path: Path) -> None:
    setting = "dsn" if "dsn" in durable_store.settings else "url"
    url = durable_store.settings[setting]
    jobs = 1_000
    record_file = tmp_path / "records.txt"
    with in_front_of(url) as proxy:
        proxied = through(url, proxy)
        fleet = WorkerFleet(durable_store.with_settings(**{setting: proxied}).env(), record_file)
        async with observer(durable_store) as manager:
            await manager.enqueue_many(
                (Work(key=f"job-{i}", sleep=0.005), None) for i in range(jobs)
            )
            fleet.start(2, concurrency=5, poll_interval=0.5)
            try:
                await wait_until(lambda: _count_is(manager, jobs // 5), timeout=60)
                proxy.refuse()
                await anyio.sleep(5)  # the outage itself, not a wait for a condition
                proxy.restore()
                await wait_until(lambda: _count_is(manager, jobs), timeout=120, interval=0.25)
            finally:
                codes = fleet.stop_all()
            assert codes == [0, 0], fleet.logs()
            counts = await manager.count()
            assert counts[JobState.SUCCEEDED] == jobs
            done = read_records(record_file)
            assert len(done) == jobs, "every job ran"


async def test_a_delayed_job_survives_the_process_that_enqueued_it(
    durable_store: StoreUnderTest, tmp_path: Path
) -> None:
    script = (
        "import anyio\n"
        "from masa_jobs.containers import BackgroundJobContainer, load_env\n"
        "from masa_jobs import MasaApp\n"
        "from tests.integration.app import Work\n"
        "async def main():\n"
        "    container = BackgroundJobContainer()\n"
        "    load_env(container.config)\n"
        "    MasaApp.build(container)\n"
        "    async with MasaApp.lifespan():\n"
        "        print(await MasaApp.job_manager().enqueue(Work(key='durable'), delay=1.0))\n"
        "anyio.run(main)\n"
    )
    env = {
        **os.environ,
        **durable_store.env(),
        "MASA_JOBS_OPTIONS__DISABLE_BACKGROUND_JOB": "true",
    }
    with anyio.fail_after(60):
        result = await anyio.run_process(
            [sys.executable, "-c", script], cwd=REPO_ROOT, env=env, check=False
        )
    assert result.returncode == 0, result.stderr.decode()
    job_id = result.stdout.decode().strip()
    record_file = tmp_path / "records.txt"
    fleet = WorkerFleet(durable_store.env(), record_file)
    async with observer(durable_store) as manager:
        info = await manager.get(job_id)
        assert info is not None
        assert info.state in (JobState.SCHEDULED, JobState.ENQUEUED)
        fleet.start(1, poll_interval=0.5)
        try:
            await wait_until(lambda: _all_succeeded(manager, [job_id]), timeout=30)
        finally:
            fleet.stop_all()
    assert read_records(record_file)["durable"] == 1
