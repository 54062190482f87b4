"""The demo scenario: user sign-ups on the in-memory store, run through the public API.

Everything goes the way an application would do it: a ``BackgroundJobContainer``
configured from a dict, ``MasaApp.build``, ``MasaApp.lifespan()`` running the
worker, jobs enqueued through the static facade and through the container's
``job_manager``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from rich.console import RenderableType
from rich.live import Live

from masa_jobs import BackgroundJobManager, JobInfo, JobManager, JobState, MasaApp
from masa_jobs.containers import BackgroundJobContainer

from . import _demo_jobs as jobs

__all__ = [
    "DEMO_OPTIONS",
    "DemoJob",
    "DemoReport",
    "describe",
    "handler_runs",
    "planned_job_count",
    "run_demo",
]

# Small retry waits so that a job fails, retries and dies within a second:
# retries after 0.05 s and 0.1 s, dead after 3 attempts.
DEMO_OPTIONS: dict[str, Any] = {
    "first_wait_duration": 0.05,
    "wait_duration": 2,
    "max_retry_times": 2,
    "concurrency": 4,
    "shutdown_timeout": 2,
}
# The whole scenario finishes in about 1.5 s; this only guards against a hang.
DEMO_TIMEOUT_SECONDS = 30.0
# How often the progress view reads the per-state counts.
REFRESH_SECONDS = 0.1
# Users do not all sign up in the same millisecond; the gap makes progress visible.
SIGN_UP_GAP_SECONDS = 0.1
FOLLOW_UP_DELAY_SECONDS = 1.0

USERS = ("ada", "grace", "linus", "margaret", "alan")
FOLLOW_UP_USER = "ada"
GOOD_CHARGE = ("linus", "4242")
DECLINED_CHARGE = ("alan", jobs.DECLINED_CARD)


@dataclass(frozen=True)
class DemoJob:
    """One enqueued job and what the scenario expects of it."""

    job_id: str
    label: str
    user: str
    handlers: tuple[str, ...]
    expected_state: JobState = JobState.SUCCEEDED
    expected_attempts: int = 1
    delay: float = 0.0


@dataclass
class DemoReport:
    """What happened: each job with its final info, and how long it all took."""

    jobs: list[tuple[DemoJob, JobInfo | None]] = field(default_factory=list)
    elapsed: float = 0.0
    timed_out: bool = False

    def problems(self) -> list[str]:
        """Jobs that did not end as the scenario expects."""
        found: list[str] = []
        if self.timed_out:
            found.append(f"not every job finished within {DEMO_TIMEOUT_SECONDS:.0f} s")
        for job, info in self.jobs:
            if info is None:
                found.append(f"{job.label}: job {job.job_id} disappeared from the store")
            elif (info.state, info.attempts) != (job.expected_state, job.expected_attempts):
                found.append(
                    f"{job.label}: {info.state.value} after {info.attempts} attempts, expected "
                    f"{job.expected_state.value} after {job.expected_attempts}"
                )
        return found


def describe() -> list[str]:
    """The scenario in a few lines, for the user watching it run."""
    return [
        f"{len(USERS)} users sign up (BackgroundJobManager.enqueue): a welcome mail and a "
        f"CRM sync each; the CRM times out {jobs.CRM_FAILURES} times on "
        f"{jobs.FLAKY_CRM_USER}'s record, so only that handler runs again",
        f"a follow-up mail for {FOLLOW_UP_USER}, delayed {FOLLOW_UP_DELAY_SECONDS:g} s "
        "(job_manager.enqueue)",
        f"two trial charges (job_manager.enqueue_many); the card ending "
        f"{jobs.DECLINED_CARD} is always declined, so that job ends dead",
    ]


def handler_runs(job: DemoJob, info: JobInfo | None) -> str:
    """How often each handler of ``job`` ran, and for a delayed job when it started."""
    runs = ", ".join(f"{h} x{jobs.LEDGER.runs[(h, job.user)]}" for h in job.handlers)
    if info is not None and job.delay and info.last_try_at is not None:
        started = (info.last_try_at - info.created_at).total_seconds()
        runs += f" (delay {job.delay:g} s, started after {started:.2f} s)"
    return runs


def planned_job_count() -> int:
    return len(USERS) + 2 + 1  # sign-ups, two charges, one follow-up


def demo_container() -> BackgroundJobContainer:
    container = BackgroundJobContainer()
    container.config.from_dict({"store": {"backend": "memory"}, "options": DEMO_OPTIONS})
    return container


ViewFactory = Callable[[dict[JobState, int], float], RenderableType]


async def run_demo(live: Live, view: ViewFactory) -> DemoReport:
    """Run the scenario, keeping ``live`` updated with ``view(counts, elapsed)``."""
    container = demo_container()
    MasaApp.build(container)
    try:
        manager: JobManager = container.job_manager()
        report = DemoReport()
        started = time.monotonic()
        async with MasaApp.lifespan():
            planned: list[DemoJob] = []
            try:
                with anyio.fail_after(DEMO_TIMEOUT_SECONDS):
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_enqueue_scenario, manager, planned)
                        await _watch(manager, live, view, started)
            except TimeoutError:
                report.timed_out = True
            report.elapsed = time.monotonic() - started
            report.jobs = [(job, await manager.get(job.job_id)) for job in planned]
        return report
    finally:
        MasaApp.reset()


async def _enqueue_scenario(manager: JobManager, planned: list[DemoJob]) -> None:
    for user in USERS:
        # The path a web request takes: the static facade, no container in hand.
        job_id = await BackgroundJobManager.enqueue(
            jobs.UserSignedUp(user=user, email=f"{user}@example.com")
        )
        flaky = user == jobs.FLAKY_CRM_USER
        planned.append(
            DemoJob(
                job_id,
                f"sign-up of {user}",
                user,
                (jobs.WELCOME_MAIL, jobs.CRM_SYNC),
                expected_attempts=jobs.CRM_FAILURES + 1 if flaky else 1,
            )
        )
        await anyio.sleep(SIGN_UP_GAP_SECONDS)
    # The path of code that holds the container: its job_manager singleton.
    follow_up = await manager.enqueue(
        jobs.FollowUpMail(user=FOLLOW_UP_USER, email=f"{FOLLOW_UP_USER}@example.com"),
        delay=FOLLOW_UP_DELAY_SECONDS,
    )
    planned.append(
        DemoJob(
            follow_up,
            f"follow-up of {FOLLOW_UP_USER}",
            FOLLOW_UP_USER,
            (jobs.FOLLOW_UP_MAIL,),
            delay=FOLLOW_UP_DELAY_SECONDS,
        )
    )
    charges = [GOOD_CHARGE, DECLINED_CHARGE]
    ids = await manager.enqueue_many(
        (jobs.ChargeTrial(user=user, card_last4=card), None) for user, card in charges
    )
    dead_attempts = int(DEMO_OPTIONS["max_retry_times"]) + 1
    for job_id, (user, card) in zip(ids, charges, strict=True):
        declined = card == jobs.DECLINED_CARD
        planned.append(
            DemoJob(
                job_id,
                f"trial charge of {user}",
                user,
                (jobs.CHARGE,),
                expected_state=JobState.DEAD if declined else JobState.SUCCEEDED,
                expected_attempts=dead_attempts if declined else 1,
            )
        )


async def _watch(manager: JobManager, live: Live, view: ViewFactory, started: float) -> None:
    """Refresh the progress view until every planned job is finished."""
    total = planned_job_count()
    while True:
        counts = await manager.count()
        live.update(view(counts, time.monotonic() - started), refresh=True)
        if sum(counts.values()) == total and all(
            state.is_finished or not n for state, n in counts.items()
        ):
            return
        await anyio.sleep(REFRESH_SECONDS)
