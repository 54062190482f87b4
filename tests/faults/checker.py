"""The checker: what became of every job, from the ledger, the store and the logs.

Figures it reports (``Report.summary``) and the ones that fail a scenario
(``Report.problems``):

* **lost**: a job enqueued but not in its expected final state (succeeded,
  or dead for jobs meant to fail) once the faults ended and the run settled;
* **stuck**: a job still ``processing`` then;
* **duplicates**: a job run more than once. Runs are ordered by attempt (the
  order of their claims); every run but the last was *superseded*, and each
  must be explained: its worker was SIGKILLed after it started (a crash:
  at-least-once delivery), or its worker was faulted (frozen, cut off from
  the store, connections killed) *and* logged ``lease lost`` for that job;
* **same-pid duplicates**: one worker process running one job twice (a worker
  must never take back its own job): must be 0;
* **stale starts**: a run that started after a run of a later claim of the
  same job had started (the worker ran a job whose lease had lapsed and been
  taken over): must be 0;
* **same-token runs**: two runs under one lease token (one claim run twice);
* **runs without a lease token**, **runs not counted as attempts** (store
  attempts below the runs seen), **succeeded without a run**, **dead without
  its ERROR line**, workers that exited before the end or did not stop cleanly.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from masa_jobs import JobInfo, JobManager, JobState

from .fleet import FaultLog, Fleet
from .ledger import Run, read_runs

__all__ = ["Duplicate", "Report", "all_jobs", "assert_clean", "build_report", "check"]

LEASE_LOST = re.compile(r" WARNING +\S+: .*\bjob (?P<job>\S+) \((?P<name>[^)]*)\): lease lost")
# "is dead: <reason>", or "is dead after N attempts: <reason>".
DEAD = re.compile(r" ERROR +\S+: .*\bjob (?P<job>\S+) \((?P<name>[^)]*)\) is dead\b")
ERROR = re.compile(r"^\S+ \S+ ERROR ")
# How many of each kind of problem a failure message details.
DETAILS = 8


@dataclass
class Duplicate:
    """A job run more than once, and what explains each superseded run."""

    job: str
    runs: list[Run]
    lease_lost_by: set[int]
    unexplained: list[Run]

    def describe(self) -> str:
        runs = "\n".join(f"      {run.describe()}" for run in self.runs)
        lost = sorted(self.lease_lost_by) or "no worker"
        return f"  job {self.job}: {len(self.runs)} runs; lease lost logged by {lost}\n{runs}"


@dataclass
class Report:
    """Figures of one scenario; ``problems()`` is empty when it passed."""

    enqueued: int
    states: Counter[str]
    lost: dict[str, str] = field(default_factory=dict)
    stuck: list[str] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    same_pid: dict[str, list[Run]] = field(default_factory=dict)
    same_token: dict[str, list[Run]] = field(default_factory=dict)
    stale_starts: dict[str, list[Run]] = field(default_factory=dict)
    runs: int = 0
    runs_without_token: int = 0
    succeeded_without_run: list[str] = field(default_factory=list)
    attempts_below_runs: dict[str, tuple[int, int]] = field(default_factory=dict)
    dead_not_logged: list[str] = field(default_factory=list)
    lease_lost_lines: Counter[int] = field(default_factory=Counter)
    error_lines: Counter[int] = field(default_factory=Counter)
    runs_by_pid: Counter[int] = field(default_factory=Counter)
    not_running: list[str] = field(default_factory=list)
    bad_exits: dict[str, int] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)

    @property
    def unexplained(self) -> list[Duplicate]:
        return [d for d in self.duplicates if d.unexplained]

    def summary(self) -> str:
        extra_runs = sum(len(d.runs) - 1 for d in self.duplicates)
        return "\n".join(
            [
                f"enqueued {self.enqueued}, final states {dict(self.states)}, runs {self.runs}",
                f"lost {len(self.lost)}, stuck in processing {len(self.stuck)}",
                f"jobs run more than once {len(self.duplicates)} ({extra_runs} extra runs), "
                f"unexplained {len(self.unexplained)}, same-pid {len(self.same_pid)}, "
                f"stale starts {len(self.stale_starts)}, same-token {len(self.same_token)}",
                f"runs without a lease token {self.runs_without_token}, runs not counted as "
                f"attempts {len(self.attempts_below_runs)}, succeeded without a run "
                f"{len(self.succeeded_without_run)}, dead without an ERROR line "
                f"{len(self.dead_not_logged)}",
                f"lease-lost lines by pid {dict(self.lease_lost_lines)}, ERROR lines by pid "
                f"{dict(self.error_lines)}, runs by pid {dict(self.runs_by_pid)}",
                f"workers gone before the end {self.not_running}, bad exits {self.bad_exits}",
            ]
        )

    def problems(self) -> list[str]:
        found = [
            *_some("lost (job: state)", self.lost.items()),
            *_some("stuck in processing", self.stuck),
            *_some("duplicates no fault explains", (d.describe() for d in self.unexplained)),
            *_some("runs of one job by one worker process", _runs(self.same_pid)),
            *_some("stale starts (after a later claim's run began)", _runs(self.stale_starts)),
            *_some("runs sharing one lease token", _runs(self.same_token)),
            *_some("succeeded without a recorded run", self.succeeded_without_run),
            *_some(
                "runs not counted as attempts (job: attempts, runs)",
                self.attempts_below_runs.items(),
            ),
            *_some("dead without an ERROR 'job <id> (<name>) is dead' line", self.dead_not_logged),
            *_some("workers that exited before the end", self.not_running),
            *_some("workers that did not stop with exit code 0", self.bad_exits.items()),
            *self.extra,
        ]
        if self.runs_without_token:
            found.append(f"{self.runs_without_token} runs had no lease token (current_job())")
        return found


def _some(title: str, items: Iterable[object]) -> list[str]:
    listed = list(items)
    if not listed:
        return []
    shown = "\n".join(f"  {item}" for item in listed[:DETAILS])
    more = f"\n  ... and {len(listed) - DETAILS} more" if len(listed) > DETAILS else ""
    return [f"{title}: {len(listed)}\n{shown}{more}"]


def _runs(by_job: Mapping[str, list[Run]]) -> list[str]:
    return [
        f"job {job}: " + "; ".join(run.describe() for run in runs) for job, runs in by_job.items()
    ]


async def all_jobs(manager: JobManager, page: int = 1000) -> dict[str, JobInfo]:
    """Every job in the store, by id."""
    found: dict[str, JobInfo] = {}
    offset = 0
    while True:
        infos = await manager.list(limit=page, offset=offset)
        found.update((info.id, info) for info in infos)
        if len(infos) < page:
            return found
        offset += page


async def check(manager: JobManager, fleet: Fleet, expected: Mapping[str, JobState]) -> Report:
    """The report of a settled scenario (the workers still running)."""
    infos = await all_jobs(manager)
    return build_report(
        expected,
        infos,
        read_runs(fleet.ledger),
        fleet.logs(),
        fleet.faults,
        [f"{w.label}:{w.pid} exit {w.process.poll()}" for w in fleet.not_running()],
    )


def build_report(
    expected: Mapping[str, JobState],
    infos: Mapping[str, JobInfo],
    runs: Mapping[str, list[Run]],
    logs: Mapping[int, str],
    faults: FaultLog,
    not_running: list[str],
) -> Report:
    lease_lost, dead_logged, lease_lines, error_lines = _read_logs(logs)
    report = Report(
        enqueued=len(expected),
        states=Counter(infos[j].state.value if j in infos else "missing" for j in expected),
        lease_lost_lines=lease_lines,
        error_lines=error_lines,
        not_running=not_running,
    )
    for job_id, state in expected.items():
        info = infos.get(job_id)
        _check_final_state(report, job_id, state, info, runs.get(job_id, []), dead_logged)
    for job_id, job_runs in runs.items():
        _check_runs(report, job_id, job_runs, lease_lost.get(job_id, set()), faults)
    return report


def _read_logs(
    logs: Mapping[int, str],
) -> tuple[dict[str, set[int]], dict[str, set[str]], Counter[int], Counter[int]]:
    lease_lost: dict[str, set[int]] = {}
    dead: dict[str, set[str]] = {}
    lease_lines: Counter[int] = Counter()
    error_lines: Counter[int] = Counter()
    for pid, text in logs.items():
        for line in text.splitlines():
            if found := LEASE_LOST.search(line):
                lease_lost.setdefault(found["job"], set()).add(pid)
                lease_lines[pid] += 1
            if found := DEAD.search(line):
                dead.setdefault(found["job"], set()).add(found["name"])
            if ERROR.match(line):
                error_lines[pid] += 1
    return lease_lost, dead, lease_lines, error_lines


def _check_final_state(
    report: Report,
    job_id: str,
    state: JobState,
    info: JobInfo | None,
    job_runs: list[Run],
    dead_logged: dict[str, set[str]],
) -> None:
    if info is None:
        report.lost[job_id] = "missing from the store"
        return
    if info.state is JobState.PROCESSING:
        report.stuck.append(f"{job_id} (attempts {info.attempts})")
    if info.state is not state:
        report.lost[job_id] = f"{info.state.value}, expected {state.value}"
    if info.state is JobState.SUCCEEDED and not any(run.ok for run in job_runs):
        report.succeeded_without_run.append(job_id)
    if info.state is JobState.DEAD and info.name not in dead_logged.get(job_id, set()):
        named = sorted(dead_logged.get(job_id, set()))
        report.dead_not_logged.append(f"{job_id} ({info.name}); lines name it {named}")
    if info.attempts < len(job_runs):
        report.attempts_below_runs[job_id] = (info.attempts, len(job_runs))


def _check_runs(
    report: Report, job_id: str, job_runs: list[Run], lease_lost_by: set[int], faults: FaultLog
) -> None:
    report.runs += len(job_runs)
    report.runs_by_pid.update(run.pid for run in job_runs)
    report.runs_without_token += sum(run.token is None for run in job_runs)
    if len(job_runs) < 2:
        return
    pids = Counter(run.pid for run in job_runs)
    if max(pids.values()) > 1:
        report.same_pid[job_id] = job_runs
    tokens = Counter(run.token for run in job_runs if run.token is not None)
    if tokens and max(tokens.values()) > 1:
        report.same_token[job_id] = job_runs
    if _stale(job_runs):
        report.stale_starts[job_id] = job_runs
    superseded = job_runs[:-1]
    unexplained = [run for run in superseded if not _explained(run, lease_lost_by, faults)]
    report.duplicates.append(Duplicate(job_id, job_runs, lease_lost_by, unexplained))


def _stale(job_runs: list[Run]) -> bool:
    """Did a run start after a run of a later claim (higher attempt) had started?"""
    return any(
        later.attempt > run.attempt and later.start < run.start
        for run in job_runs
        for later in job_runs
    )


def _explained(run: Run, lease_lost_by: set[int], faults: FaultLog) -> bool:
    killed_at = faults.killed.get(run.pid)
    if killed_at is not None and killed_at >= run.start:
        return True  # a crash mid-run: the job runs again elsewhere
    return run.pid in faults.faulted and run.pid in lease_lost_by


def assert_clean(report: Report, fleet: Fleet, scenario: str) -> None:
    """Fail with the figures, the problems, the faults and the logs' tails."""
    problems = report.problems()
    if not problems:
        return
    logs = fleet.logs()
    lines = [
        f"{scenario}: {len(problems)} kinds of problem",
        report.summary(),
        *problems,
        f"workers: {fleet.describe()}",
        "faults:",
        *(f"  {note}" for note in fleet.faults.notes),
        *_log_lines_about(report, logs),
        fleet.tails(),
    ]
    raise AssertionError("\n".join(lines))


def _log_lines_about(report: Report, logs: Mapping[int, str]) -> list[str]:
    """The log lines that mention the first jobs with a problem."""
    jobs = [d.job for d in report.unexplained[:3]]
    jobs += list(report.stale_starts)[:2] + list(report.same_pid)[:2] + list(report.lost)[:2]
    lines = []
    for job in dict.fromkeys(jobs):
        lines.append(f"log lines about {job}:")
        for pid, text in logs.items():
            lines += [f"  [{pid}] {line[:300]}" for line in text.splitlines() if job in line]
    return lines
