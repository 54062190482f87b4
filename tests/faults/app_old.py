"""The app as it was before a deploy: no handler for ``faults-new`` jobs.

A worker runs it with ``masa-jobs worker tests.faults.app_old:container``.
"""

from __future__ import annotations

from masa_jobs.containers import BackgroundJobContainer

from . import jobs  # noqa: F401  (the handlers are found by import)

container = BackgroundJobContainer()
