"""What the benchmark is asked to measure and what it found (no job classes here)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum

from masa_jobs.stores import BACKENDS

__all__ = [
    "DEFAULT_STORE",
    "NO_TARGETS",
    "TARGETS",
    "BenchResult",
    "BenchSettings",
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

# By backend name; a backend without an entry is measured against no target.
TARGETS: dict[str, Targets] = {
    "memory": Targets(20_000, 1.0),
    "sqlite": Targets(5_000, None),
    "postgres": Targets(15_000, 3.0, 2_500, 50_000),
    "redis": Targets(8_000, 1.5, 6_000, 30_000),
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


@dataclass
class BenchResult:
    settings: BenchSettings
    backend: str
    enqueue_single_per_s: float = 0.0
    enqueue_bulk_per_s: float = 0.0
    end_to_end_per_s: float = 0.0
    end_to_end_seconds: float = 0.0
    pickup_ms: list[float] = field(default_factory=list)
    peak_rss_bytes: int | None = None

    def pickup_percentile(self, percent: float) -> float:
        """Nearest-rank percentile of the pickup latencies, in milliseconds."""
        ordered = sorted(self.pickup_ms)
        rank = max(math.ceil(percent / 100 * len(ordered)), 1)
        return ordered[rank - 1]
