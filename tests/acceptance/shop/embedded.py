"""A second app whose container embeds BackgroundJobContainer (providers.Container)."""

from __future__ import annotations

from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJob, BackgroundJobManager, JobManager, job_name

from .recorders import Ledger


class ShopPlatform(containers.DeclarativeContainer):
    wiring_config = containers.WiringConfiguration(modules=[__name__], auto_wire=False)

    config = providers.Configuration()
    jobs = providers.Container(BackgroundJobContainer, config=config.jobs)
    refunds = providers.Singleton(Ledger)


@job_name("shop.refund-issued")
class RefundIssued(BaseModel):
    order_id: int
    amount_cents: int


class BookRefund(BackgroundJob[RefundIssued]):
    @inject
    def __init__(self, refunds: Ledger = Provide[ShopPlatform.refunds]) -> None:
        self.refunds = refunds

    async def execute(self, args: RefundIssued) -> None:
        self.refunds.book(args.order_id, -args.amount_cents)


class RefundService:
    @inject
    def __init__(self, jobs: JobManager = Provide[ShopPlatform.jobs.job_manager]) -> None:
        self._jobs = jobs

    async def refund(self, order_id: int, amount_cents: int) -> str:
        return await self._jobs.enqueue(RefundIssued(order_id=order_id, amount_cents=amount_cents))


async def refund_via_facade(order_id: int, amount_cents: int) -> str:
    return await BackgroundJobManager.enqueue(
        RefundIssued(order_id=order_id, amount_cents=amount_cents)
    )
