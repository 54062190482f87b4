"""Job control: queues, priorities, pausing, unique jobs, timeouts, cancelling a running job."""

from datetime import timedelta

import anyio
import anyio.lowlevel
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJob, JobInfo, JobManager, JobState, MasaApp, job_name, job_options

RAN: list[str] = []


@job_name("billing.charge-card")
@job_options(queue="critical", timeout=30)
class ChargeCard(BaseModel):
    order_id: int


class ChargeCardJob(BackgroundJob[ChargeCard]):
    async def execute(self, args: ChargeCard) -> None:
        RAN.append(f"charged order {args.order_id}")


@job_name("reports.monthly")
@job_options(queue="reports", unique_key=lambda args: args.month)
class MonthlyReport(BaseModel):
    month: str


class MonthlyReportJob(BackgroundJob[MonthlyReport]):
    async def execute(self, args: MonthlyReport) -> None:
        RAN.append(f"report for {args.month}")


@job_name("media.transcode")
class Transcode(BaseModel):
    video: str


class TranscodeJob(BackgroundJob[Transcode]):
    async def execute(self, args: Transcode) -> None:
        try:
            await anyio.sleep(3600)  # a long job, cancelled below
        finally:
            with anyio.CancelScope(shield=True):  # clean-up that must finish
                await self.remove_partial_output(args.video)

    async def remove_partial_output(self, video: str) -> None:
        await anyio.lowlevel.checkpoint()
        RAN.append(f"cleaned up after {video}")


async def wait_for(manager: JobManager, job_id: str, *states: JobState) -> JobInfo:
    while True:
        info = await manager.get(job_id)
        if info is not None and info.state in states:
            return info
        await anyio.sleep(0.01)


async def main() -> dict[str, JobInfo]:
    container = BackgroundJobContainer()
    # This process's worker serves "critical" first, then "reports" (two at
    # most at once), then "default".
    container.config.from_dict({"options": {"queues": ["critical", "reports:2", "default"]}})
    MasaApp.build(container)
    manager = container.job_manager()

    await manager.pause_queue("reports")  # say, while the reporting database migrates
    report = await manager.enqueue(MonthlyReport(month="2026-11"))
    again = await manager.enqueue(MonthlyReport(month="2026-11"))  # a second click
    assert again == report  # one report per month, however many clicks
    assert again.duplicate

    later = await manager.enqueue(ChargeCard(order_id=2), priority=5)
    first = await manager.enqueue(ChargeCard(order_id=1))  # priority 0: claimed first
    async with MasaApp.lifespan():
        charged = await wait_for(manager, later, JobState.SUCCEEDED)
        paused = await manager.get(report)
        assert paused is not None
        assert paused.state is JobState.ENQUEUED  # its queue is paused

        await manager.resume_queue("reports")
        reported = await wait_for(manager, report, JobState.SUCCEEDED)

        video = await manager.enqueue(Transcode(video="intro.mp4"), timeout=timedelta(hours=1))
        await wait_for(manager, video, JobState.PROCESSING)
        await manager.cancel(video)  # stops the running handler; it is not retried
        cancelled = await wait_for(manager, video, JobState.CANCELLED)
        charged_first = await wait_for(manager, first, JobState.SUCCEEDED)
    return {
        "charged first": charged_first,
        "charged": charged,
        "reported": reported,
        "cancelled": cancelled,
    }
