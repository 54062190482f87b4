"""Every page renders in a real browser, with jobs in all six states.

Each page is saved as a screenshot in the artifacts directory.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount

from masa_jobs import JobState
from masa_jobs.dashboard import dashboard

from ..seed import TRACEPARENT, WORKER, seed_states, seed_throughput
from .conftest import Site

# Minutes ago -> jobs finished then; the chart draws one bar per non-zero minute.
THROUGHPUT = [4, 7, 0, 3, 9, 12, 5, 0, 0, 6]


def test_overview_counts_chart_and_workers(
    site: Site, page: Any, screenshot: Callable[[str], Path]
) -> None:
    site.call(seed_throughput(site.store, THROUGHPUT))
    site.call(seed_states(site.store))

    response = page.goto(site.url("/"))
    assert response.status == 200
    expected = dict.fromkeys(JobState, 1)
    expected[JobState.SUCCEEDED] += sum(THROUGHPUT)
    for state, count in expected.items():
        card = page.locator(f"a.card.state-{state.value}")
        assert card.locator(".count").inner_text() == str(count)
        assert card.get_attribute("href") == f"/jobs?state={state.value}"
    # One bar per minute with finished jobs; the seeded states add a success,
    # a death and a cancellation in the current minute.
    titles = page.locator("svg rect.bar title").all_text_contents()
    assert len(titles) >= sum(1 for n in THROUGHPUT if n)
    assert sum(int(t.split(": ")[1].split()[0]) for t in titles) == sum(THROUGHPUT) + 3
    assert any(t.endswith(" UTC: 12 finished") for t in titles)
    facts = page.locator(".facts").inner_text()
    assert "waiting" in facts  # the enqueued job is due
    assert page.locator(".fact a[href='/workers']").inner_text() == "1"
    screenshot("overview")


def test_jobs_list_shows_every_state(
    site: Site, page: Any, screenshot: Callable[[str], Path]
) -> None:
    seeded = site.call(seed_states(site.store))

    page.goto(site.url("/jobs"))
    rows = page.locator("table.jobs tbody tr")
    assert rows.count() == len(JobState)
    shown = {
        row.locator("a.id").get_attribute("title"): row.locator(".badge").inner_text()
        for row in rows.all()
    }
    assert shown == {job_id: state.value for state, job_id in seeded.ids.items()}
    dead_row = page.locator("tr", has=page.locator(".badge.state-dead"))
    assert "ConnectionRefusedError" in dead_row.locator("td.error-cell").inner_text()
    screenshot("jobs")


def test_job_page_shows_fields_args_headers_and_history(
    site: Site, page: Any, screenshot: Callable[[str], Path]
) -> None:
    seeded = site.call(seed_states(site.store))
    dead_id = seeded.ids[JobState.DEAD]

    page.goto(site.url("/jobs?state=dead"))
    page.locator("a.id").first.click()
    page.wait_for_url(f"**/job?id={dead_id}")
    assert page.locator("h1 code").inner_text() == dead_id
    fields = page.locator("dl.fields").inner_text()
    assert "mail.send" in fields
    assert "Attempts\n2" in fields
    assert '"to": "bob@example.invalid"' in page.locator("pre.code").inner_text()
    # History: a retry then death (newest first), each error collapsed.
    events = page.locator("table.history tbody tr")
    assert events.count() == 2
    assert [e.locator(".badge").inner_text() for e in events.all()] == ["dead", "scheduled"]
    details = events.first.locator("details")
    assert details.get_attribute("open") is None
    assert not details.locator("pre").is_visible()
    details.locator("summary").click()
    assert "Connection refused" in details.locator("pre").inner_text()
    assert WORKER in events.first.inner_text()
    screenshot("job-dead")

    page.goto(site.url(f"/job?id={seeded.ids[JobState.SUCCEEDED]}"))
    assert TRACEPARENT in page.locator("table.kv").inner_text()
    page.goto(site.url(f"/job?id={seeded.ids[JobState.PROCESSING]}"))
    assert WORKER in page.locator("dl.fields").inner_text()
    screenshot("job-processing")


def test_unknown_job_is_a_readable_404(site: Site, page: Any) -> None:
    response = page.goto(site.url("/job?id=no-such-job"))
    assert response.status == 404
    assert "No job has the id 'no-such-job'" in page.locator("main").inner_text()


def test_schedules_and_workers_pages(
    site: Site, page: Any, screenshot: Callable[[str], Path]
) -> None:
    site.call(seed_states(site.store))

    page.goto(site.url("/schedules"))
    rows = page.locator("table.schedules tbody tr")
    assert rows.count() == 2
    cleanup, nightly = rows.all()
    assert "*/15 * * * *" in cleanup.inner_text()
    assert cleanup.locator(".badge").inner_text() == "paused"
    assert nightly.locator(".badge").inner_text() == "enabled"
    assert "Europe/Berlin" in nightly.inner_text()
    assert '"report": "daily"' in nightly.inner_text()
    screenshot("schedules")

    page.goto(site.url("/workers"))
    worker = page.locator("table.workers tbody tr")
    assert worker.count() == 1
    cells = worker.locator("td").all_inner_texts()
    assert cells[:3] == [WORKER, "web-1", "4242"]
    assert cells[-1] == "1"
    screenshot("workers")


def test_links_work_under_a_mount_prefix(site: Site, page: Any) -> None:
    seeded = site.call(seed_states(site.store))
    site.server.app = Starlette(routes=[Mount("/ops/jobs", app=dashboard(site.container))])
    site.prefix = "/ops/jobs"

    page.goto(site.url("/"))
    stylesheet = page.locator("link[rel=stylesheet]").get_attribute("href")
    assert stylesheet == "/ops/jobs/static/dashboard.css"
    assert page.request.get(site.server.base_url + stylesheet).ok
    for label, path in (
        ("Jobs", "/ops/jobs/jobs"),
        ("Recurring jobs", "/ops/jobs/schedules"),
        ("Queues", "/ops/jobs/queues"),
        ("Workers", "/ops/jobs/workers"),
        ("Overview", "/ops/jobs/"),
    ):
        page.get_by_role("link", name=label, exact=True).click()
        page.wait_for_url(f"{site.server.base_url}{path}")
    page.goto(site.url("/jobs"))
    page.locator("a.id").first.click()
    assert page.url.startswith(f"{site.server.base_url}/ops/jobs/job?id=")
    # An action under the prefix comes back under the prefix.
    page.goto(site.url(f"/job?id={seeded.ids[JobState.DEAD]}"))
    page.get_by_role("button", name="Retry", exact=True).click()
    page.wait_for_url("**/ops/jobs/job?id=*")
    assert "Job retried" in page.locator(".flash").inner_text()
