from __future__ import annotations

from pydantic import BaseModel

from masa_jobs import BackgroundJob, job_name


@job_name("scoped-a.ping")
class PingA(BaseModel):
    n: int = 0


class PingAJob(BackgroundJob[PingA]):
    async def execute(self, args: PingA) -> None:
        return None
