"""Jobs under faults: every job runs, none is lost, and every duplicate run is
explained by a crash or by a lease loss the cut-off worker logged.

Pass criteria of every scenario (``checker.py``): 0 jobs lost; 0 runs of one
job by one worker process; every duplicate explained; no job left in
``processing`` once the faults ended and a lease passed; the workers the test
did not kill still run at the end and stop with exit code 0.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable

import anyio
import pytest

from masa_jobs import JobInfo, JobManager, JobState

from .app import NewWork
from .checker import Report, all_jobs
from .conftest import FleetFactory
from .fleet import APP, APP_OLD, Fleet, WorkerProcess
from .jobs import Fail, Short
from .ledger import Run, read_runs, real_time
from .scenario import (
    LEASE,
    OPTIONS,
    all_finished,
    enqueue,
    finish_scenario,
    has_open_run,
    hold_fault_until_taken_over,
    open_jobs,
    settle,
    settle_or_fail,
    succeeded_at_least,
)
from .stores import FaultStore, observer

pytestmark = [pytest.mark.anyio, pytest.mark.faults]

# A fault that outlasts the lease: two leases.
FAULT_SECONDS = 2 * LEASE
# options.max_error_length by default; a text cut to it keeps a short mark of the cut.
MAX_ERROR_LENGTH = 16 * 1024
CUT_MARK_ROOM = 64
# How much longer a fault is held, at most, for another worker to take over the
# faulted one's jobs (claims take lapsed jobs after the pending ones of their time).
TAKEOVER_SECONDS = 20.0
# Once the faults end: a lease for the cut-off jobs to fall due, then the work.
SETTLE_SECONDS = 3 * LEASE + 30


def _scaled(at_scale_one: int, scale: float, least: int) -> int:
    return max(least, round(at_scale_one * scale))


async def _start(
    fleet: Fleet, labels: list[str], env: dict[str, str] | None = None, app: str = APP
) -> list[WorkerProcess]:
    started = [fleet.start(label, env=env, app=app) for label in labels]
    await fleet.wait_started(started)
    fleet.faults.note(f"started {', '.join(f'{w.label}:{w.pid}' for w in started)}")
    return started


def _all(ids: list[str], state: JobState = JobState.SUCCEEDED) -> dict[str, JobState]:
    return dict.fromkeys(ids, state)


# -- SIGKILL storm -----------------------------------------------------------------------


async def test_sigkill_storm(any_store: FaultStore, fleet: FleetFactory, scale: float) -> None:
    """A random worker SIGKILLed every 1-2 s, and restarted, while jobs run."""
    jobs = _scaled(5000, scale, least=100)
    workers = fleet(any_store, OPTIONS)
    seed = time.time_ns()
    workers.faults.note(f"random seed {seed}")
    async with observer(any_store) as obs:
        await _start(workers, ["w0", "w1", "w2"])
        ids = await enqueue(obs.manager, (Short(key=f"job-{i}", sleep=0.1) for i in range(jobs)))
        # Without faults the work takes jobs * 0.1 s / 12 slots: the storm spans it.
        kills = await _storm(workers, obs.manager, jobs, random.Random(seed), jobs * 0.04 + 20)
        workers.faults.note(f"storm over after {kills} SIGKILLs")
        workers.faults.end()
        await workers.wait_started([w for w in workers.live() if w.process.poll() is None])
        await settle(all_finished(obs.manager, jobs), SETTLE_SECONDS)

        def storm_happened(report: Report) -> None:
            if kills < 2:
                report.extra.append(f"only {kills} SIGKILLs: the storm ended before it began")

        await finish_scenario(obs.manager, workers, _all(ids), "SIGKILL storm", storm_happened)


async def _storm(
    fleet: Fleet, manager: JobManager, total: int, rng: random.Random, max_seconds: float
) -> int:
    kills = 0
    finished = all_finished(manager, total)
    with anyio.move_on_after(max_seconds):
        while not await finished():
            await anyio.sleep(rng.uniform(1.0, 2.0))  # the fault's timing
            running = [w for w in fleet.live() if w.process.poll() is None]
            victim = rng.choice(running)
            fleet.kill(victim)
            fleet.restart(victim)
            kills += 1
    return kills


# -- SIGSTOP past the lease -----------------------------------------------------------------


@pytest.mark.parametrize("frozen", ["one", "all"])
async def test_sigstop_past_the_lease(
    any_store: FaultStore, fleet: FleetFactory, scale: float, frozen: str
) -> None:
    """Workers frozen (SIGSTOP) mid-job for at least two leases, then thawed.

    ``one``: one worker, held frozen until the others ran its jobs: its late
    outcomes are refused and logged as lost leases, and it starts none of the
    jobs it had prefetched. ``all``: the whole fleet (a paused VM): nobody can
    take over, so on thawing each worker must record its own outcomes (its
    tokens still hold) and never claim back its own jobs; a job another worker
    grabs first is a duplicate only with a logged lease loss.
    """
    jobs = _scaled(500, scale, least=60)
    workers = fleet(any_store, OPTIONS)
    async with observer(any_store) as obs:
        started = await _start(workers, ["w0", "w1", "w2"])
        victims = started[:1] if frozen == "one" else started
        ids = await enqueue(obs.manager, (Short(key=f"job-{i}", sleep=0.2) for i in range(jobs)))
        for victim in victims:
            await settle_or_fail(
                has_open_run(workers.ledger, victim.pid), 30, workers, "a victim ran no job"
            )
        for victim in victims:
            workers.suspend(victim)
        pids = {victim.pid for victim in victims}
        # Read after the stop: a stopped worker writes nothing more until SIGCONT.
        frozen_jobs = open_jobs(workers.ledger, pids)
        problem = None
        if frozen == "one":
            problem = await hold_fault_until_taken_over(
                workers, frozen_jobs, pids, FAULT_SECONDS, TAKEOVER_SECONDS
            )
        else:
            await anyio.sleep(FAULT_SECONDS)  # the fault itself
        for victim in victims:
            workers.resume(victim)
        workers.faults.end()
        await settle(all_finished(obs.manager, jobs), SETTLE_SECONDS)
        await finish_scenario(
            obs.manager, workers, _all(ids), f"SIGSTOP {frozen} past the lease", _add(problem)
        )


def _add(problem: str | None) -> Callable[[Report], None]:
    def add(report: Report) -> None:
        if problem is not None:
            report.extra.append(problem)

    return add


# -- store outage through the proxy --------------------------------------------------------


@pytest.mark.parametrize("mode", ["freeze", "refuse"])
async def test_store_outage_longer_than_the_lease(
    network_store: FaultStore, fleet: FleetFactory, scale: float, mode: str
) -> None:
    """Workers lose the store for at least two leases while they run jobs.

    ``freeze``: two of three workers; no byte is forwarded and all arrive late
    (stale renewals and outcomes), and the outage lasts until the third ran
    their jobs: their late outcomes are refused and logged as lost leases.
    ``refuse``: all three; connections are reset and nobody can take over, so
    on reconnecting each worker records its own outcomes and never claims
    back its own jobs. Nothing is lost either way.
    """
    jobs = _scaled(500, scale, least=60)
    workers = fleet(network_store, OPTIONS)
    with network_store.proxy() as proxy:
        try:
            async with observer(network_store) as obs:
                cut_env = network_store.worker_env(proxy)
                cut = [workers.start(f"cut{i}", env=cut_env) for i in range(2)]
                third = (
                    workers.start("direct")
                    if mode == "freeze"
                    else workers.start("cut2", env=cut_env)
                )
                await workers.wait_started([*cut, third])
                if mode == "refuse":
                    cut.append(third)
                ids = await enqueue(
                    obs.manager, (Short(key=f"job-{i}", sleep=0.2) for i in range(jobs))
                )
                for worker in cut:
                    await settle_or_fail(
                        has_open_run(workers.ledger, worker.pid), 30, workers, "a cut worker idled"
                    )
                cut_pids = {w.pid for w in cut}
                workers.faults.faulted.update(cut_pids)
                workers.faults.note(f"proxy {mode}")
                getattr(proxy, mode)()
                problem = None
                if mode == "freeze":
                    # Open now: their outcomes cannot have reached the store.
                    cut_jobs = open_jobs(workers.ledger, cut_pids)
                    problem = await hold_fault_until_taken_over(
                        workers, cut_jobs, cut_pids, FAULT_SECONDS, TAKEOVER_SECONDS
                    )
                else:
                    await anyio.sleep(FAULT_SECONDS)  # the outage itself
                proxy.restore()
                workers.faults.end()
                await settle(all_finished(obs.manager, jobs), SETTLE_SECONDS)
                await finish_scenario(
                    obs.manager, workers, _all(ids), f"store outage ({mode})", _add(problem)
                )
        finally:
            workers.close()  # before the proxy goes: a stopping worker still needs the store


# -- store connections killed ----------------------------------------------------------------


async def test_store_connections_killed_mid_run(
    network_store: FaultStore, fleet: FleetFactory, scale: float
) -> None:
    """Every connection of every worker killed by the server, five times a second apart."""
    # The work (jobs * 0.25 s / 12 slots) outlasts the kills.
    jobs = _scaled(1500, scale, least=100)
    workers = fleet(network_store, OPTIONS)
    async with observer(network_store) as obs:
        started = await _start(workers, ["w0", "w1", "w2"])
        ids = await enqueue(obs.manager, (Short(key=f"job-{i}", sleep=0.25) for i in range(jobs)))
        await settle_or_fail(
            succeeded_at_least(obs.manager, jobs // 10), 30, workers, "no progress"
        )
        workers.faults.faulted.update(w.pid for w in started)
        killed = 0
        for _ in range(5):
            killed += await network_store.kill_connections()
            workers.faults.note(f"killed connections, {killed} so far")
            await anyio.sleep(1.0)  # the fault's timing
        workers.faults.end()
        await settle(all_finished(obs.manager, jobs), SETTLE_SECONDS)

        def connections_were_killed(report: Report) -> None:
            if killed == 0:
                report.extra.append("no connection was killed: the fault did not happen")

        await finish_scenario(
            obs.manager, workers, _all(ids), "connections killed", connections_were_killed
        )


# -- store replies lost ----------------------------------------------------------------------


async def test_store_replies_lost(
    network_store: FaultStore, fleet: FleetFactory, scale: float
) -> None:
    """The store's reply to one call is thrown away, and its connection cut, five
    times a second for five seconds, between three workers and the store:
    claims, outcomes, renewals, waits and heartbeats the server carried out
    and whose answer never came. Nothing is lost, nothing runs twice, and no
    worker takes an unanswered outcome for a lost lease.
    """
    jobs = _scaled(1500, scale, least=100)
    workers = fleet(network_store, OPTIONS)
    with network_store.proxy() as proxy:
        try:
            async with observer(network_store) as obs:
                env = network_store.worker_env(proxy)
                started = [workers.start(f"w{i}", env=env) for i in range(3)]
                await workers.wait_started(started)
                ids = await enqueue(
                    obs.manager, (Short(key=f"job-{i}", sleep=0.05) for i in range(jobs))
                )
                await settle_or_fail(
                    succeeded_at_least(obs.manager, jobs // 10), 30, workers, "no progress"
                )
                workers.faults.faulted.update(w.pid for w in started)
                for _ in range(25):
                    proxy.lose_next_reply()
                    await anyio.sleep(0.2)  # the fault's timing
                workers.faults.note(f"replies lost: {proxy.replies_lost}")
                workers.faults.end()
                await settle(all_finished(obs.manager, jobs), SETTLE_SECONDS)

                def replies_were_lost(report: Report) -> None:
                    if proxy.replies_lost == 0:
                        report.extra.append("no reply was lost: the fault did not happen")
                    if report.duplicates:
                        report.extra.append(
                            f"{len(report.duplicates)} job(s) ran twice: a lost reply is "
                            "answered, never a reason to run a job again"
                        )
                    if report.lease_lost_lines:
                        report.extra.append(
                            f"lease-lost lines {dict(report.lease_lost_lines)}: an outcome "
                            "whose reply was lost is answered as applied, no lease was lost"
                        )

                await finish_scenario(
                    obs.manager, workers, _all(ids), "replies lost", replies_were_lost
                )
        finally:
            workers.close()  # before the proxy goes: a stopping worker still needs the store


# -- skewed worker clocks ----------------------------------------------------------------------


async def test_skewed_worker_clocks(
    network_store: FaultStore,
    fleet: FleetFactory,
    faketime: Callable[[int], dict[str, str]],
) -> None:
    """A worker 2 h ahead and one 2 h behind beside two true ones: no delayed job
    starts early, and no job is taken from a worker that holds it (no duplicate).

    The store's clock decides due times and leases, so the skews must not matter.
    Long jobs (longer than the lease) need their leases renewed while skewed
    workers look on; delayed jobs must wait for the store's time. Ledger times
    are real: a skewed worker records its clock minus the skew faketime gave it.
    """
    delay = 3.0
    workers = fleet(network_store, OPTIONS)
    async with observer(network_store) as obs:
        store_env = network_store.worker_env()
        started = [
            workers.start("ahead-2h", env={**store_env, **faketime(7200)}),
            workers.start("behind-2h", env={**store_env, **faketime(-7200)}),
            workers.start("true0"),
            workers.start("true1"),
        ]
        await workers.wait_started(started)
        ids = await enqueue(
            obs.manager, (Short(key=f"long-{i}", sleep=1.5 * LEASE) for i in range(8))
        )
        ids += await enqueue(obs.manager, (Short(key=f"now-{i}", sleep=0.05) for i in range(60)))
        enqueued_at = real_time()
        delayed = await enqueue(
            obs.manager, (Short(key=f"later-{i}", sleep=0.05) for i in range(30)), delay=delay
        )
        await settle(all_finished(obs.manager, len(ids) + len(delayed)), 2 * delay + 30)

        def nothing_early(report: Report) -> None:
            runs = read_runs(workers.ledger)
            early = [
                f"{run.key} started {enqueued_at + delay - run.start:.3f} s early on pid {run.pid}"
                for job in delayed
                for run in runs.get(job, [])
                if run.start < enqueued_at + delay - 0.01
            ]
            if early:
                report.extra.append(
                    f"delayed jobs started early: {len(early)}\n  " + "\n  ".join(early[:8])
                )

        await finish_scenario(
            obs.manager, workers, _all(ids + delayed), "skewed clocks", nothing_early
        )


# -- outcomes the store would reject -------------------------------------------------------------


async def test_errors_the_store_would_reject(any_store: FaultStore, fleet: FleetFactory) -> None:
    """Handlers raise messages with a NUL, a lone surrogate, or 10 MB of text; with
    no retries each job ends dead, with a clean error, and the workers go on."""
    options = {**OPTIONS, "max_retry_times": 0}
    workers = fleet(any_store, options)
    async with observer(any_store) as obs:
        await _start(workers, ["w0", "w1", "w2"])
        failing = await enqueue(
            obs.manager,
            (
                Fail(key=f"{kind}-{i}", kind=kind)
                for kind in ("nul", "surrogate", "huge")
                for i in range(2)
            ),
        )
        await settle(all_finished(obs.manager, len(failing)), 30)
        after = await enqueue(obs.manager, (Short(key=f"after-{i}", sleep=0.2) for i in range(48)))
        await settle(all_finished(obs.manager, len(failing) + len(after)), 30)
        infos = await all_jobs(obs.manager)

        def clean_errors_and_busy_workers(report: Report) -> None:
            report.extra += _error_problems([infos[j] for j in failing if j in infos])
            report.extra += _idle_after_failure(read_runs(workers.ledger), failing, after)

        await finish_scenario(
            obs.manager,
            workers,
            {**_all(failing, JobState.DEAD), **_all(after)},
            "errors the store would reject",
            clean_errors_and_busy_workers,
        )


def _error_problems(infos: list[JobInfo]) -> list[str]:
    problems = []
    for info in infos:
        error = info.last_error or ""
        kind = (info.args or {}).get("kind")
        if not error:
            problems.append(f"job {info.id} ({kind}) has no last_error")
        if "\x00" in error:
            problems.append(f"job {info.id} ({kind}): last_error keeps a NUL")
        try:
            error.encode()
        except UnicodeEncodeError:
            problems.append(f"job {info.id} ({kind}): last_error keeps a lone surrogate")
        if len(error) > MAX_ERROR_LENGTH + CUT_MARK_ROOM:
            problems.append(f"job {info.id} ({kind}): last_error is {len(error)} characters")
        if kind != "huge" and "FaultError" not in error:
            problems.append(
                f"job {info.id} ({kind}): last_error lost the exception: {error[:200]!r}"
            )
    return problems


def _idle_after_failure(
    runs: dict[str, list[Run]], failing: list[str], after: list[str]
) -> list[str]:
    """Workers that ran a failing job must run later jobs too (none is wedged)."""
    last_failure: dict[int, float] = {}
    for job in failing:
        for run in runs.get(job, []):
            last_failure[run.pid] = max(last_failure.get(run.pid, 0.0), run.start)
    later: set[int] = set()
    for job in after:
        later.update(
            run.pid for run in runs.get(job, []) if run.start > last_failure.get(run.pid, 0)
        )
    idle = sorted(set(last_failure) - later)
    return [f"workers that ran no job after a failing one: pids {idle}"] if idle else []


# -- rolling deploy ----------------------------------------------------------------------------


async def test_rolling_deploy(any_store: FaultStore, fleet: FleetFactory) -> None:
    """Old workers (no handler for ``faults-new``) see new jobs first: the jobs wait,
    undamaged and with no attempt used; a new worker then runs each once."""
    workers = fleet(any_store, OPTIONS)
    async with observer(any_store) as obs:
        old = await _start(workers, ["old0", "old1"], app=APP_OLD)
        new_ids = await enqueue(obs.manager, (NewWork(key=f"new-{i}") for i in range(20)))
        old_ids = await enqueue(obs.manager, (Short(key=f"old-{i}") for i in range(20)))
        await settle_or_fail(
            succeeded_at_least(obs.manager, len(old_ids)), 30, workers, "old jobs did not run"
        )
        workers.faults.note("old jobs done")
        await anyio.sleep(LEASE)  # the deploy window: only old workers, for a lease
        during = await all_jobs(obs.manager)
        waited = _waiting_problems([during[j] for j in new_ids if j in during])
        # The deploy: a new worker, the first old one stopped, a second new one;
        # the other old one runs on beside them.
        new_workers = await _start(workers, ["new0"])
        workers.retire(old[0])
        new_workers += await _start(workers, ["new1"])
        # Old and new workers race for the jobs each time one is put back.
        await settle(all_finished(obs.manager, len(new_ids) + len(old_ids)), 60)
        after = await all_jobs(obs.manager)

        new_pids = {w.pid for w in new_workers}

        def once_each(report: Report) -> None:
            report.extra += waited
            runs = read_runs(workers.ledger)
            for job in new_ids:
                info = after.get(job)
                if info is not None and info.attempts != 1:
                    report.extra.append(f"new job {job} ended with attempts {info.attempts}, not 1")
                others = [r.pid for r in runs.get(job, []) if r.pid not in new_pids]
                if others:
                    report.extra.append(f"new job {job} ran on old workers {others}")

        await finish_scenario(
            obs.manager, workers, _all(new_ids + old_ids), "rolling deploy", once_each
        )


def _waiting_problems(infos: list[JobInfo]) -> list[str]:
    """New jobs seen only by old workers: none dead, none with an attempt used."""
    problems = []
    for info in infos:
        if info.state is JobState.DEAD:
            problems.append(
                f"new job {info.id} went dead on an old worker: {info.last_error!r:.200}"
            )
        elif info.state.is_pending and info.attempts != 0:
            problems.append(f"new job {info.id} waits with attempts {info.attempts}, not 0")
        elif info.attempts > 1:
            problems.append(f"new job {info.id} used {info.attempts} attempts on old workers")
    return (
        [f"during the deploy window: {len(problems)} problems\n  " + "\n  ".join(problems[:8])]
        if problems
        else []
    )
