from __future__ import annotations

from pydantic import BaseModel

from masa_jobs import BackgroundJob, BackgroundScheduleJob, job_name


@job_name("scoped-b.ping")
class PingB(BaseModel):
    n: int = 0


class PingBJob(BackgroundJob[PingB]):
    async def execute(self, args: PingB) -> None:
        return None


class NightlyB(BackgroundScheduleJob):
    id = "scoped-b.nightly"
    cron_expression = "0 0 29 2 *"  # 29 February: never while a test runs, in practice

    async def execute(self) -> None:
        return None
