"""Testing your own code that enqueues jobs, with masa_jobs.testing.

In a project, the app part lives in your modules and the fixtures in
conftest.py; here they share one file so that it runs as it is:

    pytest docs/examples/test_with_masa_jobs.py

No worker and no server: the inline mode runs each job as it is enqueued,
the manual mode records jobs and runs them when the test says so.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJob, BackgroundScheduleJob, JobManager, MasaApp, job_name
from masa_jobs.testing import (
    InlineJobs,
    ManualJobs,
    inline_jobs_fixture,
    manual,
    manual_jobs_fixture,
)

# -- the app: its container, jobs and a service that enqueues -------------------------


class Mailer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []

    def send(self, to: str, text: str) -> None:
        if to.endswith("@invalid"):
            raise ValueError(f"cannot mail {to}")
        self.sent.append((to, text))


class AppContainer(BackgroundJobContainer):
    wiring_config = containers.WiringConfiguration(modules=[__name__], auto_wire=False)

    mailer = providers.Singleton(Mailer)


@job_name("testing-example.welcome")
class SendWelcomeEmail(BaseModel):
    email: str


@job_name("testing-example.feedback")
class AskForFeedback(BaseModel):
    email: str


class SendWelcomeEmailJob(BackgroundJob[SendWelcomeEmail]):
    @inject
    def __init__(self, mailer: Mailer = Provide[AppContainer.mailer]) -> None:
        self.mailer = mailer

    async def execute(self, args: SendWelcomeEmail) -> None:
        self.mailer.send(args.email, "Welcome!")


class AskForFeedbackJob(BackgroundJob[AskForFeedback]):
    @inject
    def __init__(self, mailer: Mailer = Provide[AppContainer.mailer]) -> None:
        self.mailer = mailer

    async def execute(self, args: AskForFeedback) -> None:
        self.mailer.send(args.email, "How was your first week?")


class WeeklyNewsletter(BackgroundScheduleJob):
    id = "testing-example.newsletter"
    cron_expression = "0 9 * * 1"  # Mondays at 09:00 UTC

    @inject
    def __init__(self, mailer: Mailer = Provide[AppContainer.mailer]) -> None:
        self.mailer = mailer

    async def execute(self) -> None:
        self.mailer.send("subscribers@example.com", "This week's news")


class SignupService:
    @inject
    def __init__(self, jobs: JobManager = Provide[AppContainer.job_manager]) -> None:
        self._jobs = jobs

    async def sign_up(self, email: str) -> None:
        await self._jobs.enqueue(SendWelcomeEmail(email=email))
        await self._jobs.enqueue(AskForFeedback(email=email), delay=timedelta(days=7))


# -- conftest.py: a fresh app per test, in inline or manual mode -----------------------


def make_container() -> AppContainer:
    container = AppContainer()
    container.config.from_dict({"options": {"first_wait_duration": 60}})
    return container


inline_jobs = inline_jobs_fixture(make_container, name="inline_jobs")
jobs = manual_jobs_fixture(make_container, name="jobs")


# -- the tests ---------------------------------------------------------------------------

pytestmark = pytest.mark.anyio


async def test_sign_up_mails_at_once_in_inline_mode(inline_jobs: InlineJobs) -> None:
    await SignupService().sign_up("ada@example.com")

    # Both jobs ran during sign_up(), the delayed one too.
    assert MasaApp.root().mailer().sent == [
        ("ada@example.com", "Welcome!"),
        ("ada@example.com", "How was your first week?"),
    ]
    assert inline_jobs.performed(SendWelcomeEmail) == [SendWelcomeEmail(email="ada@example.com")]


async def test_a_failing_job_raises_from_enqueue_in_inline_mode(inline_jobs: InlineJobs) -> None:
    with pytest.raises(ValueError, match="cannot mail bob@invalid"):
        await SignupService().sign_up("bob@invalid")


async def test_sign_up_enqueues_in_manual_mode(jobs: ManualJobs) -> None:
    await SignupService().sign_up("ada@example.com")

    jobs.assert_enqueued(SendWelcomeEmail, email="ada@example.com")
    jobs.assert_enqueued(AskForFeedback, email="ada@example.com")
    assert MasaApp.root().mailer().sent == []  # nothing ran yet

    await jobs.drain()  # runs what is due now: the welcome email
    assert MasaApp.root().mailer().sent == [("ada@example.com", "Welcome!")]
    jobs.assert_not_enqueued(SendWelcomeEmail)

    await jobs.advance(timedelta(days=7))  # the feedback request falls due
    result = await jobs.drain()
    assert ("ada@example.com", "How was your first week?") in MasaApp.root().mailer().sent
    assert result.failed == 0


async def test_the_newsletter_goes_out_on_monday() -> None:
    container = make_container()
    MasaApp.build(container)
    try:
        with manual(container, start=datetime(2030, 1, 7, 8, 0, tzinfo=UTC)) as jobs:
            await jobs.advance(timedelta(hours=1))  # Monday 09:00: the cron tick fires
            await jobs.drain()
    finally:
        MasaApp.reset()

    assert container.mailer().sent == [("subscribers@example.com", "This week's news")]
