"""The RSS scenario: what one idle ``masa-jobs worker`` process weighs.

One process per store, on a fresh namespace, with no job to run: its
resident set size is read from /proc once it has logged its start (its store
is open, its worker and heartbeat run) and has idled a moment. The in-memory
store always, SQLite always, and the store under measurement.

Beside them, the floor that the libraries masa-jobs is built on set: a
process that imports only pydantic, dependency-injector and anyio, builds a
model and a container, and runs an asyncio loop (which imports ``ssl``), as
every worker does. A worker's size above that floor is what masa-jobs adds,
with the command line (typer) and, for recurring jobs, croniter.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio

from ._bench_fleet import BENCH_APP, MEMORY_BENCH_APP, vm_rss_bytes, worker_fleet
from ._bench_settings import BenchSettings, StoreChoice
from ._bench_stats import mib
from ._bench_stores import bench_store

__all__ = ["measure_rss"]

ALWAYS_MEASURED = (StoreChoice("memory"), StoreChoice("sqlite"))
# Lets the first poll, heartbeat and scheduler pass run (and import what they
# need) before the size is read.
IDLE_SECONDS = 2.0
# The libraries masa-jobs is built on at work, and nothing of masa-jobs: the
# size every worker process starts from. It prints its own VmRSS in KiB.
DEPENDENCY_FLOOR_SCRIPT = """
import anyio, pydantic
from dependency_injector import containers, providers, wiring

class Args(pydantic.BaseModel):
    to: str

class Container(containers.DeclarativeContainer):
    args = providers.Singleton(Args, to="x")

Container().args()
anyio.run(anyio.sleep, 0.05)
status = open("/proc/self/status").read().splitlines()
print(next(line.split()[1] for line in status if line.startswith("VmRSS:")))
"""


async def measure_rss(settings: BenchSettings, backend: str) -> dict[str, Any]:
    """MiB by store name; None where the platform does not tell (not Linux)."""
    stores = dict.fromkeys((*ALWAYS_MEASURED, settings.store))
    if not sys.platform.startswith("linux"):
        return {"idle_worker_mib": {store.value: None for store in stores}}
    sizes = {store.value: await _idle_rss(store, backend) for store in stores}
    return {
        "idle_worker_mib": sizes,
        "idle_seconds": IDLE_SECONDS,
        "dependency_floor_mib": await _dependency_floor(),
    }


async def _dependency_floor() -> float | None:
    """MiB of a process running only pydantic, dependency-injector and anyio."""
    # -P: no module of the current directory can stand in for one of the libraries.
    done = await anyio.run_process(
        [sys.executable, "-P", "-c", DEPENDENCY_FLOOR_SCRIPT], check=False
    )
    if done.returncode != 0:
        return None
    return mib(int(done.stdout.decode().strip()) * 1024)


async def _idle_rss(store: StoreChoice, backend: str) -> float | None:
    app = MEMORY_BENCH_APP if store.value == "memory" else BENCH_APP
    async with bench_store(store) as section:
        # The options' defaults: the worker as an application would run it.
        with worker_fleet(section, {}, backend, app) as fleet:
            (worker,) = fleet.start()
            try:
                await fleet.wait_ready()
                await anyio.sleep(IDLE_SECONDS)
                size = vm_rss_bytes(worker.pid)
            finally:
                await fleet.stop()
    return mib(size)
