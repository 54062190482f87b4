"""What the benchmark is asked to measure and what it found (no job classes here)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["BenchResult", "BenchSettings", "StoreChoice", "store_config"]


class StoreChoice(StrEnum):
    """Stores the benchmark can run on."""

    MEMORY = "memory"


def store_config(store: StoreChoice) -> dict[str, Any]:
    """The ``store`` section of the container's configuration for ``store``."""
    return {"backend": store.value}


@dataclass(frozen=True, slots=True)
class BenchSettings:
    store: StoreChoice
    jobs: int
    concurrency: int
    batch_size: int
    latency_samples: int


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
