"""What the static ``BackgroundJobManager`` facade adds over the manager's own ``enqueue``.

Run from the repository root::

    .venv/bin/python -m tests.benchmarks.facade [--calls 2000] [--rounds 25]

On the in-memory store, in one process and one event loop, it times rounds of
``calls`` awaited calls of ``BackgroundJobManager.enqueue(args)`` and of
``manager.enqueue(args)`` (the very manager the facade resolves), the two
kinds of round interleaved so that a slower moment of the machine hits both.
It prints the median nanoseconds per call of each, and the median of the
differences between neighbouring rounds: the facade's cost. That difference
of two figures of about ten microseconds is noisy, so it also times both
against a manager whose ``enqueue`` does nothing (an override of
``job_manager``, as the testing modes install), where the difference is the
facade's own path alone. No worker runs.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from dependency_injector import providers
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJob, BackgroundJobManager, JobId, MasaApp, job_name

# Enough calls a round that the clock's resolution and the loop's overhead vanish.
DEFAULT_CALLS = 2000
# Enough rounds of each kind for a stable median on a shared machine.
DEFAULT_ROUNDS = 25
# Rounds run and thrown away first: caches, the store's first allocations.
WARM_UP_ROUNDS = 3


@job_name("bench.facade-noop")
class Noop(BaseModel):
    n: int


class NoopJob(BackgroundJob[Noop]):
    async def execute(self, args: Noop) -> None:
        return None


class _IdleManager:
    """A manager whose ``enqueue`` returns at once: only the call path is timed."""

    async def enqueue(self, args: BaseModel, delay: object = None) -> JobId:
        return JobId("idle")


Enqueue = Callable[[BaseModel], Awaitable[Any]]


async def _round(enqueue: Enqueue, calls: int) -> float:
    """Nanoseconds per call of ``calls`` awaited ``enqueue`` calls."""
    args = Noop(n=1)
    started = time.perf_counter_ns()
    for _ in range(calls):
        await enqueue(args)
    return (time.perf_counter_ns() - started) / calls


async def _compare(manager: Any, calls: int, rounds: int) -> tuple[float, float, float]:
    """Median ns per call of the facade, of ``manager.enqueue``, and of their
    difference within each pair of neighbouring rounds (robust to drift)."""
    facade: list[float] = []
    direct: list[float] = []
    for index in range(WARM_UP_ROUNDS + rounds):
        # Alternate which goes first, so neither always follows the other.
        pair = [(BackgroundJobManager.enqueue, facade), (manager.enqueue, direct)]
        if index % 2:
            pair.reverse()
        for enqueue, figures in pair:
            gc.collect()
            figure = await _round(enqueue, calls)
            if index >= WARM_UP_ROUNDS:
                figures.append(figure)
    added = statistics.median(f - d for f, d in zip(facade, direct, strict=True))
    return statistics.median(facade), statistics.median(direct), added


async def _measure(container: BackgroundJobContainer, calls: int, rounds: int) -> list[str]:
    store = container.job_store()
    await store.open()  # on this loop, and no worker: only the enqueue is timed
    try:
        real = await _compare(MasaApp.job_manager(), calls, rounds)
    finally:
        await store.aclose()
    with container.job_manager.override(providers.Object(_IdleManager())):
        idle = await _compare(MasaApp.job_manager(), calls, rounds)
    return [_row("memory store", *real), _row("manager doing nothing", *idle)]


def _row(label: str, facade: float, direct: float, added: float) -> str:
    return f"| {label} | {facade:,.0f} ns | {direct:,.0f} ns | {added:+,.0f} ns |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS)
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS)
    options = parser.parse_args()
    MasaApp.reset()
    container = BackgroundJobContainer()
    MasaApp.build(container)
    try:
        rows = anyio.run(_measure, container, options.calls, options.rounds)
    finally:
        MasaApp.reset()
    print(f"median of {options.rounds} rounds of {options.calls:,} calls each, per call")
    print("| manager | BackgroundJobManager.enqueue | manager.enqueue | facade adds |")
    print("|---|---|---|---|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
