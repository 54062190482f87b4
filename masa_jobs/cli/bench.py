"""``masa-jobs bench``: how fast jobs go in, through and out, on one process."""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated

import typer

from ._bench_settings import (
    DEFAULT_STORE,
    SHARED_STORES,
    BenchSettings,
    Scenario,
    StoreChoice,
)
from ._common import Backend, BackendOption, CliError, fail, run_async, stdout_console

__all__ = ["bench"]

DEFAULT_JOBS = 20_000
DEFAULT_LATENCY_SAMPLES = 200
DEFAULT_PROCESSES = "1,2,4,8"
DEFAULT_DEEP_JOBS = 1_000_000
DEFAULT_KILL_EVERY = 5.0
# Scenarios whose worker processes share the store: not the in-memory one.
MULTI_PROCESS = frozenset({Scenario.PROCESSES, Scenario.FAULTS})
ALL = "all"


def bench(
    jobs: Annotated[
        int,
        typer.Option(
            "--jobs",
            "-n",
            min=1,
            help="No-op jobs per throughput phase, per processes run, and run by the deep worker.",
        ),
    ] = DEFAULT_JOBS,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Jobs the worker runs at once (options.concurrency).")
    ] = 10,
    batch_size: Annotated[
        int, typer.Option(min=1, help="Jobs claimed per store call (options.batch_size).")
    ] = 30,
    prefetch: Annotated[
        int | None,
        typer.Option(
            min=0, help="Jobs claimed ahead of free slots (options.prefetch; default: automatic)."
        ),
    ] = None,
    latency_samples: Annotated[
        int, typer.Option(min=1, help="Single jobs timed from enqueue to pickup.")
    ] = DEFAULT_LATENCY_SAMPLES,
    store: Annotated[StoreChoice, typer.Option(help="Store to measure.")] = DEFAULT_STORE,
    scenarios: Annotated[
        str,
        typer.Option(
            help="What to measure, comma-separated: phases (one process), processes, "
            "faults, deep, rss, or all."
        ),
    ] = Scenario.PHASES.value,
    processes: Annotated[
        str, typer.Option(help="Worker process counts of the processes scenario.")
    ] = DEFAULT_PROCESSES,
    deep_jobs: Annotated[
        int, typer.Option(min=1, help="Due jobs waiting while the deep scenario measures.")
    ] = DEFAULT_DEEP_JOBS,
    fault_jobs: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Jobs of each faults run (default: enough for 20 s at the fault-free rate).",
            show_default=False,
        ),
    ] = None,
    kill_every: Annotated[
        float, typer.Option(min=0.1, help="Seconds between two SIGKILLs of the faults scenario.")
    ] = DEFAULT_KILL_EVERY,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
    backend: BackendOption = Backend.ASYNCIO,
) -> None:
    """Measure enqueue rate, throughput, pickup latency and memory of no-op jobs.

    Every run uses a fresh namespace of the chosen store (a temporary SQLite
    file, a PostgreSQL schema, a Redis key prefix), removed afterwards; the
    server addresses come from MASA_JOBS_STORE__DSN / MASA_JOBS_STORE__URL
    when set, else the local defaults.

    phases (the default), each on a freshly built app: enqueue N jobs one at
    a time through BackgroundJobManager.enqueue, then N in bulk through
    job_manager.enqueue_many; run N queued jobs from worker start until every
    handler ran; enqueue single jobs on an idle worker and time each until its
    handler runs (the worker polls only every 5 s, so this measures the
    wake-up); the process's peak RSS.

    processes: N jobs through 1, 2, 4, 8 `masa-jobs worker` processes on one
    store. faults: 4 processes, one SIGKILLed every --kill-every seconds, with
    lease_timeout 2 s; the rate against no kills, and jobs lost. deep: claim
    rate and pickup with --deep-jobs due jobs waiting, against an empty store.
    rss: one idle worker process's resident memory (memory, SQLite and the
    chosen store). Timings vary with the machine: compare runs on one.
    """
    # Imported only now: it defines the no-op handler, which must not be
    # registered in an application that merely imports masa_jobs.
    from ._bench_report import print_table
    from ._bench_scenarios import run_scenarios
    from ._bench_stores import ASYNCIO_ONLY_STORES

    if store in ASYNCIO_ONLY_STORES and backend is not Backend.ASYNCIO:
        fail(f"the {store.value} store's driver runs on asyncio only: drop --backend trio")
    try:
        chosen = _scenarios(scenarios, store)
        settings = BenchSettings(
            store,
            jobs,
            concurrency,
            batch_size,
            latency_samples,
            prefetch,
            scenarios=chosen,
            processes=_counts(processes),
            deep_jobs=deep_jobs,
            fault_jobs=fault_jobs,
            kill_every=kill_every,
        )
        report = run_async(partial(run_scenarios, settings, backend.value), backend)
    except CliError as exc:
        fail(str(exc))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_table(stdout_console(), report)


def _scenarios(text: str, store: StoreChoice) -> frozenset[Scenario]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if names == [ALL]:
        return frozenset(Scenario)
    known = {scenario.value for scenario in Scenario}
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise CliError(
            f"--scenarios {text!r}: choose among {', '.join(known)} (comma-separated), or {ALL}"
        )
    chosen = frozenset(Scenario(name) for name in names)
    shared = sorted(scenario.value for scenario in chosen & MULTI_PROCESS)
    if shared and store not in SHARED_STORES:
        stores = ", ".join(sorted(choice.value for choice in SHARED_STORES))
        raise CliError(
            f"the {' and '.join(shared)} scenario runs worker processes on one store, and "
            f"the {store.value} store lives inside one process: use --store {stores}"
        )
    return chosen


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise CliError(f"--processes {text!r}: give process counts like 1,2,4,8")
    return counts
