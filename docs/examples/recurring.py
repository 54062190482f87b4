"""Recurring jobs: one declared in its class, one added and changed at run time.

``CleanUpSessions`` declares its schedule (03:00 every day, Berlin time), so
the worker declares it when ``MasaApp.lifespan()`` starts; the example also
runs it once by hand. ``Heartbeat`` has no schedule of its own: it gets one at
run time, every second, then every minute, and is removed at the end.
"""

from datetime import datetime

import anyio
from dependency_injector import providers
from dependency_injector.wiring import Provide, inject
from masa_jobs.containers import BackgroundJobContainer

from masa_jobs import BackgroundJobManager, BackgroundScheduleJob, MasaApp
from masa_jobs.records import ScheduleInfo


class Sessions:
    def __init__(self) -> None:
        self.expired = 3

    async def remove_expired(self) -> int:
        removed, self.expired = self.expired, 0
        return removed


class Monitor:
    def __init__(self) -> None:
        self.beats: list[datetime] = []
        self.beating = anyio.Event()


class AppContainer(BackgroundJobContainer):
    sessions = providers.Singleton(Sessions)
    monitor = providers.Singleton(Monitor)


class CleanUpSessions(BackgroundScheduleJob):
    id = "sessions.clean-up"
    cron_expression = "0 3 * * *"  # minute hour day month weekday: 03:00 every day
    timezone = "Europe/Berlin"  # on Berlin's wall clock; the default is "UTC"

    @inject
    def __init__(self, sessions: Sessions = Provide[AppContainer.sessions]) -> None:
        self.sessions = sessions

    async def execute(self) -> None:
        removed = await self.sessions.remove_expired()
        print(f"removed {removed} expired sessions")


class Heartbeat(BackgroundScheduleJob):
    """No schedule in the class: an instance carries one at run time."""

    @inject
    def __init__(self, monitor: Monitor = Provide[AppContainer.monitor]) -> None:
        self.monitor = monitor

    async def execute(self) -> None:
        if self.fire_at is not None:  # the tick this run is for
            self.monitor.beats.append(self.fire_at)
            self.monitor.beating.set()
            print(f"heartbeat for {self.fire_at:%H:%M:%S} UTC")


def heartbeat(cron_expression: str) -> Heartbeat:
    job = Heartbeat()
    job.id = "monitor.heartbeat"
    job.cron_expression = cron_expression
    return job


async def main() -> list[ScheduleInfo]:
    container = AppContainer()
    MasaApp.build(container)  # wires this module: the recurring jobs get their dependencies
    manager = container.job_manager()
    async with MasaApp.lifespan():  # runs the worker and the scheduler
        # Six fields, seconds first: every second.
        await BackgroundJobManager.add_or_update_schedule(heartbeat("* * * * * *"))
        await container.monitor().beating.wait()

        # The same id again: an update, in effect from the next tick.
        await manager.add_or_update_schedule(heartbeat("0 * * * * *"))

        # Run the clean-up once now, besides its schedule.
        job_id = await manager.trigger_schedule("sessions.clean-up")
        info = await manager.get(job_id)
        while info is not None and not info.state.is_finished:
            await anyio.sleep(0.05)
            info = await manager.get(job_id)

        schedules = await manager.list_schedules()
        await manager.remove_schedule("monitor.heartbeat")
    for schedule in schedules:
        when = f"{schedule.next_fire_at:%Y-%m-%d %H:%M:%S} UTC"
        print(f"{schedule.id}: {schedule.cron_expression!r} in {schedule.timezone}, next at {when}")
    return schedules


if __name__ == "__main__":
    anyio.run(main)
