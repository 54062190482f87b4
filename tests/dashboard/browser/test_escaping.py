"""Job data that holds HTML and scripts is shown as text, never run or parsed."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from masa_jobs.records import ScheduleRecord

from ..seed import new_job, run_to_death
from .conftest import Site

SCRIPT = "<script>alert(1)</script>"
IMAGE = '<img src=x onerror="alert(2)">'
EVIL_ID = '"><script>alert(3)</script>'
EVIL_NAME = f"mail.{IMAGE}"
EVIL_ARGS = {"body": f"{SCRIPT}<b>bold</b>", "note": "</pre><h1>forged</h1>"}
EVIL_ERROR = f"Handler failed:\n{SCRIPT}\n{IMAGE}\nValueError: </details>{SCRIPT}"
EVIL_HEADERS = {"traceparent": f"{SCRIPT}", "x-note": IMAGE}


def _no_injected_elements(page: Any) -> None:
    """The DOM holds only what the templates write: no script, image or bold
    element, and one heading."""
    for selector in ("script", "img", "b", "iframe"):
        assert page.locator(selector).count() == 0, selector
    assert page.locator("h1").count() == 1
    assert page.locator("h1", has_text="forged").count() == 0


def test_html_in_job_data_is_text(site: Site, page: Any) -> None:
    now = site.call(site.store.now())
    job = new_job(EVIL_NAME, EVIL_ARGS, created_at=now, job_id=EVIL_ID, headers=EVIL_HEADERS)
    site.call(run_to_death(site.store, job, error=EVIL_ERROR))
    site.call(
        site.store.upsert_schedule(
            ScheduleRecord(
                id=EVIL_ID,
                job_class=f"job:{EVIL_NAME}",
                cron_expression="0 3 * * *",
                timezone="UTC",
                next_fire_at=now + timedelta(hours=1),
                created_at=now,
                updated_at=now,
                payload=json.dumps(EVIL_ARGS),
            )
        )
    )

    page.goto(site.url("/jobs"))
    _no_injected_elements(page)
    row = page.locator("table.jobs tbody tr")
    assert row.locator("a.id").get_attribute("title") == EVIL_ID
    assert row.locator("td.name").inner_text() == EVIL_NAME
    assert SCRIPT in row.locator("td.error-cell").inner_text()

    row.locator("a.id").click()
    page.wait_for_load_state()
    _no_injected_elements(page)
    assert page.locator("h1 code").inner_text() == EVIL_ID
    assert json.loads(page.locator("pre.code").inner_text()) == EVIL_ARGS
    assert page.locator("table.kv").inner_text().count(SCRIPT) == 1
    for details in page.locator("details").all():
        details.locator("summary").click()
        assert details.locator("pre").inner_text() == EVIL_ERROR
    _no_injected_elements(page)

    for path in ("/", "/schedules", f"/jobs?state=dead&name={EVIL_NAME}"):
        page.goto(site.url(path))
        _no_injected_elements(page)
    page.goto(site.url("/schedules"))
    assert page.locator("table.schedules code").first.inner_text() == EVIL_ID
    assert SCRIPT in page.locator("table.schedules .args").inner_text()


def test_a_flash_message_in_the_link_is_text(site: Site, page: Any) -> None:
    page.goto(site.url(f"/?message={SCRIPT}{IMAGE}&level=ok%22%3E%3Cb%3E"))
    _no_injected_elements(page)
    flash = page.locator(".flash")
    assert flash.inner_text() == f"{SCRIPT}{IMAGE}"
    assert flash.get_attribute("class") == "flash flash-ok"
