"""masa_jobs.testing: a user's service tested in inline and manual mode.

The "user app" below is what a project would have: a container extending
the job container with its own mailer, handlers with the mailer injected,
a service with the job manager injected, a function using the static facade,
and a recurring job declared in its class. Its cron fires at 12:30 UTC on 29
February only, so the other tests of the session (which declare every
imported schedule) never see it fire; the manual mode's fake clock starts
just before it.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from dependency_injector import containers, providers
from dependency_injector.wiring import Provide, inject
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import (
    BackgroundJob,
    BackgroundJobManager,
    BackgroundScheduleJob,
    JobManager,
    JobState,
    MasaApp,
    MasaNotBuiltError,
    NotSupportedError,
    UnknownJobError,
    current_job,
)
from masa_jobs.testing import (
    DrainResult,
    FakeClock,
    InlineJobs,
    ManualJobs,
    inline,
    inline_jobs_fixture,
    manual,
    manual_jobs_fixture,
)

from . import support

pytestmark = pytest.mark.anyio

LEAP_DAY_NOON = datetime(2028, 2, 29, 12, 0, tzinfo=UTC)
FIRST_WAIT = timedelta(seconds=60)

# -- the user's app ----------------------------------------------------------------------


class MailServerDown(ConnectionError):
    """The mail server refused a message."""


class Mailer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str]] = []
        self.failures = 0  # how many more sends fail

    def send(self, to: str, subject: str) -> None:
        if self.failures:
            self.failures -= 1
            raise MailServerDown(f"could not mail {to}")
        self.sent.append((to, subject))


class ShopContainer(BackgroundJobContainer):
    wiring_config = containers.WiringConfiguration(modules=[__name__], auto_wire=False)

    mailer = providers.Singleton(Mailer)


class SendWelcomeEmail(BaseModel):
    email: str


class RemindUser(BaseModel):
    email: str
    days: int = 1


class SendWelcomeEmailJob(BackgroundJob[SendWelcomeEmail]):
    @inject
    def __init__(self, mailer: Mailer = Provide[ShopContainer.mailer]) -> None:
        self.mailer = mailer

    async def execute(self, args: SendWelcomeEmail) -> None:
        self.mailer.send(args.email, f"Welcome! (job attempt {current_job().attempt})")


class RemindUserJob(BackgroundJob[RemindUser]):
    @inject
    def __init__(self, mailer: Mailer = Provide[ShopContainer.mailer]) -> None:
        self.mailer = mailer

    async def execute(self, args: RemindUser) -> None:
        self.mailer.send(args.email, f"Still there after {args.days} day(s)?")


class WeeklyDigest(BackgroundScheduleJob):
    id = "unit-testing.weekly-digest"
    cron_expression = "30 12 29 2 *"

    @inject
    def __init__(self, mailer: Mailer = Provide[ShopContainer.mailer]) -> None:
        self.mailer = mailer

    async def execute(self) -> None:
        assert self.fire_at is not None
        self.mailer.send("all@example.com", f"digest of {self.fire_at.isoformat()}")


class SignupService:
    @inject
    def __init__(self, jobs: JobManager = Provide[ShopContainer.job_manager]) -> None:
        self._jobs = jobs

    async def sign_up(self, email: str) -> str:
        job_id = await self._jobs.enqueue(SendWelcomeEmail(email=email))
        await self._jobs.enqueue(RemindUser(email=email), delay=timedelta(days=1))
        return job_id


async def sign_up_via_facade(email: str) -> str:
    return await BackgroundJobManager.enqueue(SendWelcomeEmail(email=email))


def make_container(**options: object) -> ShopContainer:
    container = ShopContainer()
    container.config.from_dict({"options": {"max_retry_times": 1, **options}})
    return container


@pytest.fixture
def container() -> Iterator[ShopContainer]:
    built = make_container()
    MasaApp.build(built)
    yield built
    MasaApp.reset()


# -- inline mode -------------------------------------------------------------------------


async def test_inline_runs_the_job_at_once_with_its_injected_dependencies(
    container: ShopContainer,
) -> None:
    with inline(container) as jobs:
        await SignupService().sign_up("ada@example.com")

    # The delayed reminder ran at once too.
    assert container.mailer().sent == [
        ("ada@example.com", "Welcome! (job attempt 1)"),
        ("ada@example.com", "Still there after 1 day(s)?"),
    ]
    assert jobs.ran == [
        SendWelcomeEmail(email="ada@example.com"),
        RemindUser(email="ada@example.com"),
    ]
    assert jobs.performed(RemindUser) == [RemindUser(email="ada@example.com")]


async def test_inline_works_through_the_static_facade(container: ShopContainer) -> None:
    with inline() as jobs:
        job_id = await sign_up_via_facade("bob@example.com")

    assert len(job_id) == 32
    assert jobs.performed(SendWelcomeEmail) == [SendWelcomeEmail(email="bob@example.com")]
    assert container.mailer().sent == [("bob@example.com", "Welcome! (job attempt 1)")]


async def test_inline_raises_the_handlers_own_exception(container: ShopContainer) -> None:
    container.mailer().failures = 1
    with inline(container), pytest.raises(MailServerDown, match="could not mail ada"):
        await sign_up_via_facade("ada@example.com")

    assert container.mailer().sent == []


async def test_inline_runs_every_handler_before_raising(container: ShopContainer) -> None:
    support.FAILURES["k"] = 1
    with inline(container), pytest.raises(RuntimeError, match="flaky failure for k"):
        await BackgroundJobManager.enqueue(support.Flaky(key="k"))

    assert sorted(support.CALLS) == [("failing", "k"), ("steady", "k")]


async def test_inline_jobs_can_be_looked_up_and_waited_for(container: ShopContainer) -> None:
    container.mailer().failures = 1
    with inline(container):
        manager = MasaApp.job_manager()
        with pytest.raises(MailServerDown):
            await manager.enqueue(SendWelcomeEmail(email="ada@example.com"))
        job_id = await sign_up_via_facade("bob@example.com")

        info = await manager.wait(job_id, timeout=1)
        [failed] = await manager.list(JobState.DEAD)

    assert (info.state, info.attempts, info.args) == (
        JobState.SUCCEEDED,
        1,
        {"email": "bob@example.com"},
    )
    assert failed.args == {"email": "ada@example.com"}
    assert failed.last_error is not None
    assert "MailServerDown: could not mail ada@example.com" in failed.last_error


async def test_inline_refuses_what_enqueue_refuses(container: ShopContainer) -> None:
    class Unregistered(BaseModel):
        x: int

    with inline(container) as jobs, pytest.raises(UnknownJobError):
        await BackgroundJobManager.enqueue(Unregistered(x=1))
    assert jobs.ran == []


async def test_the_modes_end_with_their_block(container: ShopContainer) -> None:
    real = container.job_manager()
    with inline(container) as jobs:
        assert container.job_manager() is jobs.manager
        assert container.job_store() is jobs.store
    with manual(container) as recorded:
        assert MasaApp.job_manager() is recorded.manager
    assert container.job_manager() is real
    assert MasaApp.job_manager() is real


# -- manual mode -------------------------------------------------------------------------


async def test_manual_records_jobs_and_asserts_on_them(container: ShopContainer) -> None:
    with manual(container) as jobs:
        await SignupService().sign_up("ada@example.com")

        found = jobs.assert_enqueued(SendWelcomeEmail, email="ada@example.com")
        jobs.assert_enqueued(RemindUser)
        jobs.assert_not_enqueued(SendWelcomeEmail, email="bob@example.com")
        assert found == SendWelcomeEmail(email="ada@example.com")
        assert jobs.enqueued(RemindUser) == [RemindUser(email="ada@example.com")]
        [reminder] = jobs.jobs(RemindUser)
        assert reminder.next_try_at == jobs.now + timedelta(days=1)
    assert container.mailer().sent == []


async def test_a_failed_assertion_lists_the_waiting_jobs(container: ShopContainer) -> None:
    with manual(container) as jobs:
        await sign_up_via_facade("ada@example.com")
        await BackgroundJobManager.enqueue(RemindUser(email="ada@example.com"), delay=3600)

        with pytest.raises(AssertionError) as raised:
            jobs.assert_enqueued(SendWelcomeEmail, email="bob@example.com")
        message = str(raised.value)
        assert "no waiting SendWelcomeEmail(email='bob@example.com') job; 2 waiting:" in message
        assert '{"email":"ada@example.com"} (due now, attempt 0)' in message
        assert "(due in 1:00:00, attempt 0)" in message

        with pytest.raises(AssertionError, match=r"found 1: \[\{'email': 'ada@example.com'\}\]"):
            jobs.assert_not_enqueued(SendWelcomeEmail, email="ada@example.com")
        with pytest.raises(TypeError, match="SendWelcomeEmail has no field 'emial'"):
            jobs.assert_enqueued(SendWelcomeEmail, emial="ada@example.com")

        jobs.clear()
        with pytest.raises(AssertionError, match="no job is waiting"):
            jobs.assert_enqueued(SendWelcomeEmail)


async def test_drain_runs_what_is_due_and_advance_brings_the_delayed(
    container: ShopContainer,
) -> None:
    # Without schedules: the daily ticks of other test modules' classes stay out.
    with manual(container, schedules=False) as jobs:
        await SignupService().sign_up("ada@example.com")

        assert await jobs.drain() == DrainResult(ran=1, succeeded=1)
        assert container.mailer().sent == [("ada@example.com", "Welcome! (job attempt 1)")]
        jobs.assert_not_enqueued(SendWelcomeEmail)
        [welcome] = jobs.jobs(SendWelcomeEmail)
        assert welcome.state is JobState.SUCCEEDED

        await jobs.advance(timedelta(hours=23))
        assert await jobs.drain() == DrainResult()
        await jobs.advance(timedelta(hours=1))
        assert await jobs.drain() == DrainResult(ran=1, succeeded=1)
    assert container.mailer().sent[-1] == ("ada@example.com", "Still there after 1 day(s)?")


async def test_a_retry_falls_due_after_the_first_wait(container: ShopContainer) -> None:
    container.mailer().failures = 1
    with manual(container, schedules=False) as jobs:
        job_id = await sign_up_via_facade("ada@example.com")

        first = await jobs.drain()
        assert (first.ran, first.failed) == (1, 1)
        assert "MailServerDown: could not mail ada@example.com" in first.errors[0]
        jobs.assert_enqueued(SendWelcomeEmail, email="ada@example.com")  # waits for its retry

        await jobs.advance(FIRST_WAIT - timedelta(seconds=1))
        assert await jobs.drain() == DrainResult()
        await jobs.advance(timedelta(seconds=1))
        assert await jobs.drain() == DrainResult(ran=1, succeeded=1)

        info = await MasaApp.job_manager().get(job_id)
    assert info is not None
    assert (info.state, info.attempts) == (JobState.SUCCEEDED, 2)
    assert container.mailer().sent == [("ada@example.com", "Welcome! (job attempt 2)")]


async def test_waiting_in_manual_mode_needs_a_drain_first(container: ShopContainer) -> None:
    with manual(container, schedules=False) as jobs:
        job_id = await sign_up_via_facade("ada@example.com")
        manager = MasaApp.job_manager()

        with pytest.raises(NotSupportedError, match=r"is enqueued, and in masa_jobs\.testing"):
            await manager.wait(job_id, timeout=1)
        await jobs.drain()

        info = await manager.wait(job_id, timeout=1)
    assert info.state is JobState.SUCCEEDED


async def test_a_job_dead_after_its_retries_is_counted(container: ShopContainer) -> None:
    container.mailer().failures = 2  # max_retry_times is 1: two attempts
    with manual(container, schedules=False) as jobs:
        await sign_up_via_facade("ada@example.com")
        await jobs.drain()
        await jobs.advance(FIRST_WAIT)

        result = await jobs.drain()

        assert (result.ran, result.dead) == (1, 1)
        [info] = jobs.jobs(SendWelcomeEmail)
        assert info.state is JobState.DEAD


async def test_advance_fires_the_cron_ticks_of_declared_schedules(
    container: ShopContainer,
) -> None:
    with manual(container, start=LEAP_DAY_NOON) as jobs:
        await jobs.advance(timedelta(minutes=29))
        assert [i for i in jobs.jobs() if i.name == f"schedule:{WeeklyDigest.id}"] == []

        assert await jobs.advance(timedelta(minutes=2)) == LEAP_DAY_NOON + timedelta(minutes=31)
        [tick] = [i for i in jobs.jobs() if i.name == f"schedule:{WeeklyDigest.id}"]
        assert tick.next_try_at == LEAP_DAY_NOON + timedelta(minutes=30)  # at its own time

        result = await jobs.drain()
    assert result.succeeded >= 1  # other test modules may declare ticks in that minute
    digest = ("all@example.com", "digest of 2028-02-29T12:30:00+00:00")
    assert container.mailer().sent == [digest]


async def test_without_schedules_no_declared_tick_fires(container: ShopContainer) -> None:
    with manual(container, start=LEAP_DAY_NOON, schedules=False) as jobs:
        await jobs.advance(timedelta(hours=1))

        assert jobs.jobs() == []
        assert await jobs.drain() == DrainResult()
        assert await MasaApp.job_manager().list_schedules() == []


async def test_drain_stops_at_its_limit(container: ShopContainer) -> None:
    with manual(container) as jobs:
        for n in range(3):
            await sign_up_via_facade(f"user{n}@example.com")

        with pytest.raises(RuntimeError, match="drain\\(\\) ran 2 jobs and more are due"):
            await jobs.drain(limit=2)
        assert len(jobs.enqueued(SendWelcomeEmail)) == 1
        assert await jobs.drain() == DrainResult(ran=1, succeeded=1)


async def test_the_configured_store_is_never_reached() -> None:
    # Nothing listens on port 1: a job that reached this store would fail.
    container = make_container()
    container.config.from_dict(
        {"store": {"backend": "postgres", "dsn": "postgresql://app@127.0.0.1:1/app"}}
    )
    MasaApp.build(container)
    with manual(container, schedules=False) as jobs:
        await sign_up_via_facade("ada@example.com")
        assert await jobs.drain() == DrainResult(ran=1, succeeded=1)
    with inline(container):
        await sign_up_via_facade("bob@example.com")
    assert [to for to, _ in container.mailer().sent] == ["ada@example.com", "bob@example.com"]


# -- switching the modes on: errors --------------------------------------------------------


def test_the_modes_need_a_built_container() -> None:
    with pytest.raises(MasaNotBuiltError, match=r"MasaApp.build\(container\)"), manual():
        pass
    MasaApp.build(make_container())
    with pytest.raises(MasaNotBuiltError, match="did not publish"), inline(make_container()):
        pass


def test_the_fake_clock_only_moves_forward() -> None:
    clock = FakeClock(LEAP_DAY_NOON)
    assert clock.advance(timedelta(seconds=5)) == LEAP_DAY_NOON + timedelta(seconds=5)
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(timedelta(seconds=-1))
    with pytest.raises(ValueError, match="timezone-aware"):
        FakeClock(datetime(2028, 1, 1))


# -- the pytest fixtures -----------------------------------------------------------------

manual_jobs = manual_jobs_fixture(make_container, name="manual_jobs", schedules=False)
inline_jobs = inline_jobs_fixture(make_container, name="inline_jobs")


async def test_the_manual_fixture_builds_an_app_per_test(manual_jobs: ManualJobs) -> None:
    await SignupService().sign_up("ada@example.com")

    manual_jobs.assert_enqueued(SendWelcomeEmail, email="ada@example.com")
    assert await manual_jobs.drain() == DrainResult(ran=1, succeeded=1)
    assert MasaApp.root().mailer().sent == [("ada@example.com", "Welcome! (job attempt 1)")]


async def test_the_inline_fixture_builds_an_app_per_test(inline_jobs: InlineJobs) -> None:
    await sign_up_via_facade("ada@example.com")

    assert inline_jobs.performed(SendWelcomeEmail) == [SendWelcomeEmail(email="ada@example.com")]
    assert MasaApp.root().mailer().sent == [("ada@example.com", "Welcome! (job attempt 1)")]


def test_import_masa_jobs_loads_neither_the_helpers_nor_pytest() -> None:
    check = (
        "import sys, masa_jobs; "
        "assert 'masa_jobs.testing' not in sys.modules; "
        "import masa_jobs.testing; "
        "assert 'pytest' not in sys.modules, 'pytest is imported only by the fixtures'"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
