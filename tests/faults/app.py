"""The fault suite's app: ``masa-jobs worker tests.faults.app:container``.

Its handlers (``jobs.py`` and ``NewWork`` here) append one ledger line per
start and end to the file named by ``MASA_FAULTS_LEDGER``.
"""

from __future__ import annotations

import anyio
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJob, job_name

from . import jobs  # noqa: F401  (the handlers are found by import)
from .jobs import recorded_run

__all__ = ["NewWork", "container"]

container = BackgroundJobContainer()


@job_name("faults-new")
class NewWork(BaseModel):
    """The job type a deploy adds: ``app_old`` has no handler for it."""

    key: str = ""
    sleep: float = 0.0


class NewWorkJob(BackgroundJob[NewWork]):
    async def execute(self, args: NewWork) -> None:
        with recorded_run(args.key):
            if args.sleep:
                await anyio.sleep(args.sleep)
