"""The processes scenario: one shared store, 1, 2, 4, 8 worker processes.

The same batch of no-op jobs goes through each count of real ``masa-jobs
worker`` processes, each count on a fresh namespace; the speedup is each
rate against the first (fewest processes).
"""

from __future__ import annotations

from typing import Any

from ._bench_drain import fleet_run
from ._bench_settings import BenchSettings

__all__ = ["FLEET_POLL_INTERVAL", "measure_processes"]

# Worker processes of another process's SQLite store learn of new work (the
# resume that starts the clock) by polling: look often, so the start is sharp.
FLEET_POLL_INTERVAL = 0.1
# Digits kept of a rate ratio.
RATIO_DIGITS = 2


async def measure_processes(settings: BenchSettings, backend: str) -> dict[str, Any]:
    """Jobs per second for each process count, and each against the first."""
    options = settings.worker_options(poll_interval=FLEET_POLL_INTERVAL)
    curve: list[dict[str, Any]] = []
    first = 0.0
    for count in settings.processes:
        drained = await fleet_run(settings.store, settings.jobs, count, options, backend)
        first = first or drained.jobs_per_s
        curve.append(
            {
                "processes": count,
                "jobs_per_s": round(drained.jobs_per_s),
                "seconds": round(drained.seconds, 3),
                "speedup": round(drained.jobs_per_s / first, RATIO_DIGITS),
                "lost": drained.lost,
            }
        )
    return {
        "jobs": settings.jobs,
        "poll_interval_s": FLEET_POLL_INTERVAL,
        "curve": curve,
    }
