"""The operator dashboard: an ASGI (Starlette) app on the operator queries.

Mount it in your application (``app.mount("/jobs", dashboard(container))``)
or serve it alone with ``masa-jobs dashboard APP``. It shows the counts per
state, the jobs (filtered, paged by cursor), one job with its history, the
recurring jobs and the live workers, and lets operators retry, cancel and
delete jobs and trigger, pause and resume recurring jobs.

Safe by default: it answers requests from this machine only unless an
``authorize`` hook says otherwise, every action is a POST that carries a
CSRF token, job data is always escaped, and a Content-Security-Policy allows
no script and no inline style. ``read_only=True`` shows no action at all.

It needs the ``dashboard`` extra (Starlette, Jinja2, python-multipart):
``pip install 'masa-jobs[dashboard]'``.
"""

from __future__ import annotations

# First: a missing extra is one clear ImportError, not Starlette's own.
from . import _requirements  # noqa: F401
from .app import dashboard
from .security import Authorize

__all__ = ["Authorize", "dashboard"]
