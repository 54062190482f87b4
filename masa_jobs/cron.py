"""Cron expressions in a time zone: when a recurring job fires next.

Parsing and matching come from croniter; this module adds the time zone and
a defined behaviour on daylight-saving transitions:

* Five fields (minute hour day month weekday) or six, with *seconds first*
  (``*/10 * * * * *``), as in Quartz and Hangfire.
* Times are matched on the local wall clock of ``timezone`` (IANA name).
* Spring forward: a wall-clock time that does not exist that day (02:30 when
  clocks jump from 02:00 to 03:00) fires once, moved forward by the length of
  the gap (03:30).
* Fall back: a wall-clock time that happens twice (01:30) fires once, at its
  first occurrence. So a job every few minutes pauses during the repeated
  hour instead of running twice as often.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .exceptions import InvalidScheduleError

__all__ = ["CronSchedule"]

# Candidates examined per call before giving up; only a transition-heavy
# expression could need more than a couple.
_MAX_CANDIDATES = 1000
_FIELD_COUNTS = (5, 6)
# How far back a spring-forward gap is looked for.
_DAY = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class CronSchedule:
    """A validated cron expression and time zone."""

    expression: str
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        _check_expression(self.expression)
        _zone(self.timezone)
        # A valid expression can still never match (31 February).
        self.next_after(datetime.now(UTC))

    @property
    def _has_seconds(self) -> bool:
        return len(self.expression.split()) == 6

    def next_after(self, after: datetime) -> datetime:
        """The first fire time strictly after ``after``, as an aware UTC datetime."""
        # croniter (and dateutil under it, about 1.5 MiB) is imported on the first
        # cron expression: a process without recurring jobs never carries it.
        from croniter import CroniterBadDateError, croniter

        zone = _zone(self.timezone)
        start = _search_start(after.astimezone(UTC), zone)
        try:
            candidates = croniter(self.expression, start, second_at_beginning=self._has_seconds)
            for _ in range(_MAX_CANDIDATES):
                fire_at = _to_utc(candidates.get_next(datetime), zone)
                if fire_at > after:
                    return fire_at
        except CroniterBadDateError:
            pass
        raise InvalidScheduleError(
            f"cron expression {self.expression!r} never fires: check its day and month fields"
        )


def _to_utc(wall_clock: datetime, zone: ZoneInfo) -> datetime:
    # fold=0 picks the first of two repeated times, and moves a time that the
    # spring-forward gap skipped forward by the gap's length.
    return wall_clock.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _search_start(after: datetime, zone: ZoneInfo) -> datetime:
    """The wall-clock time from which to list the candidates for ``next_after(after)``.

    The wall clock of ``after``, except where wall-clock order and time order
    differ: in the second pass of a repeated hour, whose wall-clock times all
    fired in the first pass, the search starts at the end of that hour; and
    just after a spring-forward, while times in the gap (which fire late, by
    the gap's length) may still lie ahead, it starts inside the gap.
    """
    local = after.astimezone(zone)
    wall = local.replace(tzinfo=None)
    if local.fold:
        return _last_repeated(wall, zone)
    offset_before = (after - _DAY).astimezone(zone).utcoffset()
    if offset_before is not None:
        in_gap = (after + offset_before).replace(tzinfo=None)
        if in_gap < wall and _skipped(in_gap, zone):
            return in_gap
    return wall


def _folds(wall_clock: datetime, zone: ZoneInfo) -> tuple[datetime, datetime]:
    return (
        wall_clock.replace(tzinfo=zone, fold=0).astimezone(UTC),
        wall_clock.replace(tzinfo=zone, fold=1).astimezone(UTC),
    )


def _skipped(wall_clock: datetime, zone: ZoneInfo) -> bool:
    """Whether a spring-forward gap skips this wall-clock time."""
    first, second = _folds(wall_clock, zone)
    return first > second


def _repeated(wall_clock: datetime, zone: ZoneInfo) -> bool:
    """Whether a fall-back repeats this wall-clock time."""
    first, second = _folds(wall_clock, zone)
    return first < second


def _last_repeated(wall_clock: datetime, zone: ZoneInfo) -> datetime:
    """The last repeated wall-clock second from ``wall_clock`` (a repeated one) on."""
    first, second = _folds(wall_clock, zone)
    low, high = 0, int((second - first).total_seconds())  # repeated .. not repeated
    while high - low > 1:
        middle = (low + high) // 2
        if _repeated(wall_clock + timedelta(seconds=middle), zone):
            low = middle
        else:
            high = middle
    return wall_clock + timedelta(seconds=low)


def _check_expression(expression: object) -> None:
    if not isinstance(expression, str) or not expression.strip():
        raise InvalidScheduleError(
            "a cron expression is required, e.g. '0 2 * * *' (02:00 every day)"
        )
    from croniter import croniter  # on first use, as in next_after

    fields = expression.split()
    is_alias = len(fields) == 1 and expression.startswith("@")
    valid = (is_alias or len(fields) in _FIELD_COUNTS) and croniter.is_valid(
        expression, second_at_beginning=len(fields) == 6
    )
    if not valid:
        raise InvalidScheduleError(
            f"invalid cron expression {expression!r}: use five fields "
            "(minute hour day month weekday, e.g. '0 2 * * *') or six with seconds first "
            "(e.g. '*/10 * * * * *')"
        )


def _zone(name: object) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise InvalidScheduleError("a time zone is required: an IANA name such as 'UTC'")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidScheduleError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC' or 'Europe/Berlin'"
        ) from exc
