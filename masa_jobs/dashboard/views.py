"""The dashboard's pages (GET): overview, jobs, one job, recurring jobs, queues, workers."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from ..exceptions import InvalidQueryError
from ..manager import JobManager
from ..queries import EXACT_COUNT_LIMIT
from ..records import JobInfo, JobState
from .chart import chart_start, minute_chart
from .listing import loose_filter, parse_filter
from .render import Renderer
from .source import ManagerSource

__all__ = ["Pages", "queues_page"]


async def queues_page(
    renderer: Renderer,
    request: Request,
    manager: JobManager,
    *,
    typed: str = "",
    problem: str = "",
) -> HTMLResponse:
    """The queues page: the paused queues and the pause form (again, with
    what was typed and why it was refused, after a refused pause: 400)."""
    context = {
        "section": "queues",
        "paused": sorted(await manager.paused_queues()),
        "typed": typed,
        "problem": problem,
    }
    return renderer.page(request, "queues.html", context, status_code=400 if problem else 200)


class Pages:
    """The GET endpoints, on one manager source and renderer."""

    def __init__(self, source: ManagerSource, renderer: Renderer) -> None:
        self._source = source
        self._renderer = renderer

    async def overview(self, request: Request) -> Response:
        manager = self._source.manager()
        store = self._source.store(manager)
        now = await store.now()
        counts = await manager.count()
        chart = minute_chart(await store.finished_per_minute(chart_start(now)), now)
        context = {
            "section": "overview",
            "now": now,
            "counts": counts,
            "exact_limit": EXACT_COUNT_LIMIT,
            "chart": chart,
            "oldest_due_at": await store.oldest_due_at(),
            "paused_queues": sorted(await manager.paused_queues()),
            "workers": await manager.workers(),
        }
        return self._renderer.page(request, "overview.html", context)

    async def jobs(self, request: Request) -> Response:
        try:
            job_filter = parse_filter(request.query_params)
            query = job_filter.query()
        except InvalidQueryError as exc:
            context = {"section": "jobs", "filter": loose_filter(request.query_params)}
            return self._renderer.page(
                request,
                "jobs.html",
                {
                    **context,
                    "jobs": (),
                    "next_cursor": None,
                    "paused_queues": frozenset(),
                    "problem": str(exc),
                },
                status_code=400,
            )
        manager = self._source.manager()
        page = await manager.list_jobs(query)
        context = {
            "section": "jobs",
            "filter": job_filter,
            "jobs": page.items,
            "next_cursor": page.next_cursor,
            # To mark the jobs that wait because their queue is paused.
            "paused_queues": await manager.paused_queues() if page.items else frozenset(),
            "problem": "",
        }
        return self._renderer.page(request, "jobs.html", context)

    async def job(self, request: Request) -> Response:
        job_id = request.query_params.get("id", "")
        manager = self._source.manager()
        info = await manager.get(job_id) if job_id else None
        if info is None:
            return self._renderer.error(
                request,
                404,
                "No such job",
                f"No job has the id {job_id!r}: it may have been deleted, or purged after "
                "its retention time. Find jobs on the jobs page.",
            )
        context = {
            "section": "jobs",
            "job": info,
            "raw_args": await self._raw_args(info),
            "queue_paused": info.queue in await manager.paused_queues(),
        }
        return self._renderer.page(request, "job.html", context)

    async def _raw_args(self, info: JobInfo) -> str | None:
        """The stored payload, when it is not a JSON object (shown as it is)."""
        if info.args is not None:
            return None
        record = await self._source.store(self._source.manager()).get(info.id)
        return None if record is None else record.payload

    async def schedules(self, request: Request) -> Response:
        schedules = await self._source.manager().list_schedules()
        context = {"section": "schedules", "schedules": schedules}
        return self._renderer.page(request, "schedules.html", context)

    async def queues(self, request: Request) -> Response:
        return await queues_page(self._renderer, request, self._source.manager())

    async def workers(self, request: Request) -> Response:
        manager = self._source.manager()
        context = {
            "section": "workers",
            "workers": await manager.workers(),
            "now": await self._source.store(manager).now(),
            "processing": JobState.PROCESSING,
        }
        return self._renderer.page(request, "workers.html", context)
