"""The health check sees a worker that holds jobs but makes no progress.

A worker frozen with SIGSTOP while it runs jobs still looks alive for a while
(its last heartbeat is recent), but its leases lapse: ``check_health`` turns
unhealthy on the ``leases`` check once they passed their grace, and healthy
again when the jobs move, whether the worker is thawed (its tokens still
hold: nobody else claimed them) or another worker takes them over. The usual
pass criteria of the suite hold as well: no job lost, every duplicate run
explained by a logged lease loss.
"""

from __future__ import annotations

import pytest

from masa_jobs import JobManager, JobState
from masa_jobs.health import HealthReport, check_health

from .conftest import FleetFactory
from .fleet import Fleet, WorkerProcess
from .jobs import Short
from .scenario import (
    LEASE,
    OPTIONS,
    all_finished,
    enqueue,
    finish_scenario,
    has_open_run,
    open_jobs,
    settle,
    settle_or_fail,
    taken_over,
)
from .stores import FaultStore, observer

pytestmark = [pytest.mark.anyio, pytest.mark.faults]

# More than the fleet holds (concurrency 4 plus 4 prefetched): work stays due.
JOBS = 24
JOB_SECONDS = 0.5
# A lease lapsed for longer than this is a stuck job to the check (the fleet's
# poll interval is 0.5 s: a live worker with a free slot claims sooner).
LEASE_GRACE = LEASE / 2
# Bounds on the waits for the check to change its answer: a lease, its grace
# and a claim take a few seconds; a loaded machine gets many times that.
UNHEALTHY_WITHIN = 30.0
RECOVERED_WITHIN = 60.0
SETTLE_SECONDS = 3 * LEASE + 60


def _failing(report: HealthReport) -> list[str]:
    return [check.name for check in report.checks if not check.ok]


async def _health_until(
    manager: JobManager, wanted: bool, timeout: float, fleet: Fleet, what: str
) -> HealthReport:
    """Ask the check until its answer is ``wanted``; fail with the logs otherwise."""
    last: list[HealthReport] = []

    async def answered() -> bool:
        # The observer's options keep the default lease timeout (30 s): the
        # frozen worker's heartbeat still counts as live, so only its leases tell.
        report = await check_health(manager, lease_grace=LEASE_GRACE, max_due_age=3600)
        last[:] = [report]
        return report.healthy is wanted

    if not await settle(answered, timeout):
        raise AssertionError(f"{what} within {timeout} s: {last}\n{fleet.tails()}")
    return last[0]


async def _freeze_while_running(fleet: Fleet, worker: WorkerProcess) -> set[str]:
    await settle_or_fail(has_open_run(fleet.ledger, worker.pid), 30, fleet, "the worker ran no job")
    fleet.suspend(worker)
    # Read after the stop: a stopped worker writes nothing more until SIGCONT.
    return open_jobs(fleet.ledger, {worker.pid})


@pytest.mark.parametrize("recovery", ["thaw", "takeover"])
async def test_a_frozen_worker_is_unhealthy_until_its_jobs_move(
    any_store: FaultStore, fleet: FleetFactory, recovery: str
) -> None:
    workers = fleet(any_store, OPTIONS)
    async with observer(any_store) as obs:
        frozen = workers.start("frozen")
        await workers.wait_started([frozen])
        ids = await enqueue(
            obs.manager, (Short(key=f"job-{i}", sleep=JOB_SECONDS) for i in range(JOBS))
        )
        await _health_until(obs.manager, True, 30, workers, "not healthy while jobs run")

        held = await _freeze_while_running(workers, frozen)
        stuck = await _health_until(
            obs.manager, False, UNHEALTHY_WITHIN, workers, "the frozen worker's jobs not seen"
        )
        assert _failing(stuck) == ["leases"], stuck
        leases = next(check for check in stuck.checks if check.name == "leases")
        # Worker ids are host:pid:random: the detail names the frozen one.
        assert f":{frozen.pid}:" in leases.detail, leases.detail

        if recovery == "thaw":
            workers.resume(frozen)
        else:
            helper = workers.start("helper")
            await workers.wait_started([helper])
            await settle_or_fail(
                taken_over(workers.ledger, held, {frozen.pid}), 60, workers, "no takeover"
            )
        await _health_until(
            obs.manager, True, RECOVERED_WITHIN, workers, f"not healthy again after {recovery}"
        )
        if recovery == "takeover":
            workers.resume(frozen)
        workers.faults.end()

        await settle(all_finished(obs.manager, JOBS), SETTLE_SECONDS)
        await finish_scenario(
            obs.manager,
            workers,
            dict.fromkeys(ids, JobState.SUCCEEDED),
            f"health of a frozen worker, then {recovery}",
        )
