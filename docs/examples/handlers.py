"""Two handlers for one job, dependencies injected from the app container, a retry.

The CRM is flaky: its first call fails. The job is retried after
``first_wait_duration`` and only the handler that failed runs again, so the
welcome email is sent exactly once.
"""

import anyio
from dependency_injector import providers
from dependency_injector.wiring import Provide, inject
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJobBase, JobInfo, MasaApp, job_name


class Mailer:
    def __init__(self) -> None:
        self.sent: list[str] = []

    async def send(self, to: str, subject: str) -> None:
        self.sent.append(f"{to}: {subject}")


class Crm:
    def __init__(self) -> None:
        self.calls = 0
        self.contacts: list[int] = []

    async def upsert_contact(self, user_id: int) -> None:
        self.calls += 1
        if self.calls == 1:
            raise ConnectionError("CRM unavailable")
        self.contacts.append(user_id)


class AppContainer(BackgroundJobContainer):
    mailer = providers.Singleton(Mailer)
    crm = providers.Singleton(Crm)


@job_name("users.registered")
class UserRegistered(BaseModel):
    user_id: int
    email: str


class SendWelcomeEmail(BackgroundJobBase[UserRegistered]):
    @inject
    def __init__(self, mailer: Mailer = Provide[AppContainer.mailer]) -> None:
        self.mailer = mailer

    async def executing(self, args: UserRegistered) -> None:
        await self.mailer.send(args.email, "Welcome!")


class SyncToCrm(BackgroundJobBase[UserRegistered]):
    @inject
    def __init__(self, crm: Crm = Provide[AppContainer.crm]) -> None:
        self.crm = crm

    async def executing(self, args: UserRegistered) -> None:
        await self.crm.upsert_contact(args.user_id)


async def main() -> JobInfo | None:
    container = AppContainer()
    container.config.from_dict({"options": {"first_wait_duration": 0.1, "wait_duration": 2}})
    MasaApp.build(container)  # also wires this module, so the handlers get their dependencies
    manager = container.job_manager()
    async with MasaApp.lifespan():
        job_id = await manager.enqueue(UserRegistered(user_id=7, email="ada@example.com"))
        info = await manager.get(job_id)
        while info is not None and not info.state.is_finished:
            await anyio.sleep(0.02)
            info = await manager.get(job_id)
    print(f"state={info.state if info else None} attempts={info.attempts if info else 0}")
    print(f"emails sent: {container.mailer().sent}, CRM calls: {container.crm().calls}")
    return info


if __name__ == "__main__":
    anyio.run(main)
