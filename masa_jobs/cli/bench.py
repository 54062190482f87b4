"""``masa-jobs bench``: how fast jobs go in, through and out, on one process."""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ._bench_settings import (
    DEFAULT_STORE,
    NO_TARGETS,
    TARGETS,
    BenchResult,
    BenchSettings,
    StoreChoice,
)
from ._common import Backend, BackendOption, CliError, fail, run_async, stdout_console

__all__ = ["bench"]

DEFAULT_JOBS = 20_000
DEFAULT_LATENCY_SAMPLES = 200
MIB = 1024 * 1024


def bench(
    jobs: Annotated[
        int, typer.Option("--jobs", "-n", min=1, help="No-op jobs per throughput phase.")
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
            min=0, help="Jobs claimed ahead of free slots (options.prefetch; default: concurrency)."
        ),
    ] = None,
    latency_samples: Annotated[
        int, typer.Option(min=1, help="Single jobs timed from enqueue to pickup.")
    ] = DEFAULT_LATENCY_SAMPLES,
    store: Annotated[StoreChoice, typer.Option(help="Store to measure.")] = DEFAULT_STORE,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
    backend: BackendOption = Backend.ASYNCIO,
) -> None:
    """Measure enqueue rate, end-to-end throughput and pickup latency of no-op jobs.

    Every phase uses a fresh namespace of the chosen store (a temporary SQLite
    file, a PostgreSQL schema, a Redis key prefix), removed afterwards; the
    server addresses come from MASA_JOBS_STORE__DSN / MASA_JOBS_STORE__URL
    when set, else the local defaults.

    Phases, each on a freshly built app: enqueue N jobs one at a time through
    BackgroundJobManager.enqueue, then N in bulk through job_manager.enqueue_many;
    run N queued jobs from worker start until every handler ran; enqueue single
    jobs on an idle worker and time each until its handler runs (the worker
    polls only every 5 s, so this measures the wake-up). Also reports the
    process's peak RSS. Timings vary with the machine: compare runs on one.
    """
    # Imported only now: it defines the no-op handler, which must not be
    # registered in an application that merely imports masa_jobs.
    from ._bench_run import run_bench
    from ._bench_stores import ASYNCIO_ONLY_STORES

    if store in ASYNCIO_ONLY_STORES and backend is not Backend.ASYNCIO:
        fail(f"the {store.value} store's driver runs on asyncio only: drop --backend trio")
    settings = BenchSettings(store, jobs, concurrency, batch_size, latency_samples, prefetch)
    try:
        result = run_async(partial(run_bench, settings, backend.value), backend)
    except CliError as exc:
        fail(str(exc))
    report = _report(result)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_table(stdout_console(), report)


def _report(result: BenchResult) -> dict[str, Any]:
    settings = result.settings
    targets = TARGETS.get(settings.store.value, NO_TARGETS)
    peak = result.peak_rss_bytes
    return {
        "store": settings.store.value,
        "backend": result.backend,
        "jobs": settings.jobs,
        "concurrency": settings.concurrency,
        "batch_size": settings.batch_size,
        "prefetch": settings.prefetch,
        "enqueue_single_jobs_per_s": round(result.enqueue_single_per_s),
        "enqueue_bulk_jobs_per_s": round(result.enqueue_bulk_per_s),
        "end_to_end_jobs_per_s": round(result.end_to_end_per_s),
        "end_to_end_seconds": round(result.end_to_end_seconds, 4),
        "pickup_latency_ms": {
            "samples": len(result.pickup_ms),
            "p50": round(result.pickup_percentile(50), 4),
            "p99": round(result.pickup_percentile(99), 4),
        },
        "peak_rss_mib": None if peak is None else round(peak / MIB, 1),
        "targets": {
            "end_to_end_jobs_per_s": targets.end_to_end_per_s,
            "pickup_p50_ms": targets.pickup_p50_ms,
            "enqueue_single_jobs_per_s": targets.enqueue_single_per_s,
            "enqueue_bulk_jobs_per_s": targets.enqueue_bulk_per_s,
        },
    }


def _print_table(console: Console, report: dict[str, Any]) -> None:
    pickup = report["pickup_latency_ms"]
    targets = report["targets"]
    table = Table(
        title=(
            f"masa-jobs bench: {report['store']} store, {report['backend']}, "
            f"{report['jobs']:,} jobs, concurrency {report['concurrency']}, "
            f"batch {report['batch_size']}"
        ),
        title_justify="left",
    )
    table.add_column("measure")
    table.add_column("result", justify="right")
    table.add_column("target")
    for label, key in (
        ("enqueue, one at a time", "enqueue_single_jobs_per_s"),
        ("enqueue, bulk (enqueue_many)", "enqueue_bulk_jobs_per_s"),
        ("end to end", "end_to_end_jobs_per_s"),
    ):
        table.add_row(label, f"{report[key]:,} jobs/s", _at_least(report[key], targets[key]))
    p50, p50_target = pickup["p50"], targets["pickup_p50_ms"]
    table.add_row(
        f"pickup latency p50 ({pickup['samples']} samples)",
        f"{p50:.3f} ms",
        "" if p50_target is None else _target(p50 <= p50_target, f"<= {p50_target:g} ms"),
    )
    table.add_row("pickup latency p99", f"{pickup['p99']:.3f} ms", "")
    peak = report["peak_rss_mib"]
    table.add_row("peak RSS", "n/a" if peak is None else f"{peak:,.1f} MiB", "")
    console.print(table)


def _at_least(value: float, target: float | None) -> str:
    if target is None:
        return ""
    return _target(value >= target, f">= {target:,.0f} jobs/s")


def _target(met: bool, text: str) -> str:
    return f"{text} (met)" if met else f"{text} (missed)"
