"""What the benchmark is asked to measure and what it found (no job classes here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from masa_jobs.stores import BACKENDS

__all__ = [
    "DEFAULT_STORE",
    "NO_TARGETS",
    "SHARED_STORES",
    "TARGETS",
    "BenchResult",
    "BenchSettings",
    "Scenario",
    "StoreChoice",
    "Targets",
]


# Stores the benchmark can run on: every registered backend (an enum, for the CLI's choices).
StoreChoice = StrEnum("StoreChoice", {name.upper(): name for name in BACKENDS})  # type: ignore[misc]


@dataclass(frozen=True, slots=True)
class Targets:
    """What each store is held to, with true no-op jobs on one worker process."""

    end_to_end_per_s: float
    pickup_p50_ms: float | None
    enqueue_single_per_s: float | None = None
    enqueue_bulk_per_s: float | None = None


DEFAULT_STORE = StoreChoice("memory")
# Stores that worker processes can share: every one but the in-memory store.
SHARED_STORES = frozenset(choice for choice in StoreChoice if choice.value != "memory")


class Scenario(StrEnum):
    """What ``masa-jobs bench --scenarios`` can run; ``phases`` is the default run."""

    PHASES = "phases"
    PROCESSES = "processes"
    FAULTS = "faults"
    DEEP = "deep"
    RSS = "rss"


# By backend name; a backend without an entry is measured against no target.
# Pickup: memory within 0.2 ms, PostgreSQL within 2 ms, Redis within 1 ms
# (the fastest Redis-based peer measured: huey).
TARGETS: dict[str, Targets] = {
    "memory": Targets(20_000, 0.2),
    "sqlite": Targets(5_000, None),
    "postgres": Targets(15_000, 2.0, 2_500, 50_000),
    "redis": Targets(8_000, 1.0, 6_000, 30_000),
}
NO_TARGETS = Targets(0, None)


@dataclass(frozen=True, slots=True)
class BenchSettings:
    store: StoreChoice
    jobs: int
    concurrency: int
    batch_size: int
    latency_samples: int
    prefetch: int | None = None
    scenarios: frozenset[Scenario] = frozenset({Scenario.PHASES})
    # Worker process counts of the processes scenario, in the order measured.
    processes: tuple[int, ...] = (1, 2, 4, 8)
    # Due jobs in the store before the deep scenario measures.
    deep_jobs: int = 1_000_000
    # Jobs of each faults run; None: enough for the faulted run to last FAULT_MIN_SECONDS.
    fault_jobs: int | None = None
    # Seconds between two SIGKILLs of the faults scenario.
    kill_every: float = 5.0

    def worker_options(self, **extra: Any) -> dict[str, Any]:
        """The options section of every worker the benchmark runs."""
        options = {
            "concurrency": self.concurrency,
            "batch_size": self.batch_size,
            "prefetch": self.prefetch,
        }
        return options | extra


@dataclass
class BenchResult:
    settings: BenchSettings
    backend: str
    enqueue_single_per_s: float = 0.0
    # Single-row commits per second of one driver connection (None: no server commit).
    commit_ceiling_per_s: float | None = None
    enqueue_bulk_per_s: float = 0.0
    end_to_end_per_s: float = 0.0
    end_to_end_seconds: float = 0.0
    pickup_ms: list[float] = field(default_factory=list)
    peak_rss_bytes: int | None = None
