"""The dashboard's actions: POSTs that change jobs, recurring jobs and queues.

Each one is refused (403, nothing changed) on a read-only dashboard or
without a valid CSRF token; otherwise it acts and redirects (303) to the
page it came from, with the outcome as a message in the query string. An
operation the job's state does not allow, or an id that is gone, is such a
message too, never a server error. A queue name that is not valid is shown
on the queues page again, with the reason (400), and nothing changes.

Retrying or deleting every dead job of a name goes through a confirmation
page that says how many jobs it concerns.
"""

from __future__ import annotations

from dataclasses import replace

from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..exceptions import (
    InvalidJobOptionsError,
    InvalidJobStateError,
    JobNotFoundError,
    ScheduleNotFoundError,
)
from ..manager import JobManager
from ..queries import MAX_PAGE_SIZE, JobQuery
from ..records import JobState
from .render import Renderer
from .security import CSRF_FIELD, CsrfSigner
from .source import ManagerSource
from .urls import href
from .views import queues_page

__all__ = ["BULK_COUNT_CAP", "Actions", "count_dead"]

# A confirmation page counts at most this many jobs (20 pages of 500), so it
# answers fast on any queue; past it, it says "10000+".
BULK_COUNT_CAP = 10_000
BULK_ACTIONS = {"retry": "Retry", "delete": "Delete"}
JOB_ACTIONS = ("retry", "cancel", "delete")
SCHEDULE_ACTIONS = ("trigger", "pause", "resume")
QUEUE_ACTIONS = ("pause", "resume")
# Longer than any valid queue name (100): a longer field is cut to this, still
# refused, so that the refusal does not echo a page-long text back.
MAX_TYPED_QUEUE_CHARS = 200
_READ_ONLY = "This dashboard is read-only: it changes nothing."
_BAD_TOKEN = (
    "The form's security token is missing or does not match this browser's cookie, so "
    "nothing was changed. Load the page again and repeat the action."
)


async def count_dead(manager: JobManager, name: str, cap: int = BULK_COUNT_CAP) -> tuple[int, bool]:
    """How many dead jobs ``name`` has, counting up to about ``cap``; and
    whether there are more than counted."""
    query = JobQuery.of(JobState.DEAD, name=name, limit=MAX_PAGE_SIZE)
    counted = 0
    while True:
        page = await manager.list_jobs(query)
        counted += len(page.items)
        if page.next_cursor is None:
            return counted, False
        if counted >= cap:
            return counted, True
        query = replace(query, cursor=page.next_cursor)


def _field(form: FormData, name: str) -> str:
    value = form.get(name)
    if not isinstance(value, str) or not value:
        raise HTTPException(400, f"the form has no {name!r} field")
    return value


def _redirect(
    request: Request, page: str, message: str, *, error: bool = False, **query: str
) -> Response:
    url = href(request, page, **query, message=message, level="error" if error else "ok")
    return RedirectResponse(url, status_code=303)


