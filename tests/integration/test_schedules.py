"""Recurring jobs across real worker processes: one run per tick, none missed."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest

from masa_jobs import JobManager, JobState

from .app import RecordedTick
from .conftest import StoreUnderTest
from .harness import WorkerFleet, observer, read_records, wait_until

pytestmark = pytest.mark.anyio

# Long enough to span several scheduler passes of every worker.
RUN_SECONDS = 10


def every_second(schedule_id: str) -> RecordedTick:
    tick = RecordedTick()
    tick.id = schedule_id
    tick.cron_expression = "* * * * * *"
    return tick


async def test_four_workers_fire_each_tick_exactly_once(
    durable_store: StoreUnderTest, tmp_path: Path
) -> None:
    record_file = tmp_path / "records.txt"
    fleet = WorkerFleet(durable_store.env(), record_file)
    async with observer(durable_store) as manager:
        fleet.start(4, poll_interval=0.5)
        try:
            await wait_until(lambda: _workers_alive(manager, 4), timeout=60)
            await manager.add_or_update_schedule(every_second("every-second"))
            await anyio.sleep(RUN_SECONDS)  # the run under test, not a wait for a condition
            await manager.remove_schedule("every-second")
            # Ticks fired before the removal still run; wait for their jobs.
            await wait_until(lambda: _ticks_finished(manager), timeout=60)
        finally:
            codes = fleet.stop_all()
        assert codes == [0, 0, 0, 0], fleet.logs()
    ticks = read_records(record_file, "tick")
    assert ticks, fleet.logs()
    assert set(ticks.values()) == {1}, f"a tick ran more than once: {ticks}"
    fired = sorted(datetime.fromisoformat(at) for at in ticks)
    assert len(fired) >= RUN_SECONDS - 2
    gaps = [b - a for a, b in itertools.pairwise(fired)]
    assert set(gaps) == {timedelta(seconds=1)}, f"a tick was missed: {fired}"


async def test_update_and_remove_take_effect_without_restarting_workers(
    durable_store: StoreUnderTest, tmp_path: Path
) -> None:
    record_file = tmp_path / "records.txt"
    fleet = WorkerFleet(durable_store.env(), record_file)
    async with observer(durable_store) as manager:
        fleet.start(2, poll_interval=0.5)
        try:
            await wait_until(lambda: _workers_alive(manager, 2), timeout=60)
            rare = every_second("changing")
            rare.cron_expression = "0 0 1 1 *"  # once a year: nothing fires
            await manager.add_or_update_schedule(rare)
            await manager.add_or_update_schedule(every_second("changing"))
            await wait_until(lambda: _recorded_ticks(record_file, 2), timeout=30)
            await manager.remove_schedule("changing")
            await wait_until(lambda: _ticks_finished(manager), timeout=60)
            after_removal = len(read_records(record_file, "tick"))
            # Two scheduler passes of every worker: a removed schedule stays silent.
            await anyio.sleep(2.5)
            assert len(read_records(record_file, "tick")) == after_removal
        finally:
            fleet.stop_all()


async def _workers_alive(manager: JobManager, count: int) -> bool:
    return len(await manager.workers()) >= count


async def _recorded_ticks(record_file: Path, count: int) -> bool:
    return len(read_records(record_file, "tick")) >= count


async def _ticks_finished(manager: JobManager) -> bool:
    counts = await manager.count()
    return not any(
        counts[state] for state in (JobState.SCHEDULED, JobState.ENQUEUED, JobState.PROCESSING)
    )
