"""An application container that embeds BackgroundJobContainer instead of extending it."""

import anyio
from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJob, BackgroundJobManager, JobInfo, JobManager, MasaApp, job_name


class Ledger:
    def __init__(self) -> None:
        self.refunds: list[int] = []


class Platform(containers.DeclarativeContainer):
    wiring_config = containers.WiringConfiguration(modules=[__name__], auto_wire=False)

    config = providers.Configuration()
    jobs = providers.Container(BackgroundJobContainer, config=config.jobs)
    ledger = providers.Singleton(Ledger)


@job_name("billing.refund")
class IssueRefund(BaseModel):
    order_id: int


class IssueRefundJob(BackgroundJob[IssueRefund]):
    @inject
    def __init__(self, ledger: Ledger = Provide[Platform.ledger]) -> None:
        self.ledger = ledger

    async def execute(self, args: IssueRefund) -> None:
        self.ledger.refunds.append(args.order_id)


@inject
async def refund(order_id: int, manager: JobManager = Provide[Platform.jobs.job_manager]) -> str:
    return await manager.enqueue(IssueRefund(order_id=order_id))


async def main() -> list[JobInfo | None]:
    platform = Platform()
    platform.config.from_dict({"jobs": {"options": {"poll_interval": 1}}})
    MasaApp.build(platform)  # finds the embedded job container
    manager = platform.jobs.job_manager()
    async with MasaApp.lifespan():
        job_ids = [await refund(1), await BackgroundJobManager.enqueue(IssueRefund(order_id=2))]
        infos = [await manager.get(job_id) for job_id in job_ids]
        while any(info is None or not info.state.is_finished for info in infos):
            await anyio.sleep(0.02)
            infos = [await manager.get(job_id) for job_id in job_ids]
    print(f"refunded orders {platform.ledger().refunds}")
    return infos


if __name__ == "__main__":
    anyio.run(main)
