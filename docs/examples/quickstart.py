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


async def main() -> JobInfo:
    container = BackgroundJobContainer()
    container.config.from_dict({"store": {"backend": "memory"}, "options": {"max_retry_times": 3}})
    MasaApp.build(container)  # once, at start-up: every static caller now uses this container

    async with MasaApp.lifespan():  # opens the store and runs the worker in the background
        job_id = await BackgroundJobManager.enqueue(
            SendWelcomeEmail(email="ada@example.com"), delay=timedelta(seconds=0.2)
        )
        # A web app would serve requests here; this script waits for the job to finish.
        info = await BackgroundJobManager.wait(job_id, timeout=timedelta(seconds=10))
    print(f"job {job_id}: {info.state}")
    return info


if __name__ == "__main__":
    anyio.run(main)
