from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

from masa_jobs import BackgroundJob

TReport = TypeVar("TReport", bound=BaseModel)


class MonthlyReport(BaseModel):
    month: int


class ReportJob(BackgroundJob[TReport]):
    """A generic intermediate base: not a handler itself."""

    async def execute(self, args: TReport) -> None:
        await self.render(args)

    async def render(self, args: TReport) -> None:
        return None


class MonthlyReportJob(ReportJob[MonthlyReport]):
    pass
