"""Actions in a real browser: they change the store, and only with a valid token."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from masa_jobs import JobState
from masa_jobs.dashboard.security import CSRF_COOKIE

from ..seed import new_job, run_to_death, seed_states
from .conftest import Site


def _state(site: Site, job_id: str) -> JobState | None:
    info = site.call(site.manager.get(job_id))
    return None if info is None else info.state


def _flash(page: Any) -> str:
    text: str = page.locator(".flash").inner_text()
    return text


def test_retry_cancel_and_delete_change_the_store(site: Site, page: Any) -> None:
    ids = site.call(seed_states(site.store)).ids

    page.goto(site.url(f"/job?id={ids[JobState.DEAD]}"))
    page.get_by_role("button", name="Retry", exact=True).click()
    page.wait_for_url("**/job?id=*&message=*")
    assert _flash(page) == "Job retried: it is enqueued now."
    assert page.locator(".heading .badge").inner_text() == "enqueued"
    assert _state(site, ids[JobState.DEAD]) is JobState.ENQUEUED

    page.goto(site.url(f"/job?id={ids[JobState.SCHEDULED]}"))
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_url("**/job?id=*&message=*")
    assert "Job cancelled" in _flash(page)
    assert _state(site, ids[JobState.SCHEDULED]) is JobState.CANCELLED

    page.goto(site.url(f"/job?id={ids[JobState.SUCCEEDED]}"))
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url("**/jobs?message=*")
    assert _flash(page) == f"Job {ids[JobState.SUCCEEDED]} deleted."
    assert _state(site, ids[JobState.SUCCEEDED]) is None


def test_an_action_the_state_no_longer_allows_is_a_message(site: Site, page: Any) -> None:
    ids = site.call(seed_states(site.store)).ids
    job_id = ids[JobState.ENQUEUED]
    page.goto(site.url(f"/job?id={job_id}"))
    # Meanwhile a worker (here: the store) moves the job on.
    site.call(
        site.store.transition(
            job_id, (JobState.ENQUEUED,), JobState.CANCELLED, site.call(site.store.now())
        )
    )

    page.get_by_role("button", name="Cancel").click()
    page.wait_for_url("**/job?id=*&level=error*")
    assert page.locator(".flash-error").inner_text() == (
        f"job {job_id!r} is cancelled; "
        "only a job that is enqueued or processing or scheduled can be cancelled"
    )

    site.call(site.store.delete(job_id))
    page.get_by_role("button", name="Delete").click()
    page.wait_for_url("**/jobs?*level=error*")
    assert f"no job with id {job_id!r}" in page.locator(".flash-error").inner_text()


def test_retry_all_dead_jobs_of_a_name_after_confirming(
    site: Site, page: Any, screenshot: Callable[[str], Path]
) -> None:
    now = site.call(site.store.now())
    mail = [new_job("mail.send", {"n": i}, created_at=now) for i in range(3)]
    other = new_job("report.build", {"n": 9}, created_at=now)
    for job in (*mail, other):
        site.call(run_to_death(site.store, job))

    page.goto(site.url("/jobs?state=dead&name=mail.send"))
    page.get_by_role("link", name="Retry all…").click()
    assert page.locator(".confirm .count").inner_text() == "3"
    screenshot("confirm-retry-all")
    page.get_by_role("button", name="Retry 3 jobs").click()
    page.wait_for_url("**/jobs?state=dead&name=mail.send&message=*")
    assert _flash(page) == "Retried 3 dead jobs named mail.send: they are enqueued again."
    assert page.locator("table.jobs").count() == 0  # none of that name is dead now
    assert [_state(site, job.id) for job in mail] == [JobState.ENQUEUED] * 3
    assert _state(site, other.id) is JobState.DEAD


def test_delete_all_dead_jobs_of_a_name_after_confirming(site: Site, page: Any) -> None:
    now = site.call(site.store.now())
    mail = [new_job("mail.send", {"n": i}, created_at=now) for i in range(2)]
    other = new_job("report.build", {"n": 9}, created_at=now)
    for job in (*mail, other):
        site.call(run_to_death(site.store, job))

    page.goto(site.url("/jobs?state=dead&name=mail.send"))
    page.get_by_role("link", name="Delete all…").click()
    assert page.locator(".confirm .count").inner_text() == "2"
    page.get_by_role("button", name="Delete 2 jobs").click()
    page.wait_for_url("**/jobs?state=dead&name=mail.send&message=*")
    assert _flash(page) == "Deleted 2 dead jobs named mail.send."
    assert [_state(site, job.id) for job in mail] == [None, None]
    assert _state(site, other.id) is JobState.DEAD


def test_schedule_trigger_pause_and_resume(site: Site, page: Any) -> None:
    site.call(seed_states(site.store))
    jobs_before = sum(site.call(site.manager.count()).values())

    page.goto(site.url("/schedules"))
    nightly = page.locator("tr", has_text="nightly-report")
    nightly.get_by_role("button", name="Trigger now").click()
    page.wait_for_url("**/schedules?message=*")
    assert _flash(page).startswith("Recurring job nightly-report triggered: job ")
    assert sum(site.call(site.manager.count()).values()) == jobs_before + 1

    page.locator("tr", has_text="nightly-report").get_by_role("button", name="Pause").click()
    page.wait_for_url("**/schedules?message=*")
    assert site.call(site.store.get_schedule("nightly-report")).paused
    page.locator("tr", has_text="nightly-report").get_by_role("button", name="Resume").click()
    page.wait_for_url("**/schedules?message=*")
    assert _flash(page) == "Recurring job nightly-report resumed."
    assert not site.call(site.store.get_schedule("nightly-report")).paused


def test_pause_and_resume_a_queue(site: Site, page: Any, screenshot: Callable[[str], Path]) -> None:
    page.goto(site.url("/"))
    page.get_by_role("link", name="Queues", exact=True).click()
    page.wait_for_url("**/queues")
    assert "No queue is paused" in page.locator(".empty").inner_text()

    page.get_by_label("Queue to pause").fill("reports")
    page.get_by_role("button", name="Pause").click()
    page.wait_for_url("**/queues?message=*")
    assert _flash(page) == "Queue reports paused: no worker starts its jobs until it is resumed."
    assert page.locator("table.queues tbody tr").all_inner_texts() == ["reports\tpaused\tResume"]
    assert site.call(site.manager.paused_queues()) == {"reports"}
    screenshot("queues")

    # A name that is not a queue name: the reason, the form again, nothing changed.
    page.get_by_label("Queue to pause").fill("two words")
    page.get_by_role("button", name="Pause").click()
    page.wait_for_load_state()
    assert "is not a valid queue name" in page.locator(".flash-error").inner_text()
    assert page.get_by_label("Queue to pause").input_value() == "two words"
    assert site.call(site.manager.paused_queues()) == {"reports"}

    page.goto(site.url("/"))
    assert page.locator(".notice").inner_text().startswith("Paused queues: reports")
    page.locator(".notice a").click()
    page.wait_for_url("**/queues")
    page.locator("tr", has_text="reports").get_by_role("button", name="Resume").click()
    page.wait_for_url("**/queues?message=*")
    assert _flash(page) == "Queue reports resumed: workers serving it start its jobs again."
    assert page.locator("table.queues").count() == 0
    assert site.call(site.manager.paused_queues()) == set()


def test_a_post_without_a_valid_token_is_refused_and_changes_nothing(site: Site, page: Any) -> None:
    ids = site.call(seed_states(site.store)).ids
    dead = ids[JobState.DEAD]
    page.goto(site.url(f"/job?id={dead}"))  # the browser has its cookie now
    token = page.locator("input[name=csrf]").first.input_value()
    assert any(cookie["name"] == CSRF_COOKIE for cookie in page.context.cookies())
    action = site.url("/job/action")

    for form in (
        {"id": dead, "action": "retry"},
        {"id": dead, "action": "retry", "csrf": ""},
        {"id": dead, "action": "retry", "csrf": "0" * 64},
        {"id": dead, "action": "retry", "csrf": token[:-1] + "x"},
    ):
        refused = page.request.post(action, form=form, max_redirects=0)
        assert refused.status == 403, form
        assert "security token" in refused.text()
    assert _state(site, dead) is JobState.DEAD

    # A token is tied to the browser's cookie: another browser's cookie does not match.
    page.context.clear_cookies()
    refused = page.request.post(action, form={"id": dead, "action": "retry", "csrf": token})
    assert refused.status == 403
    assert _state(site, dead) is JobState.DEAD


def test_read_only_shows_no_forms_and_refuses_posts(
    site: Site, page: Any, screenshot: Callable[[str], Path]
) -> None:
    ids = site.call(seed_states(site.store)).ids
    site.serve(read_only=True)

    site.call(site.manager.pause_queue("reports"))
    paths = ["/", "/jobs", "/jobs?state=dead&name=mail.send", "/schedules", "/queues", "/workers"]
    # A dead job offers retry, a pending one cancel, every one delete.
    paths += [f"/job?id={ids[state]}" for state in (JobState.DEAD, JobState.SCHEDULED)]
    for path in paths:
        page.goto(site.url(path))
        assert page.locator("form[method=post]").count() == 0, path
        assert page.locator("input[name=csrf]").count() == 0, path
        assert page.locator("a[href*='/bulk']").count() == 0, path
        assert page.locator(".pill").text_content() == "read-only"
    screenshot("job-read-only")

    token = "0" * 64
    for action, form in (
        ("/job/action", {"id": ids[JobState.DEAD], "action": "retry", "csrf": token}),
        ("/bulk", {"action": "delete", "name": "mail.send", "csrf": token}),
        ("/schedules/action", {"id": "cleanup", "action": "resume", "csrf": token}),
        ("/queues/action", {"queue": "reports", "action": "resume", "csrf": token}),
    ):
        refused = page.request.post(site.url(action), form=form)
        assert refused.status == 403
        assert "read-only" in refused.text()
    assert page.request.get(site.url("/bulk?action=retry&name=mail.send")).status == 403
    assert _state(site, ids[JobState.DEAD]) is JobState.DEAD
    assert site.call(site.store.get_schedule("cleanup")).paused
    assert site.call(site.manager.paused_queues()) == {"reports"}
