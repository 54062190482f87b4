"""The faults scenario: worker processes SIGKILLed while they work, and no job lost.

Four processes run a batch; every ``kill_every`` seconds one of them (in
turn) is killed with SIGKILL, so it neither finishes nor gives back its jobs,
and a new process takes its place. Those jobs run again once their lease
runs out, so the lease is short here (``lease_timeout`` 2 s, in every run of
this scenario). The same batch on the same four processes without kills is
the reference.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import anyio

from ._bench_drain import Drained, fleet_run
from ._bench_fleet import WorkerFleet
from ._bench_processes import FLEET_POLL_INTERVAL, RATIO_DIGITS
from ._bench_settings import BenchSettings

__all__ = ["measure_faults"]

FAULT_PROCESSES = 4
# The lease a killed worker's jobs wait out before another worker runs them.
FAULT_LEASE_SECONDS = 2.0
# Without --fault-jobs, the batch lasts this long at the fault-free rate, so
# that several kills land in the faulted run.
FAULT_MIN_SECONDS = 20.0


async def measure_faults(settings: BenchSettings, backend: str) -> dict[str, Any]:
    """The fault-free and faulted rates of one batch, their ratio and the lost jobs."""
    options = settings.worker_options(
        poll_interval=FLEET_POLL_INTERVAL, lease_timeout=FAULT_LEASE_SECONDS
    )
    run = partial(fleet_run, settings.store, processes=FAULT_PROCESSES, options=options)
    jobs = settings.fault_jobs
    if jobs is None:
        calibration = await run(jobs=settings.jobs, backend=backend)
        jobs = max(settings.jobs, math.ceil(calibration.jobs_per_s * FAULT_MIN_SECONDS))
    fault_free = await run(jobs=jobs, backend=backend)
    kills: list[int] = []
    faulted = await run(
        jobs=jobs, backend=backend, disturb=partial(_kill_in_turn, settings.kill_every, kills)
    )
    return _report(settings, fault_free, faulted, len(kills))


async def _kill_in_turn(every: float, kills: list[int], fleet: WorkerFleet) -> None:
    """Every ``every`` seconds, SIGKILL the next process in turn and start a new one."""
    while True:
        await anyio.sleep(every)
        index = len(kills) % len(fleet.workers)
        kills.append(fleet.workers[index].pid)
        fleet.kill_and_replace(index)


def _report(
    settings: BenchSettings, fault_free: Drained, faulted: Drained, kills: int
) -> dict[str, Any]:
    return {
        "processes": FAULT_PROCESSES,
        "jobs": faulted.jobs,
        "kill_every_s": settings.kill_every,
        "lease_timeout_s": FAULT_LEASE_SECONDS,
        "kills": kills,
        "fault_free_jobs_per_s": round(fault_free.jobs_per_s),
        "faulted_jobs_per_s": round(faulted.jobs_per_s),
        "faulted_seconds": round(faulted.seconds, 3),
        "ratio": round(faulted.jobs_per_s / fault_free.jobs_per_s, RATIO_DIGITS),
        "fault_free_lost": fault_free.lost,
        "lost": faulted.lost,
    }
