from datetime import timedelta

import anyio
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJobBase, BackgroundJobManager, JobInfo, MasaApp, job_name


@job_name("signup.welcome-email")  # the name jobs are stored under; optional
class SendWelcomeEmail(BaseModel):
    email: str


class SendWelcomeEmailJob(BackgroundJobBase[SendWelcomeEmail]):
    async def executing(self, args: SendWelcomeEmail) -> None:
        print(f"welcome email sent to {args.email}")


async def main() -> JobInfo | None:
    container = BackgroundJobContainer()
    container.config.from_dict({"store": {"backend": "memory"}, "options": {"max_retry_times": 3}})
    MasaApp.build(container)  # once, at start-up: every static caller now uses this container

    async with MasaApp.lifespan():  # opens the store and runs the worker in the background
        job_id = await BackgroundJobManager.enqueue(
            SendWelcomeEmail(email="ada@example.com"), delay=timedelta(seconds=0.2)
        )
        info = await container.job_manager().get(job_id)
        while info is not None and not info.state.is_finished:  # a web app serves requests here
            await anyio.sleep(0.05)
            info = await container.job_manager().get(job_id)
    print(f"job {job_id}: {info.state if info else 'gone'}")
    return info


if __name__ == "__main__":
    anyio.run(main)
