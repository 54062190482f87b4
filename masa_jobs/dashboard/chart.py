"""Jobs finished per minute over the last hour, as bars of an inline SVG.

The geometry is computed here and drawn by the template with SVG attributes
(no script, no inline style): one bar per minute that saw jobs finish, the
current minute at the right end.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["CHART_MINUTES", "Bar", "MinuteChart", "chart_start", "minute_chart"]

CHART_MINUTES = 60
# The SVG's coordinate system (its viewBox); CSS scales it to the page width.
CHART_WIDTH = 600
CHART_HEIGHT = 100
_SLOT = CHART_WIDTH / CHART_MINUTES
_GAP = 1.5
# A minute with one finished job among hundreds still shows as a sliver.
_MIN_BAR_HEIGHT = 1.5


@dataclass(frozen=True, slots=True)
class Bar:
    """One minute's bar, in the SVG's coordinates."""

    x: float
    y: float
    width: float
    height: float
    minute: datetime
    count: int


@dataclass(frozen=True, slots=True)
class MinuteChart:
    """The bars, the largest minute's count (the scale) and the hour's total."""

    bars: tuple[Bar, ...]
    peak: int
    total: int
    start: datetime
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT


def chart_start(now: datetime) -> datetime:
    """The first minute shown: the current minute is the last of ``CHART_MINUTES``."""
    return now.replace(second=0, microsecond=0) - timedelta(minutes=CHART_MINUTES - 1)


def minute_chart(points: Iterable[tuple[datetime, int]], now: datetime) -> MinuteChart:
    """The chart of ``finished_per_minute(chart_start(now))``."""
    start = chart_start(now)
    counts: dict[int, tuple[datetime, int]] = {}
    for minute, count in points:
        slot = int((minute - start).total_seconds() // 60)
        if 0 <= slot < CHART_MINUTES and count > 0:
            counts[slot] = (minute, counts.get(slot, (minute, 0))[1] + count)
    peak = max((count for _, count in counts.values()), default=0)
    bars = tuple(
        _bar(slot, minute, count, peak) for slot, (minute, count) in sorted(counts.items())
    )
    return MinuteChart(bars=bars, peak=peak, total=sum(b.count for b in bars), start=start)


def _bar(slot: int, minute: datetime, count: int, peak: int) -> Bar:
    height = max(CHART_HEIGHT * count / peak, _MIN_BAR_HEIGHT)
    return Bar(
        x=round(slot * _SLOT + _GAP / 2, 2),
        y=round(CHART_HEIGHT - height, 2),
        width=round(_SLOT - _GAP, 2),
        height=round(height, 2),
        minute=minute,
        count=count,
    )
