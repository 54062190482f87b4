"""Filters and cursor paging of the jobs list, walked in a browser over 1,000 jobs."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from masa_jobs.dashboard.listing import PAGE_SIZE
from masa_jobs.queries import sort_key
from masa_jobs.records import JobRecord

from ..seed import new_job
from .conftest import Site

JOBS = 1000
NAMES = ("mail.send", "report.build", "image.resize", "cache.warm")
# Every third job shares its creation time with the one before: the cursor's
# tie-breaker (the id) must still show each of them once.
_SAME_TIME_EVERY = 3


def _thousand_jobs(start: datetime) -> list[JobRecord]:
    jobs = []
    for i in range(JOBS):
        created = start + timedelta(seconds=i - (i % _SAME_TIME_EVERY == 1))
        # Every fifth job is due in an hour (scheduled), the others now (enqueued).
        due = created + timedelta(hours=2) if i % 5 == 0 else None
        jobs.append(new_job(NAMES[i % len(NAMES)], {"n": i}, created_at=created, due_at=due))
    return jobs


@pytest.fixture
def thousand(site: Site) -> list[JobRecord]:
    start = site.call(site.store.now()) - timedelta(hours=1)
    jobs = _thousand_jobs(start)
    site.call(site.store.add(jobs))
    return jobs


def _ids_on_page(page: Any) -> list[str]:
    # One round trip for the whole page (each link's title is its full id).
    ids: list[str] = page.locator("table.jobs a.id").evaluate_all(
        "links => links.map(a => a.title)"
    )
    return ids


def _walk(page: Any) -> list[list[str]]:
    """The ids of every page, following "Next page" until there is none."""
    pages = [_ids_on_page(page)]
    next_link = page.locator("a[rel=next]")
    while next_link.count():
        # The rows are there once the document is parsed; the stylesheet is cached.
        with page.expect_navigation(wait_until="domcontentloaded"):
            next_link.click()
        pages.append(_ids_on_page(page))
        assert page.locator("a[rel=first]").count() == 1
    return pages


def _in_order(jobs: list[JobRecord], *, newest_first: bool) -> list[str]:
    return [job.id for job in sorted(jobs, key=sort_key, reverse=newest_first)]


def test_every_job_is_seen_once_newest_first(
    site: Site, page: Any, thousand: list[JobRecord]
) -> None:
    page.goto(site.url("/jobs"))
    assert page.locator("a[rel=first]").count() == 0  # already on it

    pages = _walk(page)

    assert len(pages) == JOBS // PAGE_SIZE
    assert all(len(ids) == PAGE_SIZE for ids in pages)
    seen = [job_id for ids in pages for job_id in ids]
    assert seen == _in_order(thousand, newest_first=True)


def test_filters_by_name_and_state_oldest_first(
    site: Site, page: Any, thousand: list[JobRecord]
) -> None:
    page.goto(site.url("/jobs"))
    page.select_option("select[name=state]", "enqueued")
    page.fill("input[name=name]", "mail.send")
    page.select_option("select[name=order]", "oldest")
    with page.expect_navigation():
        page.get_by_role("button", name="Apply").click()

    pages = _walk(page)

    wanted = [
        job
        for i, job in enumerate(thousand)
        if job.name == "mail.send" and i % 5 != 0  # scheduled ones are left out
    ]
    seen = [job_id for ids in pages for job_id in ids]
    assert seen == _in_order(wanted, newest_first=False)
    # The form keeps the filters; "First page" keeps them too.
    assert page.input_value("input[name=name]") == "mail.send"
    assert page.input_value("select[name=state]") == "enqueued"
    page.locator("a[rel=first]").click()
    first_query = parse_qs(urlsplit(page.url).query)
    assert first_query == {"state": ["enqueued"], "name": ["mail.send"], "order": ["oldest"]}
    assert _ids_on_page(page) == pages[0]


def test_created_range_filter(site: Site, page: Any, thousand: list[JobRecord]) -> None:
    start = thousand[0].created_at
    since, until = start + timedelta(seconds=100), start + timedelta(seconds=130)
    page.goto(site.url("/jobs"))
    page.fill("input[name=from]", since.strftime("%Y-%m-%dT%H:%M:%S"))
    page.fill("input[name=until]", until.strftime("%Y-%m-%dT%H:%M:%S"))
    with page.expect_navigation():
        page.get_by_role("button", name="Apply").click()

    wanted = [job for job in thousand if since <= job.created_at.replace(microsecond=0) < until]
    assert len(wanted) >= 30
    assert _ids_on_page(page) == _in_order(wanted, newest_first=True)
    assert page.locator("a[rel=next]").count() == 0


def test_bad_filters_and_cursors_are_readable_errors(site: Site, page: Any) -> None:
    for query, problem in (
        ("state=lost", "state 'lost' is not one of"),
        ("from=yesterday", "created from 'yesterday' is not a date and time"),
        ("cursor=not-a-cursor", "is not one a page returned"),
        ("order=sideways", "order must be"),
    ):
        response = page.goto(site.url(f"/jobs?{query}"))
        assert response.status == 400
        assert problem in page.locator(".flash-error").inner_text()
        assert page.locator("form.filters").count() == 1
