"""Recurring jobs under faults: each tick fires once, none is missed.

Ticks are read from the store (one tick job per ``fire_at``), runs from the
ledger. With the default ``misfire_grace`` (60 s), a tick delayed by a
few-second outage is late, not missed: it fires as itself once a scheduler
can reach the store (docs/recurring-jobs.md, "Missed ticks"). So in these
windows every second has exactly one tick: the documented catch-up run (one
run for many missed ticks) only applies to ticks more than ``misfire_grace``
late, which these faults cannot cause.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import replace
from datetime import datetime

import anyio
import pytest

from masa_jobs import JobInfo, JobManager, JobState
from masa_jobs.records import ScheduleRecord, utcnow
from masa_jobs.stores.base import Store

from .checker import Report, all_jobs
from .conftest import FleetFactory
from .fleet import Fleet
from .jobs import CronTick
from .ledger import real_time
from .scenario import LEASE, OPTIONS, finish_scenario, settle
from .stores import FaultStore, observer

pytestmark = [pytest.mark.anyio, pytest.mark.faults]

# Ticks within this many seconds of the window's ends may be missing: the first
# tick is the next whole second after the add, and a scheduler notices an
# add or a removal within a second.
EDGE_SECONDS = 2.0


def every_second(schedule_id: str) -> CronTick:
    tick = CronTick()
    tick.id = schedule_id
    tick.cron_expression = "* * * * * *"  # six fields, seconds first
    return tick


def _fired(infos: dict[str, JobInfo], schedule_id: str) -> dict[float, list[str]]:
    """fire_at (epoch seconds) -> ids of the tick jobs stored for it."""
    fired: dict[float, list[str]] = {}
    for info in infos.values():
        if info.name == f"schedule:{schedule_id}" and info.args is not None:
            at = datetime.fromisoformat(info.args["fire_at"]).timestamp()
            fired.setdefault(at, []).append(info.id)
    return fired


def tick_problems(fired: dict[float, list[str]], start: float, end: float) -> list[str]:
    """Ticks fired twice, and whole seconds of the window with no tick."""
    problems = []
    twice = {at: ids for at, ids in fired.items() if len(ids) > 1}
    if twice:
        shown = [
            f"{datetime.fromtimestamp(at):%H:%M:%S}: {ids}" for at, ids in sorted(twice.items())
        ]
        problems.append(f"ticks fired more than once: {len(twice)}\n  " + "\n  ".join(shown[:8]))
    expected = range(math.ceil(start + EDGE_SECONDS), math.floor(end - EDGE_SECONDS) + 1)
    missing = [second for second in expected if float(second) not in fired]
    if missing:
        shown = [f"{datetime.fromtimestamp(s):%H:%M:%S}" for s in missing]
        problems.append(
            f"ticks missing in the window: {len(missing)} of {len(expected)}: {shown[:20]}"
        )
    return problems


async def _ticks_done(manager: JobManager) -> bool:
    counts = await manager.count()
    busy = (JobState.SCHEDULED, JobState.ENQUEUED, JobState.PROCESSING)
    return not any(counts.get(state, 0) for state in busy)


async def _finish_ticks(
    manager: JobManager,
    fleet: Fleet,
    schedule_id: str,
    start: float,
    end: float,
    name: str,
    problems: Sequence[str] = (),
) -> None:
    await settle(lambda: _ticks_done(manager), 3 * LEASE + 30)
    infos = await all_jobs(manager)
    fired = _fired(infos, schedule_id)
    expected = {job: JobState.SUCCEEDED for ids in fired.values() for job in ids}

    def ticks(report: Report) -> None:
        report.extra += [*problems, *tick_problems(fired, start, end)]

    await finish_scenario(manager, fleet, expected, name, ticks)


# -- cron across workers, one SIGKILLed, an outage --------------------------------------------


async def test_cron_with_a_sigkill_and_an_outage(
    any_store: FaultStore, fleet: FleetFactory
) -> None:
    """Three workers tick every second; one is SIGKILLed (and restarted), then
    the two others lose the store (frozen) for longer than a lease."""
    schedule_id = "faults-cron"
    workers = fleet(any_store, OPTIONS)
    proxy = any_store.proxy() if any_store.network else None
    with proxy or nullcontext():
        try:
            async with observer(any_store) as obs:
                env = any_store.worker_env(proxy) if proxy is not None else None
                cut = [workers.start(f"cut{i}", env=env) for i in range(2)]
                target = workers.start("killed")
                await workers.wait_started([*cut, target])
                start = real_time()
                await obs.manager.add_or_update_schedule(every_second(schedule_id))
                await anyio.sleep(2.0)  # fault timing: ticks under way
                workers.kill(target)
                workers.restart(target)
                await anyio.sleep(2.0)  # fault timing
                if proxy is not None:
                    workers.faults.faulted.update(w.pid for w in cut)
                    workers.faults.note("proxy freeze")
                    proxy.freeze()
                    await anyio.sleep(1.5 * LEASE)  # the outage itself
                    proxy.restore()
                workers.faults.end()
                await anyio.sleep(3.0)  # ticks after the faults
                await obs.manager.remove_schedule(schedule_id)
                end = real_time()
                await _finish_ticks(
                    obs.manager, workers, schedule_id, start, end, "cron under faults"
                )
        finally:
            workers.close()


# -- schedule updates racing the ticks ----------------------------------------------------------


async def test_schedule_updates_racing_ticks(any_store: FaultStore, fleet: FleetFactory) -> None:
    """While three workers tick every second, the test updates the schedule in a
    loop: through the manager (same cron), and by writing back a copy read a
    second earlier (what an update racing a tick writes). Per the store's
    ``upsert_schedule`` contract neither may move ``next_fire_at`` or
    ``last_fire_at`` back: no tick fires twice, none is missed."""
    schedule_id = "faults-race"
    workers = fleet(any_store, OPTIONS)
    async with observer(any_store) as obs:
        started = [workers.start(f"w{i}") for i in range(3)]
        await workers.wait_started(started)
        start = real_time()
        await obs.manager.add_or_update_schedule(every_second(schedule_id))
        regressions = await _race_updates(obs.manager, obs.store, schedule_id, seconds=6.0)
        await obs.manager.remove_schedule(schedule_id)
        end = real_time()

        await _finish_ticks(
            obs.manager,
            workers,
            schedule_id,
            start,
            end,
            "schedule updates racing ticks",
            regressions,
        )


async def _race_updates(
    manager: JobManager, store: Store, schedule_id: str, seconds: float
) -> list[str]:
    """Update in a loop for ``seconds``; the regressions of the stored schedule seen."""
    snapshots: deque[tuple[float, ScheduleRecord]] = deque()
    seen: list[ScheduleRecord] = []
    with anyio.move_on_after(seconds):
        while True:
            await manager.add_or_update_schedule(every_second(schedule_id))
            current = await store.get_schedule(schedule_id)
            assert current is not None
            seen.append(current)
            snapshots.append((real_time(), current))
            if snapshots[0][0] < real_time() - 1.0:
                _, stale = snapshots.popleft()
                await store.upsert_schedule(replace(stale, updated_at=utcnow()))
                after = await store.get_schedule(schedule_id)
                assert after is not None
                seen.append(after)
            await anyio.sleep(0.02)
    return _regressions(seen)


def _regressions(seen: list[ScheduleRecord]) -> list[str]:
    problems = []
    for before, after in itertools.pairwise(seen):
        if before.last_fire_at is not None and (
            after.last_fire_at is None or after.last_fire_at < before.last_fire_at
        ):
            problems.append(
                f"last_fire_at went back: {before.last_fire_at} -> {after.last_fire_at}"
            )
        if after.next_fire_at < before.next_fire_at:
            problems.append(
                f"next_fire_at went back: {before.next_fire_at} -> {after.next_fire_at}"
            )
    if problems:
        return [f"schedule moved back {len(problems)} times\n  " + "\n  ".join(problems[:8])]
    return []
