"""How the dashboard writes times, durations, errors and JSON (as plain text:
the templates escape it)."""

from __future__ import annotations

import json
from datetime import datetime

__all__ = [
    "NOT_SET",
    "ago",
    "between",
    "compact_json",
    "duration",
    "error_summary",
    "pretty_json",
    "when",
]

NOT_SET = "—"
# A one-line error summary in a table cell or a <summary> stays this short.
SUMMARY_CHARS = 160
_MINUTE, _HOUR, _DAY = 60, 3600, 86_400


def when(moment: datetime | None) -> str:
    """``2024-05-01 12:30:05`` (UTC), or a dash."""
    if moment is None:
        return NOT_SET
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float) -> str:
    """A length of time in its two largest units: ``45 s``, ``3 min 5 s``, ``2 d 4 h``."""
    total = round(abs(seconds))
    if total < _MINUTE:
        return f"{total} s"
    if total < _HOUR:
        minutes, rest = divmod(total, _MINUTE)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    if total < _DAY:
        hours, rest = divmod(total, _HOUR)
        minutes = rest // _MINUTE
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, rest = divmod(total, _DAY)
    hours = rest // _HOUR
    return f"{days} d {hours} h" if hours else f"{days} d"


def ago(moment: datetime | None, now: datetime) -> str:
    """``3 min ago`` or ``in 2 h``, from ``now``; empty for None."""
    if moment is None:
        return ""
    seconds = (now - moment).total_seconds()
    if abs(seconds) < 1:
        return "now"
    # Seconds matter for the last minute only: "7 min ago", not "7 min 57 s ago".
    text = (
        duration(seconds)
        if abs(seconds) < _MINUTE or abs(seconds) >= _HOUR
        else (f"{int(abs(seconds) // _MINUTE)} min")
    )
    return f"{text} ago" if seconds > 0 else f"in {text}"


def between(start: datetime | None, end: datetime | None) -> str:
    """How long from ``start`` to ``end``, or a dash when either is unknown."""
    if start is None or end is None:
        return NOT_SET
    seconds = (end - start).total_seconds()
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else duration(seconds)


def error_summary(error: str | None) -> str:
    """One line of an error: a traceback's first and last lines, shortened."""
    if not error:
        return ""
    lines = [line.strip() for line in error.splitlines() if line.strip()]
    if not lines:
        return ""
    text = lines[0] if len(lines) == 1 else f"{lines[0]} … {lines[-1]}"
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


def compact_json(value: object) -> str:
    """JSON on one line, non-ASCII kept as it is."""
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "), default=str)


def pretty_json(value: object) -> str:
    """JSON indented for reading, non-ASCII kept as it is."""
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)
