"""``masa-jobs bench``: how fast jobs go in, through and out, on one process."""

from __future__ import annotations

import json
from functools import partial
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from ._bench_settings import BenchResult, BenchSettings, StoreChoice
from ._common import Backend, BackendOption, CliError, fail, run_async, stdout_console

__all__ = ["bench"]

# The targets the in-memory store is held to.
TARGET_END_TO_END_PER_S = 20_000.0
TARGET_PICKUP_P50_MS = 1.0
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
    latency_samples: Annotated[
        int, typer.Option(min=1, help="Single jobs timed from enqueue to pickup.")
    ] = DEFAULT_LATENCY_SAMPLES,
    store: Annotated[StoreChoice, typer.Option(help="Store to measure.")] = StoreChoice.MEMORY,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object instead of a table.")
    ] = False,
    backend: BackendOption = Backend.ASYNCIO,
) -> None:
    """Measure enqueue rate, end-to-end throughput and pickup latency of no-op jobs.

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

    settings = BenchSettings(store, jobs, concurrency, batch_size, latency_samples)
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
    peak = result.peak_rss_bytes
    return {
        "store": settings.store.value,
        "backend": result.backend,
        "jobs": settings.jobs,
        "concurrency": settings.concurrency,
        "batch_size": settings.batch_size,
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
            "end_to_end_jobs_per_s": TARGET_END_TO_END_PER_S,
            "pickup_p50_ms": TARGET_PICKUP_P50_MS,
        },
    }


def _print_table(console: Console, report: dict[str, Any]) -> None:
    pickup = report["pickup_latency_ms"]
    e2e = report["end_to_end_jobs_per_s"]
    p50 = pickup["p50"]
    table = Table(
        title=(
            f"masa-jobs bench: {report['store']} store, {report['backend']}, "
            f"{report['jobs']:,} jobs, concurrency {report['concurrency']}"
        ),
        title_justify="left",
    )
    table.add_column("measure")
    table.add_column("result", justify="right")
    table.add_column("target")
    table.add_row("enqueue, one at a time", f"{report['enqueue_single_jobs_per_s']:,} jobs/s", "")
    table.add_row(
        "enqueue, bulk (enqueue_many)", f"{report['enqueue_bulk_jobs_per_s']:,} jobs/s", ""
    )
    table.add_row(
        "end to end",
        f"{e2e:,} jobs/s",
        _target(e2e >= TARGET_END_TO_END_PER_S, f">= {TARGET_END_TO_END_PER_S:,.0f} jobs/s"),
    )
    table.add_row(
        f"pickup latency p50 ({pickup['samples']} samples)",
        f"{p50:.3f} ms",
        _target(p50 <= TARGET_PICKUP_P50_MS, f"<= {TARGET_PICKUP_P50_MS:g} ms"),
    )
    table.add_row("pickup latency p99", f"{pickup['p99']:.3f} ms", "")
    peak = report["peak_rss_mib"]
    table.add_row("peak RSS", "n/a" if peak is None else f"{peak:,.1f} MiB", "")
    console.print(table)


def _target(met: bool, text: str) -> str:
    return f"{text} (met)" if met else f"{text} (missed)"
