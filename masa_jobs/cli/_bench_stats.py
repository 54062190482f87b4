"""Percentiles of latency samples and sizes in MiB, as ``masa-jobs bench`` reports them."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["latency_summary", "mib", "percentile"]

# The ranks every latency is reported at, with its maximum.
REPORTED_PERCENTILES = (50, 90, 99)
# Decimal places of a millisecond kept in the report: a microsecond and a bit.
MS_DIGITS = 4
MIB = 1024 * 1024


def mib(size: int | None) -> float | None:
    """A size in bytes as MiB with one decimal; None when unknown."""
    return None if size is None else round(size / MIB, 1)


def percentile(samples: Sequence[float], percent: float) -> float:
    """Nearest-rank percentile: a value that was measured, never an interpolation."""
    ordered = sorted(samples)
    rank = max(math.ceil(percent / 100 * len(ordered)), 1)
    return ordered[rank - 1]


def latency_summary(samples_ms: Sequence[float]) -> dict[str, float | int]:
    """``samples``, ``p50``, ``p90``, ``p99`` and ``max``, in milliseconds."""
    summary: dict[str, float | int] = {"samples": len(samples_ms)}
    for percent in REPORTED_PERCENTILES:
        summary[f"p{percent}"] = round(percentile(samples_ms, percent), MS_DIGITS)
    summary["max"] = round(max(samples_ms), MS_DIGITS)
    return summary
