"""The no-op job, for both the worker (``masa-jobs worker bench_tasks:create_container``)
and the enqueueing side. The store comes from the MASA_JOBS_STORE__... variables."""

from __future__ import annotations

import sys
from pathlib import Path

from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJob, job_name

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import task_ran


@job_name("peers.no-op")
class NoOp(BaseModel):
    """No arguments: the comparison measures the framework, not serialisation."""


class NoOpJob(BackgroundJob[NoOp]):
    async def execute(self, args: NoOp) -> None:
        task_ran()


def create_container() -> BackgroundJobContainer:
    return BackgroundJobContainer()
