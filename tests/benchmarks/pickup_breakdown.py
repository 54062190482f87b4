"""Where a pickup's time goes, from the ``enqueue`` call to the handler, across two processes.

Run from the repository root::

    .venv/bin/python -m tests.benchmarks.pickup_breakdown [--store redis|postgres]
        [--samples 300] [--gap 0.01]

A real ``masa-jobs worker`` process serves ``tests.benchmarks._pickup_app``
on a fresh namespace of the store (``MASA_JOBS_STORE__DSN/URL``, as for
``masa-jobs bench``) at the default options; this process enqueues one job
at a time through ``BackgroundJobManager.enqueue`` and waits for the handler,
``--gap`` seconds apart, so that each job finds the worker idle, as the
pickup figures of ``masa-jobs bench`` and of the peers' comparison do. Both
processes note when each step happened (``time.time()``, one clock), and
the median and 90th percentile of each step are printed in microseconds:

- the facade's and the manager's Python, until the store's ``add`` is called;
- the store's ``add``, until its reply (its Python and the round trip);
- from the ``add``'s call until the worker's wait learns of the job (Redis:
  its BLPOP returns, with the claim behind it; PostgreSQL: the NOTIFY is
  heard);
- from then until the worker's claim is called, the claim, the hand-over to
  a consumer (until the executor runs it) and the executor until the handler.

A short gap shows the path hot; 10 ms, what a process woken from idle pays
(on some machines several times as much).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import anyio

from masa_jobs import BackgroundJobManager, MasaApp
from masa_jobs.cli._bench_build import built_app
from masa_jobs.cli._bench_fleet import worker_fleet
from masa_jobs.cli._bench_machine import describe_machine, machine_report
from masa_jobs.cli._bench_settings import StoreChoice
from masa_jobs.cli._bench_stats import percentile
from masa_jobs.cli._bench_stores import bench_store

from ._pickup_app import REPORT_PORT_VARIABLE, Pickup, stamped

APP = "tests.benchmarks._pickup_app:container"
# Enqueued and picked up before the figures: connections open, code warm.
WARM_UP_SAMPLES = 10
# A report later than this means the job was lost.
REPORT_TIMEOUT_SECONDS = 30.0
# Step name -> (from, to): keys of the moments noted in either process.
STEPS = {
    "enqueue's Python, to the store's add": ("enqueue", "add"),
    "the store's add, to its reply": ("add", "add_end"),
    "add called -> the worker hears of the job": ("add", "woken_end"),
    "heard -> the worker's claim called": ("woken_end", "claim"),
    "the claim": ("claim", "claim_end"),
    "claimed -> the executor runs it": ("claim_end", "run"),
    "the executor, to the handler": ("run", "handler"),
    "in all: enqueue called -> handler": ("enqueue", "handler"),
}


async def measure(store: str, samples: int, gap: float) -> list[dict[str, float]]:
    """The moments of each sample's steps, by key."""
    moments: dict[str, float] = {}
    async with (
        bench_store(StoreChoice(store)) as section,
        await anyio.create_udp_socket(local_host="127.0.0.1") as reports,
    ):
        os.environ[REPORT_PORT_VARIABLE] = str(reports.extra(anyio.abc.SocketAttribute.local_port))
        with worker_fleet(section, {}, "asyncio", APP) as fleet:
            fleet.start()
            try:
                await fleet.wait_ready()
                async with (
                    built_app(section, {"disable_background_job": True}) as container,
                    MasaApp.lifespan(),
                ):
                    store_class: Any = type(container.job_store())
                    store_class.add = stamped("add", store_class.add, moments)
                    results = [
                        await _sample(moments, reports, gap)
                        for _ in range(WARM_UP_SAMPLES + samples)
                    ]
            finally:
                await fleet.stop()
    return results[WARM_UP_SAMPLES:]


async def _sample(
    moments: dict[str, float], reports: anyio.abc.UDPSocket, gap: float
) -> dict[str, float]:
    moments.clear()
    moments["enqueue"] = time.time()
    await BackgroundJobManager.enqueue(Pickup())
    with anyio.fail_after(REPORT_TIMEOUT_SECONDS):
        report, _ = await reports.receive()
    for pair in report.decode().split():
        key, _, value = pair.partition("=")
        moments[key] = float(value)
    await anyio.sleep(gap)
    return dict(moments)


def summary(results: list[dict[str, float]]) -> list[tuple[str, float, float]]:
    """Each step's median and 90th percentile, in microseconds (nearest rank,
    as ``masa-jobs bench`` reports its pickups)."""
    rows = []
    for step, (start, end) in STEPS.items():
        spans = [
            (sample[end] - sample[start]) * 1e6
            for sample in results
            if start in sample and end in sample
        ]
        if spans:
            rows.append((step, percentile(spans, 50), percentile(spans, 90)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", choices=["redis", "postgres"], default="redis")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.01, help="seconds between two jobs")
    args = parser.parse_args()
    results = anyio.run(measure, args.store, args.samples, args.gap)
    print(
        f"{args.store}: {len(results)} pickups, {args.gap:g} s apart; "
        f"on {describe_machine(machine_report())}"
    )
    print(f"{'step':48s} {'p50 us':>9s} {'p90 us':>9s}")
    for step, p50, p90 in summary(results):
        print(f"{step:48s} {p50:9.0f} {p90:9.0f}")


if __name__ == "__main__":
    main()
