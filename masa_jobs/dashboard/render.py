"""Pages from the package's Jinja2 templates, every value escaped.

Autoescaping is on for every template and no template marks job data
``|safe``: a job's args, errors, names, headers and id always reach the
browser as text. Undefined names fail loudly (``StrictUndefined``), so a
template mistake is a test failure, not a blank cell.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined, pass_context
from starlette.requests import Request
from starlette.responses import HTMLResponse

from ..records import MAX_PRIORITY, MIN_PRIORITY, JobState, utcnow
from . import formatting
from .security import CSRF_FIELD, CsrfSigner
from .urls import href, static_href

__all__ = ["Renderer"]

# Flash messages ride in the redirect's query string; a longer one is cut.
MAX_MESSAGE_CHARS = 500
FLASH_LEVELS = frozenset({"ok", "error"})


@pass_context
def _href(context: Mapping[str, Any], name: str, /, **query: object) -> str:
    request: Request = context["request"]
    return href(request, name, **query)


@pass_context
def _static(context: Mapping[str, Any], filename: str) -> str:
    request: Request = context["request"]
    return static_href(request, filename)


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("masa_jobs.dashboard", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        href=_href,
        static=_static,
        states=tuple(JobState),
        csrf_field=CSRF_FIELD,
        min_priority=MIN_PRIORITY,
        max_priority=MAX_PRIORITY,
    )
    env.filters.update(
        when=formatting.when,
        ago=formatting.ago,
        between=formatting.between,
        duration=formatting.duration,
        summary=formatting.error_summary,
        pretty=formatting.pretty_json,
        compact=formatting.compact_json,
    )
    return env


class Renderer:
    """Renders a page with what every page shows: navigation, flash message, CSRF token."""

    def __init__(self, *, csrf: CsrfSigner, read_only: bool) -> None:
        self._env = _environment()
        self._csrf = csrf
        self._read_only = read_only

    def page(
        self,
        request: Request,
        template: str,
        context: Mapping[str, Any] | None = None,
        *,
        status_code: int = 200,
    ) -> HTMLResponse:
        browser_id, new = self._csrf.browser_id(request)
        level = request.query_params.get("level", "ok")
        values = {
            "request": request,
            "now": utcnow(),
            "read_only": self._read_only,
            "csrf_token": self._csrf.token(browser_id),
            "message": request.query_params.get("message", "")[:MAX_MESSAGE_CHARS],
            "level": level if level in FLASH_LEVELS else "ok",
            "section": "",
            **(context or {}),
        }
        body = self._env.get_template(template).render(values)
        # Pages show live data and carry tokens: never from a cache.
        response = HTMLResponse(body, status_code, headers={"cache-control": "no-store"})
        if new:
            self._csrf.remember(response, request, browser_id)
        return response

    def error(self, request: Request, status_code: int, title: str, message: str) -> HTMLResponse:
        """A page that says what went wrong and how to go on."""
        return self.page(
            request,
            "error.html",
            {"title": title, "problem": message},
            status_code=status_code,
        )