class Actions:
    """The POST endpoints, and the confirmation page of the bulk actions."""

    def __init__(
        self, source: ManagerSource, renderer: Renderer, csrf: CsrfSigner, *, read_only: bool
    ) -> None:
        self._source = source
        self._renderer = renderer
        self._csrf = csrf
        self._read_only = read_only

    async def _checked_form(self, request: Request) -> FormData:
        """The form of an allowed action; 403 before anything is read otherwise."""
        if self._read_only:
            raise HTTPException(403, _READ_ONLY)
        form = await request.form()
        if not self._csrf.valid(request, form.get(CSRF_FIELD)):
            raise HTTPException(403, _BAD_TOKEN)
        return form

    async def job_action(self, request: Request) -> Response:
        form = await self._checked_form(request)
        job_id, action = _field(form, "id"), _field(form, "action")
        if action not in JOB_ACTIONS:
            raise HTTPException(400, f"unknown job action {action!r}; use one of {JOB_ACTIONS}")
        manager = self._source.manager()
        try:
            if action == "delete":
                await manager.delete(job_id)
                return _redirect(request, "jobs", f"Job {job_id} deleted.")
            info = await (manager.retry(job_id) if action == "retry" else manager.cancel(job_id))
        except JobNotFoundError as exc:
            return _redirect(request, "jobs", str(exc), error=True)
        except InvalidJobStateError as exc:
            return _redirect(request, "job", str(exc), error=True, id=job_id)
        done = "retried" if action == "retry" else "cancelled"
        return _redirect(request, "job", f"Job {done}: it is {info.state.value} now.", id=job_id)

    async def schedule_action(self, request: Request) -> Response:
        form = await self._checked_form(request)
        schedule_id, action = _field(form, "id"), _field(form, "action")
        if action not in SCHEDULE_ACTIONS:
            raise HTTPException(400, f"unknown schedule action {action!r}; use {SCHEDULE_ACTIONS}")
        manager = self._source.manager()
        try:
            if action == "trigger":
                job_id = await manager.trigger_schedule(schedule_id)
                message = f"Recurring job {schedule_id} triggered: job {job_id} is enqueued."
            elif action == "pause":
                await manager.pause_schedule(schedule_id)
                message = f"Recurring job {schedule_id} paused: it fires no ticks until resumed."
            else:
                await manager.resume_schedule(schedule_id)
                message = f"Recurring job {schedule_id} resumed."
        except ScheduleNotFoundError as exc:
            return _redirect(request, "schedules", str(exc), error=True)
        return _redirect(request, "schedules", message)

    async def queue_action(self, request: Request) -> Response:
        form = await self._checked_form(request)
        action = _field(form, "action")
        if action not in QUEUE_ACTIONS:
            raise HTTPException(400, f"unknown queue action {action!r}; use {QUEUE_ACTIONS}")
        typed = form.get("queue")
        # Typed by hand: stray spaces around a name are a slip, not part of it.
        queue = typed.strip()[:MAX_TYPED_QUEUE_CHARS] if isinstance(typed, str) else ""
        manager = self._source.manager()
        try:
            if action == "pause":
                await manager.pause_queue(queue)
                message = f"Queue {queue} paused: no worker starts its jobs until it is resumed."
            else:
                await manager.resume_queue(queue)
                message = f"Queue {queue} resumed: workers serving it start its jobs again."
        except InvalidJobOptionsError as exc:
            return await queues_page(
                self._renderer, request, manager, typed=queue, problem=str(exc)
            )
        return _redirect(request, "queues", message)

    async def confirm_bulk(self, request: Request) -> Response:
        """GET: what a bulk action would do, and the form that does it."""
        if self._read_only:
            raise HTTPException(403, _READ_ONLY)
        action = request.query_params.get("action", "")
        name = request.query_params.get("name", "")
        if action not in BULK_ACTIONS or not name:
            raise HTTPException(
                400, "a bulk action needs action=retry or action=delete and a job name"
            )
        counted, more = await count_dead(self._source.manager(), name)
        context = {
            "section": "jobs",
            "action": action,
            "verb": BULK_ACTIONS[action],
            "name": name,
            "count": f"{counted}+" if more else str(counted),
            "none": counted == 0,
        }
        return self._renderer.page(request, "confirm.html", context)

    async def bulk(self, request: Request) -> Response:
        """POST: retry or delete every dead job of one name."""
        form = await self._checked_form(request)
        action, name = _field(form, "action"), _field(form, "name")
        manager = self._source.manager()
        if action == "retry":
            moved = await manager.retry_all(name)
            message = f"Retried {moved} dead jobs named {name}: they are enqueued again."
        elif action == "delete":
            moved = await manager.delete_all(JobState.DEAD, name)
            message = f"Deleted {moved} dead jobs named {name}."
        else:
            raise HTTPException(400, f"unknown bulk action {action!r}; use retry or delete")
        return _redirect(request, "jobs", message, state=JobState.DEAD.value, name=name)
