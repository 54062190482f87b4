"""Looking after jobs: inspect, cancel, and retry a dead job by hand."""

from dataclasses import replace

import anyio
from dependency_injector import providers
from dependency_injector.wiring import Provide, inject
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJob, JobInfo, JobManager, JobQuery, JobState, MasaApp, job_name


class PaymentGateway:
    def __init__(self) -> None:
        self.up = False

    async def capture(self, order_id: int) -> None:
        if not self.up:
            raise ConnectionError("payment gateway down")


class AppContainer(BackgroundJobContainer):
    gateway = providers.Singleton(PaymentGateway)


@job_name("billing.capture-payment")
class CapturePayment(BaseModel):
    order_id: int


class CapturePaymentJob(BackgroundJob[CapturePayment]):
    @inject
    def __init__(self, gateway: PaymentGateway = Provide[AppContainer.gateway]) -> None:
        self.gateway = gateway

    async def execute(self, args: CapturePayment) -> None:
        await self.gateway.capture(args.order_id)


async def wait_until_finished(manager: JobManager, job_id: str) -> JobInfo:
    while True:
        info = await manager.get(job_id)
        if info is None:
            raise LookupError(f"no job {job_id}")
        if info.state.is_finished:
            return info
        await anyio.sleep(0.02)


async def dead_captures(manager: JobManager) -> list[JobInfo]:
    """Every dead payment capture, a page at a time, oldest first."""
    query = JobQuery.of(JobState.DEAD, name="billing.capture-payment", newest_first=False)
    found: list[JobInfo] = []
    while True:
        page = await manager.list_jobs(query)
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        query = replace(query, cursor=page.next_cursor)


async def main() -> dict[str, JobInfo]:
    container = AppContainer()
    container.config.from_dict({"options": {"max_retry_times": 1, "first_wait_duration": 0.05}})
    MasaApp.build(container)
    manager = container.job_manager()
    async with MasaApp.lifespan():
        later = await manager.enqueue(CapturePayment(order_id=1), delay=3600)
        cancelled = await manager.cancel(later)  # a running one is stopped too

        failing = await manager.enqueue(CapturePayment(order_id=2))
        dead = await wait_until_finished(manager, failing)  # 2 attempts, then dead
        print(f"{dead.state} after {dead.attempts} attempts; last error:\n{dead.last_error}")
        assert [info.id for info in await dead_captures(manager)] == [failing]
        for event in dead.history:  # one event per attempt that ended
            print(event.attempt, event.state, event.error is not None)

        container.gateway().up = True  # the cause is fixed: run the dead job again
        await manager.retry(failing)
        retried = await wait_until_finished(manager, failing)

        counts = await manager.count()
        print({state.value: n for state, n in counts.items() if n})
        print([(info.args, info.state.value) for info in await manager.list(JobState.SUCCEEDED)])
    return {"cancelled": cancelled, "dead": dead, "retried": retried}


if __name__ == "__main__":
    anyio.run(main)
