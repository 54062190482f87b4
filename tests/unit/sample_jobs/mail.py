from __future__ import annotations

from pydantic import BaseModel

from masa_jobs import BackgroundJob, BackgroundJobBase, job_name


@job_name("sample-jobs.send-mail")
class SendMail(BaseModel):
    to: str


class SendMailJob(BackgroundJobBase[SendMail]):
    async def executing(self, args: SendMail) -> None:
        return None


class AuditMailJob(BackgroundJob[SendMail]):
    async def execute(self, args: SendMail) -> None:
        return None
