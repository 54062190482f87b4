"""CronSchedule: when a recurring job fires next, in a time zone, across DST changes.

Every expected time is written as UTC together with the wall clock it stands
for. In 2024 New York springs forward on 10 March (02:00 EST -> 03:00 EDT, at
07:00 UTC) and falls back on 3 November (02:00 EDT -> 01:00 EST, at 06:00 UTC);
Berlin springs forward on 31 March (02:00 CET -> 03:00 CEST, at 01:00 UTC) and
falls back on 27 October (03:00 CEST -> 02:00 CET, at 01:00 UTC); Sydney falls
back on 7 April (03:00 AEDT -> 02:00 AEST, at 16:00 UTC the day before) and
springs forward on 6 October (02:00 AEST -> 03:00 AEDT, at 16:00 UTC the day
before).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from masa_jobs import MasaJobsError
from masa_jobs.cron import CronSchedule
from masa_jobs.exceptions import InvalidScheduleError

MICROSECOND = timedelta(microseconds=1)


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)  # type: ignore[misc]


def fire_times(schedule: CronSchedule, after: datetime, count: int) -> list[datetime]:
    """The next ``count`` fire times after ``after``, each computed from the previous one."""
    times = []
    for _ in range(count):
        after = schedule.next_after(after)
        times.append(after)
    return times


# (expression, time zone, after, the fire times that follow)
CASES: list[tuple[str, str, datetime, list[datetime]]] = [
    # -- five fields: minute hour day month weekday ------------------------------------
    ("0 2 * * *", "UTC", utc(2024, 5, 1, 1, 59, 59), [utc(2024, 5, 1, 2), utc(2024, 5, 2, 2)]),
    (
        "*/15 * * * *",
        "UTC",
        utc(2024, 5, 1, 12, 7),
        [utc(2024, 5, 1, 12, 15), utc(2024, 5, 1, 12, 30), utc(2024, 5, 1, 12, 45)],
    ),
    # Friday 10:00 -> Monday 09:00, then Tuesday.
    ("0 9 * * 1-5", "UTC", utc(2024, 5, 3, 10), [utc(2024, 5, 6, 9), utc(2024, 5, 7, 9)]),
    ("0 0 1 * *", "UTC", utc(2024, 1, 31, 12), [utc(2024, 2, 1), utc(2024, 3, 1)]),
    # 29 February: only in leap years.
    ("0 0 29 2 *", "UTC", utc(2024, 3, 1), [utc(2028, 2, 29), utc(2032, 2, 29)]),
    # -- six fields: seconds first ----------------------------------------------------
    (
        "*/10 * * * * *",
        "UTC",
        utc(2024, 5, 1, 12, 0, 5),
        [utc(2024, 5, 1, 12, 0, 10), utc(2024, 5, 1, 12, 0, 20), utc(2024, 5, 1, 12, 0, 30)],
    ),
    (
        "15 * * * * *",
        "UTC",
        utc(2024, 5, 1, 12, 0, 20),
        [utc(2024, 5, 1, 12, 1, 15), utc(2024, 5, 1, 12, 2, 15)],
    ),
    (
        "30 0 12 * * *",
        "UTC",
        utc(2024, 5, 1, 11),
        [utc(2024, 5, 1, 12, 0, 30), utc(2024, 5, 2, 12, 0, 30)],
    ),
    (
        "* * * * * *",
        "UTC",
        datetime(2024, 5, 1, 12, 0, 0, 500_000, tzinfo=UTC),
        [utc(2024, 5, 1, 12, 0, 1), utc(2024, 5, 1, 12, 0, 2)],
    ),
    # -- aliases ------------------------------------------------------------------------
    ("@hourly", "UTC", utc(2024, 5, 1, 12, 30), [utc(2024, 5, 1, 13), utc(2024, 5, 1, 14)]),
    ("@daily", "UTC", utc(2024, 5, 1, 12), [utc(2024, 5, 2), utc(2024, 5, 3)]),
    ("@midnight", "UTC", utc(2024, 5, 1, 12), [utc(2024, 5, 2)]),
    # Wednesday -> Sunday 00:00.
    ("@weekly", "UTC", utc(2024, 5, 1, 12), [utc(2024, 5, 5), utc(2024, 5, 12)]),
    ("@monthly", "UTC", utc(2024, 5, 1, 12), [utc(2024, 6, 1), utc(2024, 7, 1)]),
    ("@yearly", "UTC", utc(2024, 5, 1, 12), [utc(2025, 1, 1), utc(2026, 1, 1)]),
    ("@annually", "UTC", utc(2024, 5, 1, 12), [utc(2025, 1, 1)]),
    # Midnight in Tokyo (UTC+9) is 15:00 UTC the day before.
    ("@daily", "Asia/Tokyo", utc(2024, 5, 1, 12), [utc(2024, 5, 1, 15), utc(2024, 5, 2, 15)]),
    # -- time zones without DST ----------------------------------------------------------
    # 09:00 in Tokyo is 00:00 UTC; exactly then is not "after".
    ("0 9 * * *", "Asia/Tokyo", utc(2024, 5, 1), [utc(2024, 5, 2), utc(2024, 5, 3)]),
    # Kolkata is UTC+5:30.
    ("0 9 * * *", "Asia/Kolkata", utc(2024, 5, 1), [utc(2024, 5, 1, 3, 30)]),
    # -- time zones with DST, away from the changes ----------------------------------------
    ("0 9 * * *", "America/Los_Angeles", utc(2024, 7, 1), [utc(2024, 7, 1, 16)]),  # PDT
    ("0 9 * * *", "America/Los_Angeles", utc(2024, 1, 10), [utc(2024, 1, 10, 17)]),  # PST
    ("0 9 * * *", "Europe/Berlin", utc(2024, 7, 1), [utc(2024, 7, 1, 7)]),  # CEST
    ("0 9 * * *", "Europe/Berlin", utc(2024, 1, 10), [utc(2024, 1, 10, 8)]),  # CET
    # -- spring forward: a time in the gap fires once, moved forward by the gap -------------
    # 02:30 does not exist on 10 March in New York: 03:30 EDT; then 02:30 EDT.
    (
        "30 2 * * *",
        "America/New_York",
        utc(2024, 3, 9, 12),
        [utc(2024, 3, 10, 7, 30), utc(2024, 3, 11, 6, 30)],
    ),
    # Berlin: 03:30 CEST on 31 March; then 02:30 CEST.
    (
        "30 2 * * *",
        "Europe/Berlin",
        utc(2024, 3, 30, 12),
        [utc(2024, 3, 31, 1, 30), utc(2024, 4, 1, 0, 30)],
    ),
    # Sydney: 03:30 AEDT on 6 October; then 02:30 AEDT.
    (
        "30 2 * * *",
        "Australia/Sydney",
        utc(2024, 10, 5, 3),
        [utc(2024, 10, 5, 16, 30), utc(2024, 10, 6, 15, 30)],
    ),
    # Every 20 minutes: 01:40 EST, then 02:00 -> 03:00 EDT; 02:20 and 03:20 are one tick.
    (
        "*/20 * * * *",
        "America/New_York",
        utc(2024, 3, 10, 6, 30),
        [
            utc(2024, 3, 10, 6, 40),
            utc(2024, 3, 10, 7),
            utc(2024, 3, 10, 7, 20),
            utc(2024, 3, 10, 7, 40),
            utc(2024, 3, 10, 8),
        ],
    ),
    # Hourly: 01:00 EST, 03:00 EDT (the 02:00 tick moved onto it), 04:00 EDT.
    (
        "0 * * * *",
        "America/New_York",
        utc(2024, 3, 10, 5, 30),
        [utc(2024, 3, 10, 6), utc(2024, 3, 10, 7), utc(2024, 3, 10, 8)],
    ),
    # -- fall back: a repeated time fires once, at its first occurrence ----------------------
    # 01:30 happens twice on 3 November in New York: 01:30 EDT only; then 01:30 EST.
    (
        "30 1 * * *",
        "America/New_York",
        utc(2024, 11, 2, 12),
        [utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)],
    ),
    # Berlin: 02:30 CEST only on 27 October; then 02:30 CET.
    (
        "30 2 * * *",
        "Europe/Berlin",
        utc(2024, 10, 26, 12),
        [utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)],
    ),
    # Sydney: 02:30 AEDT only on 7 April; then 02:30 AEST.
    (
        "30 2 * * *",
        "Australia/Sydney",
        utc(2024, 4, 6, 3),
        [utc(2024, 4, 6, 15, 30), utc(2024, 4, 7, 16, 30)],
    ),
    # Every 20 minutes pauses during the repeated hour: 01:00, 01:20, 01:40 EDT,
    # then 02:00 EST, an hour and twenty minutes later.
    (
        "*/20 * * * *",
        "America/New_York",
        utc(2024, 11, 3, 4, 50),
        [
            utc(2024, 11, 3, 5),
            utc(2024, 11, 3, 5, 20),
            utc(2024, 11, 3, 5, 40),
            utc(2024, 11, 3, 7),
            utc(2024, 11, 3, 7, 20),
        ],
    ),
    # Berlin: 02:20, 02:40 CEST, then 03:00 CET.
    (
        "*/20 * * * *",
        "Europe/Berlin",
        utc(2024, 10, 27, 0, 10),
        [
            utc(2024, 10, 27, 0, 20),
            utc(2024, 10, 27, 0, 40),
            utc(2024, 10, 27, 2),
            utc(2024, 10, 27, 2, 20),
        ],
    ),
    # Hourly: 01:00 EDT, then 02:00 EST (01:00 EST is the repeated 01:00).
    (
        "0 * * * *",
        "America/New_York",
        utc(2024, 11, 3, 4, 30),
        [utc(2024, 11, 3, 5), utc(2024, 11, 3, 7)],
    ),
]


def _case_id(case: tuple[str, str, datetime, list[datetime]]) -> str:
    expression, timezone, after, _ = case
    return f"{expression} {timezone} after {after:%Y-%m-%dT%H:%M:%S}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(case) for case in CASES])
def test_next_fire_times(case: tuple[str, str, datetime, list[datetime]]) -> None:
    expression, timezone, after, expected = case
    schedule = CronSchedule(expression, timezone)

    assert fire_times(schedule, after, len(expected)) == expected


@pytest.mark.parametrize("case", CASES, ids=[_case_id(case) for case in CASES])
def test_next_fire_is_strictly_after(case: tuple[str, str, datetime, list[datetime]]) -> None:
    expression, timezone, _, expected = case
    schedule = CronSchedule(expression, timezone)

    for fire_at in expected:
        assert schedule.next_after(fire_at) > fire_at
        assert schedule.next_after(fire_at - MICROSECOND) == fire_at


@pytest.mark.parametrize("case", CASES, ids=[_case_id(case) for case in CASES])
def test_fire_times_are_aware_utc(case: tuple[str, str, datetime, list[datetime]]) -> None:
    expression, timezone, after, expected = case

    for fire_at in fire_times(CronSchedule(expression, timezone), after, len(expected)):
        assert fire_at.tzinfo is UTC


def test_after_may_be_in_any_time_zone() -> None:
    schedule = CronSchedule("0 9 * * *", "Europe/Berlin")
    after = datetime(2024, 7, 1, 8, 30, tzinfo=ZoneInfo("Asia/Tokyo"))  # 23:30 UTC the day before

    assert schedule.next_after(after) == utc(2024, 7, 1, 7)


def test_the_defaults_are_utc() -> None:
    schedule = CronSchedule("0 2 * * *")

    assert schedule.timezone == "UTC"
    assert schedule.next_after(utc(2024, 5, 1)) == utc(2024, 5, 1, 2)


# -- asked in the middle of a DST change --------------------------------------------------


def test_a_spring_forward_tick_still_ahead_is_not_lost() -> None:
    # At 03:10 EDT the 02:30 tick, moved to 03:30 EDT, has not fired yet.
    schedule = CronSchedule("30 2 * * *", "America/New_York")

    assert schedule.next_after(utc(2024, 3, 10, 7, 10)) == utc(2024, 3, 10, 7, 30)
    assert schedule.next_after(utc(2024, 3, 10, 7, 30)) == utc(2024, 3, 11, 6, 30)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        # During the second 01:xx (EST) every wall-clock time of the hour already
        # fired in the first pass: the next tick is 02:00 EST.
        ("* * * * * *", utc(2024, 11, 3, 6, 10), utc(2024, 11, 3, 7)),
        ("* * * * * *", utc(2024, 11, 3, 6, 59, 59), utc(2024, 11, 3, 7)),
        ("*/2 * * * * *", utc(2024, 11, 3, 6), utc(2024, 11, 3, 7)),
        ("*/20 * * * *", utc(2024, 11, 3, 6, 30), utc(2024, 11, 3, 7)),
        ("30 1 * * *", utc(2024, 11, 3, 6, 10), utc(2024, 11, 4, 6, 30)),
        # During the first 01:xx (EDT) the hour runs as usual.
        ("* * * * * *", utc(2024, 11, 3, 5, 10), utc(2024, 11, 3, 5, 10, 1)),
    ],
)
def test_asked_during_the_repeated_hour(
    expression: str, after: datetime, expected: datetime
) -> None:
    assert CronSchedule(expression, "America/New_York").next_after(after) == expected


# -- bad input ------------------------------------------------------------------------------

REQUIRED = "a cron expression is required"
FIELDS = r"use five fields \(minute hour day month weekday.*or six with seconds first"


@pytest.mark.parametrize(
    ("expression", "message"),
    [
        ("", REQUIRED),
        ("   ", REQUIRED),
        (None, REQUIRED),
        (5, REQUIRED),
        ("not a cron", FIELDS),
        ("* * * *", FIELDS),
        ("* * * * * * *", FIELDS),
        ("60 * * * *", FIELDS),
        ("* 24 * * *", FIELDS),
        ("* * 32 * *", FIELDS),
        ("* * * 13 *", FIELDS),
        ("61 * * * * *", FIELDS),
        ("@sometimes", FIELDS),
        ("@daily 5", FIELDS),
    ],
)
def test_an_invalid_expression_is_refused(expression: Any, message: str) -> None:
    with pytest.raises(InvalidScheduleError, match=message):
        CronSchedule(expression)


def test_the_message_quotes_the_expression() -> None:
    with pytest.raises(InvalidScheduleError, match=r"invalid cron expression '\* 24 \* \* \*'"):
        CronSchedule("* 24 * * *")


@pytest.mark.parametrize("timezone", ["Mars/Olympus_Mons", "Europe/Atlantis", "../etc/passwd"])
def test_an_unknown_time_zone_is_refused(timezone: str) -> None:
    with pytest.raises(InvalidScheduleError, match=f"unknown time zone '{timezone}'.*IANA name"):
        CronSchedule("0 2 * * *", timezone)


@pytest.mark.parametrize("timezone", ["", None])
def test_a_time_zone_is_required(timezone: Any) -> None:
    with pytest.raises(InvalidScheduleError, match="a time zone is required"):
        CronSchedule("0 2 * * *", timezone)


@pytest.mark.parametrize("expression", ["0 0 31 2 *", "0 0 30 2 *", "0 0 0 31 4 *"])
def test_an_expression_that_never_fires_is_refused(expression: str) -> None:
    with pytest.raises(InvalidScheduleError, match="never fires: check its day and month fields"):
        CronSchedule(expression)


def test_invalid_schedule_error_is_a_value_error_and_a_masa_jobs_error() -> None:
    with pytest.raises(ValueError, match="invalid cron") as caught:
        CronSchedule("nope")

    assert isinstance(caught.value, MasaJobsError)
