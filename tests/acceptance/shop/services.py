"""The shop's application code: two ways to enqueue, as in MASA's FAQ."""

from __future__ import annotations

from dependency_injector.wiring import Provide, inject

from masa_jobs import BackgroundJobManager, JobManager
from masa_jobs.manager import Delay

from .container import AppContainer
from .jobs import ExportReport, OrderPlaced


class OrderService:
    """Gets the job manager injected (MASA: IBackgroundJobManager in a controller)."""

    @inject
    def __init__(self, jobs: JobManager = Provide[AppContainer.job_manager]) -> None:
        self._jobs = jobs

    async def place_order(
        self, order_id: int, email: str, *, mail_failures: int = 0, delay: Delay = None
    ) -> str:
        order = OrderPlaced(order_id=order_id, email=email, mail_failures=mail_failures)
        return await self._jobs.enqueue(order, delay)

    async def export_report(self, report_id: int, *, hang_first_run: bool = False) -> str:
        return await self._jobs.enqueue(
            ExportReport(report_id=report_id, hang_first_run=hang_first_run)
        )


async def place_order_via_facade(
    order_id: int, email: str, *, mail_failures: int = 0, delay: Delay = None
) -> str:
    """Uses the static facade (MASA: BackgroundJobManager.EnqueueAsync in a service)."""
    order = OrderPlaced(order_id=order_id, email=email, mail_failures=mail_failures)
    return await BackgroundJobManager.enqueue(order, delay)
