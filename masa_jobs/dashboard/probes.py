"""``/health`` (JSON, 200 or 503) and ``/metrics`` (Prometheus text) beside the pages.

Both sit behind the same access rule as the pages: a probe or scraper on
another machine needs an ``authorize`` hook that lets it in. The health and
metrics modules are imported when first asked for, so a dashboard that is
never probed never loads them (nor prometheus-client).
"""

from __future__ import annotations

import math

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ..exceptions import NotSupportedError
from .source import ManagerSource

__all__ = ["Probes"]


class Probes:
    """The health and metrics endpoints, on one manager source."""

    def __init__(self, source: ManagerSource) -> None:
        self._source = source

    async def health(self, request: Request) -> Response:
        """200 when healthy, 503 when not; ``?max_due_age=SECONDS`` makes an
        overdue queue unhealthy."""
        from ..health import check_health

        max_due_age = _seconds(request.query_params.get("max_due_age"))
        report = await check_health(self._source.manager(), max_due_age=max_due_age)
        return JSONResponse(report.to_dict(), status_code=200 if report.healthy else 503)

    async def metrics(self, request: Request) -> Response:
        try:
            from ..metrics import render_metrics

            body, content_type = await render_metrics(self._source.manager())
        except (ImportError, NotSupportedError) as exc:
            # prometheus-client is not installed (the ``metrics`` extra).
            return PlainTextResponse(str(exc), status_code=501)
        return Response(body, headers={"content-type": content_type})


def _seconds(text: str | None) -> float | None:
    if text is None or not text.strip():
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds <= 0:
        raise HTTPException(400, f"max_due_age must be a number of seconds above 0, not {text!r}")
    return seconds
