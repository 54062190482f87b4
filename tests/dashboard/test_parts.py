"""The dashboard's parts without a server: text, chart, filters, the bulk count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from masa_jobs import JobState
from masa_jobs.dashboard.actions import count_dead
from masa_jobs.dashboard.chart import CHART_HEIGHT, CHART_MINUTES, chart_start, minute_chart
from masa_jobs.dashboard.formatting import ago, between, duration, error_summary, when
from masa_jobs.dashboard.listing import OLDEST, PAGE_SIZE, JobFilter, parse_filter
from masa_jobs.exceptions import InvalidQueryError
from masa_jobs.manager import DefaultJobManager
from masa_jobs.options import BackgroundJobOptions
from masa_jobs.queries import MAX_PAGE_SIZE
from masa_jobs.registry import JobRegistry
from masa_jobs.stores.memory import MemoryJobStore

from .seed import LEASE, WORKER, new_job

NOW = datetime(2024, 5, 1, 12, 30, 40, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.4, "0 s"),
        (45, "45 s"),
        (180, "3 min"),
        (185, "3 min 5 s"),
        (7200, "2 h"),
        (7500, "2 h 5 min"),
        (86_400 * 2 + 3600 * 4, "2 d 4 h"),
        (-90, "1 min 30 s"),
    ],
)
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_times() -> None:
    assert when(NOW) == "2024-05-01 12:30:40"
    assert when(None) == "—"
    assert ago(NOW - timedelta(minutes=3), NOW) == "3 min ago"
    assert ago(NOW - timedelta(minutes=7, seconds=57), NOW) == "7 min ago"
    assert ago(NOW - timedelta(seconds=42), NOW) == "42 s ago"
    assert ago(NOW - timedelta(hours=1, minutes=40), NOW) == "1 h 40 min ago"
    assert ago(NOW + timedelta(hours=2), NOW) == "in 2 h"
    assert ago(NOW, NOW) == "now"
    assert between(NOW, NOW + timedelta(milliseconds=250)) == "250 ms"
    assert between(None, NOW) == "—"


def test_error_summary_keeps_a_tracebacks_first_and_last_lines() -> None:
    error = "h failed:\nTraceback (most recent call last):\n  File x\nValueError: boom\n"
    assert error_summary(error) == "h failed: … ValueError: boom"
    assert error_summary("one line") == "one line"
    assert error_summary(None) == ""
    assert len(error_summary("x" * 1000)) == 160


def test_chart_draws_one_bar_per_minute_scaled_to_the_busiest() -> None:
    start = chart_start(NOW)
    assert start == datetime(2024, 5, 1, 11, 31, tzinfo=UTC)
    points = [
        (start - timedelta(minutes=1), 50),  # before the window: left out
        (start, 2),
        (start + timedelta(minutes=30), 8),
        (NOW.replace(second=0), 4),
    ]
    chart = minute_chart(points, NOW)
    assert (chart.peak, chart.total) == (8, 14)
    assert [bar.count for bar in chart.bars] == [2, 8, 4]
    tallest = chart.bars[1]
    assert (tallest.y, tallest.height) == (0, CHART_HEIGHT)
    assert chart.bars[0].height == CHART_HEIGHT / 4
    assert chart.bars[-1].x + chart.bars[-1].width <= chart.width
    assert chart.bars[0].x < chart.width / CHART_MINUTES
    assert minute_chart([], NOW).bars == ()


def test_filter_from_a_query_string() -> None:
    job_filter = parse_filter(
        {"state": "dead", "name": " mail.send ", "from": "2024-05-01T12:00", "order": OLDEST}
    )
    query = job_filter.query()
    assert query.states == frozenset({JobState.DEAD})
    assert query.name == "mail.send"
    assert query.created_from == datetime(2024, 5, 1, 12, tzinfo=UTC)
    assert query.created_until is None
    assert not query.newest_first
    assert query.limit == PAGE_SIZE
    assert job_filter.params(cursor="abc") == {
        "state": "dead",
        "name": "mail.send",
        "from": "2024-05-01T12:00",
        "order": "oldest",
        "cursor": "abc",
    }
    assert JobFilter().params() == {}
    assert not JobFilter().filtered


def test_a_time_with_an_offset_keeps_it() -> None:
    query = parse_filter({"until": "2024-05-01T14:00+02:00"}).query()
    assert query.created_until == datetime(2024, 5, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"state": "lost"}, "state 'lost' is not one of scheduled, enqueued"),
        ({"order": "up"}, "order must be"),
        ({"name": "x" * 501}, "at most 500"),
    ],
)
def test_bad_filters_say_what_is_wrong(params: dict[str, str], problem: str) -> None:
    with pytest.raises(InvalidQueryError, match=problem):
        parse_filter(params)


def test_a_bad_time_or_cursor_is_refused_when_the_query_is_made() -> None:
    with pytest.raises(InvalidQueryError, match="not a date and time"):
        parse_filter({"from": "tuesday"}).query()
    with pytest.raises(InvalidQueryError, match="not one a page returned"):
        parse_filter({"cursor": "%%%"}).query()


@pytest.mark.anyio
async def test_count_dead_stops_past_the_cap() -> None:
    store = MemoryJobStore()
    manager = DefaultJobManager(store, JobRegistry(), BackgroundJobOptions())
    now = await store.now()
    dead = [new_job("mail.send", {"n": i}, created_at=now) for i in range(MAX_PAGE_SIZE + 10)]
    await store.add([*dead, new_job("other", {}, created_at=now)])
    held = await store.claim(WORKER, len(dead) + 1, LEASE)
    for job in held:
        if job.name == "mail.send":
            moved = await store.transition(job.id, (JobState.PROCESSING,), JobState.DEAD, now)
            assert moved is not None

    assert await count_dead(manager, "mail.send") == (MAX_PAGE_SIZE + 10, False)
    assert await count_dead(manager, "mail.send", cap=MAX_PAGE_SIZE) == (MAX_PAGE_SIZE, True)
    assert await count_dead(manager, "other") == (0, False)
