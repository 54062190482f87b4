"""Recurring-job classes shared by the schedule tests.

They live at module level so that discovery and wiring find them like a
user's. Discovery is process-wide: every lifespan of the test session declares
the classes here that declare ``id`` and ``cron_expression``. So only
``Declared*`` classes do, with ids no other test uses and a cron that fires on
29 February only; the others carry their schedule on an instance (``on``),
added at run time with ``add_or_update_schedule``.

Executions are recorded in ``FIRED`` as ``(class key, fire_at)``; ``FAILURES``
says how many more times ``FailingTick`` fails for a tick. The test module's
fixture clears both.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from dependency_injector.wiring import Provide, inject

from masa_jobs import BackgroundScheduleJob

J = TypeVar("J", bound=BackgroundScheduleJob)

FIRED: list[tuple[str, datetime | None]] = []
FAILURES: dict[datetime | None, int] = {}

# Fires at 00:00 UTC on 29 February: never while a test runs, in practice.
LEAP_DAY = "0 0 29 2 *"


def fired(key: str) -> list[datetime | None]:
    """The ticks that ran ``key``'s class, in the order they ran."""
    return [fire_at for name, fire_at in FIRED if name == key]


def on(job: J, schedule_id: str, cron_expression: str, timezone: str | None = None) -> J:
    """``job`` carrying a schedule in instance attributes."""
    job.id = schedule_id  # type: ignore[misc]  # a ClassVar on the base class
    job.cron_expression = cron_expression  # type: ignore[misc]
    if timezone is not None:
        job.timezone = timezone  # type: ignore[misc]
    return job


class DeclaredReport(BackgroundScheduleJob):
    """Declares its schedule in the class: declared when a worker starts."""

    id = "unit-schedules.declared-report"
    cron_expression = LEAP_DAY

    async def execute(self) -> None:
        FIRED.append(("declared-report", self.fire_at))


class DeclaredInBerlin(BackgroundScheduleJob):
    id = "unit-schedules.declared-berlin"
    cron_expression = LEAP_DAY
    timezone = "Europe/Berlin"

    async def execute(self) -> None:
        FIRED.append(("declared-berlin", self.fire_at))


class RecordingTick(BackgroundScheduleJob):
    """Scheduled at run time only."""

    async def execute(self) -> None:
        FIRED.append(("recording", self.fire_at))


class OtherTick(BackgroundScheduleJob):
    async def execute(self) -> None:
        FIRED.append(("other", self.fire_at))


class FailingTick(BackgroundScheduleJob):
    """Fails while ``FAILURES`` holds a count for its tick; every tick fails once
    unless the count is set otherwise."""

    async def execute(self) -> None:
        FIRED.append(("failing", self.fire_at))
        left = FAILURES.setdefault(self.fire_at, 1)
        if left > 0:
            FAILURES[self.fire_at] = left - 1
            raise RuntimeError(f"tick {self.fire_at} failed")


class InjectedTick(BackgroundScheduleJob):
    """Gets ``greeting`` from the root container through wiring."""

    @inject
    def __init__(self, greeting: str = Provide["greeting"]) -> None:
        self.greeting = greeting

    async def execute(self) -> None:
        FIRED.append((f"injected:{self.greeting}", self.fire_at))


class Twin(BackgroundScheduleJob):
    """Declares nothing; a test gives it and ``schedule_twins.Twin`` the same id."""

    async def execute(self) -> None:
        FIRED.append(("twin", self.fire_at))
