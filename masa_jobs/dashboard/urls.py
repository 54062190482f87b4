"""The dashboard's paths, and links to them that work under any mount prefix.

Links are built from the request's ``root_path`` (the prefix the dashboard
is mounted under) rather than looked up by route name in the application's
router, where the application's own routes could share a name with ours.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import quote, urlencode

from starlette.requests import Request

__all__ = ["PATHS", "href", "static_href"]

PATHS: Final = {
    "overview": "/",
    "jobs": "/jobs",
    "job": "/job",
    "job_action": "/job/action",
    "bulk": "/bulk",
    "schedules": "/schedules",
    "schedule_action": "/schedules/action",
    "queues": "/queues",
    "queue_action": "/queues/action",
    "workers": "/workers",
    "health": "/health",
    "metrics": "/metrics",
    "static": "/static",
}


def href(request: Request, name: str, /, **query: object) -> str:
    """The path of page ``name`` with ``query`` (empty and None values left out)."""
    path = request.scope.get("root_path", "") + PATHS[name]
    params = {key: str(value) for key, value in query.items() if value not in (None, "")}
    return f"{path}?{urlencode(params)}" if params else path


def static_href(request: Request, filename: str) -> str:
    """The path of one of the dashboard's own assets."""
    return f"{request.scope.get('root_path', '')}{PATHS['static']}/{quote(filename)}"
