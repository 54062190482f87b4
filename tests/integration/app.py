"""The app the integration tests run in real ``masa-jobs worker`` processes.

Every completed execution appends one line to the file named by
``MASA_TEST_RECORD_FILE`` (appends of one short line are atomic), so the test
can count executions across processes whatever the store.
"""

from __future__ import annotations

import os

import anyio
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJob, BackgroundScheduleJob, job_name

RECORD_FILE_VARIABLE = "MASA_TEST_RECORD_FILE"

container = BackgroundJobContainer()


@job_name("integration-work")
class Work(BaseModel):
    key: str
    sleep: float = 0.0


def record(event: str, key: str) -> None:
    path = os.environ.get(RECORD_FILE_VARIABLE)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {key} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


class WorkJob(BackgroundJob[Work]):
    async def execute(self, args: Work) -> None:
        if args.sleep:
            record("start", args.key)
            await anyio.sleep(args.sleep)
        record("done", args.key)


class RecordedTick(BackgroundScheduleJob):
    """A recurring job whose schedule the tests add at run time (no class-level id)."""

    async def execute(self) -> None:
        assert self.fire_at is not None
        record("tick", self.fire_at.strftime("%Y-%m-%dT%H:%M:%S"))
