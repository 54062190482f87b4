"""The scheduler: turns due ticks of recurring jobs into jobs, once each.

Every worker process runs one beside its worker. There is no leader to
elect (and none to die): each scheduler reads the schedules and fires a due
tick with ``ScheduleStore.fire_schedule``, a compare-and-set on the
schedule's next fire time that stores the tick's job in the same
transaction. However many schedulers see a tick, one of them wins.

A paused schedule fires nothing. Its ``next_fire_at`` stays where it was,
so once resumed its ticks missed while paused follow the missed-ticks rule
of ``_fire``: a pause shorter than ``misfire_grace`` loses no tick, a longer
one gives one catch-up run ("coalesce") or none ("skip").

Ticks fall due on the store's clock (``ScheduleStore.now()``), read once per
pass: a worker whose own clock runs hours ahead or behind fires no tick early
and misses none.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import anyio
from anyio.abc import TaskStatus

from ._outage import OutageLog
from .cron import CronSchedule
from .exceptions import InvalidScheduleError
from .options import BackgroundJobOptions
from .records import ScheduleRecord
from .registry import JobRegistry
from .schedules import schedule_from_job, tick_job, tick_placement
from .stores.base import ScheduleStore

__all__ = ["Scheduler"]

logger = logging.getLogger("masa_jobs.scheduler")

# The longest a scheduler sleeps before it reads the schedules again: how
# soon a schedule added or changed by another process is noticed.
MAX_SLEEP_SECONDS = 1.0
# Back-off after a store error, so a broken connection is not hammered.
ERROR_BACKOFF_SECONDS = 1.0
_ERROR_BACKOFF = timedelta(seconds=ERROR_BACKOFF_SECONDS)


class Scheduler:
    """Fires the due ticks of every stored schedule until ``stop()``."""

    def __init__(
        self, store: ScheduleStore, registry: JobRegistry, options: BackgroundJobOptions
    ) -> None:
        self._store = store
        self._registry = registry
        self._options = options
        self._scope: anyio.CancelScope | None = None
        self._stop_requested = False
        self._outage = OutageLog(
            logger, "the scheduler: reading the schedules", redact_error=options.redact_error
        )
        # (id, cron, time zone) of stored schedules that cannot fire, logged
        # once each: a broken record must not flood the log every second.
        self._broken: set[tuple[str, str, str]] = set()

    def stop(self) -> None:
        self._stop_requested = True
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Declare the schedules the code defines, then fire ticks until stopped."""
        self._stop_requested = False
        await self.declare()
        task_status.started()
        with anyio.CancelScope() as self._scope:
            # Ticks are due at clock times, not on events: sleep until the next one.
            while not self._stop_requested:  # noqa: ASYNC110
                await anyio.sleep(await self.fire_due())
        self._scope = None

    async def declare(self) -> None:
        """Store the schedules that classes declare, keeping unchanged ones as they are.

        Idempotent: any number of processes may declare the same classes.
        """
        now = await self._store.now()
        # The registry validated every declaration when it was built.
        declared = self._registry.declared_schedules()
        for schedule_id, job_class in declared.items():
            existing = await self._store.get_schedule(schedule_id)
            schedule = schedule_from_job(job_class, now, existing)
            if schedule is not existing:
                await self._store.upsert_schedule(schedule)
                logger.info(
                    "recurring job %s declared: %r in %s, next at %s",
                    schedule.id,
                    schedule.cron_expression,
                    schedule.timezone,
                    schedule.next_fire_at.isoformat(),
                )

    async def fire_due(self) -> float:
        """Fire every due tick once; returns the seconds until the next check."""
        try:
            now = await self._store.now()
            schedules = await self._store.list_schedules()
        except Exception as exc:
            self._outage.failed(exc)
            return ERROR_BACKOFF_SECONDS
        self._outage.succeeded()
        wait = MAX_SLEEP_SECONDS
        for schedule in schedules:
            if schedule.paused:
                continue
            next_fire_at = schedule.next_fire_at
            if next_fire_at <= now:
                # A tick that could not fire is tried again after a back-off, not at once.
                next_fire_at = await self._fire(schedule, now) or now + _ERROR_BACKOFF
            wait = min(wait, (next_fire_at - now).total_seconds())
        return max(wait, 0.0)

    async def _fire(self, schedule: ScheduleRecord, now: datetime) -> datetime | None:
        """Fire one due tick (or skip missed ones); the new next tick, None on error.

        A tick at most ``misfire_grace`` late fires as itself and the schedule
        moves to the tick after it (which may be due too: the loop fires it
        next), so a busy scheduler runs late ticks instead of merging them.
        Older ticks were missed (no worker ran): they become one catch-up run
        ("coalesce") or none ("skip"), and the schedule resumes from now.
        """
        try:
            cron = CronSchedule(schedule.cron_expression, schedule.timezone)
        except InvalidScheduleError as exc:
            key = (schedule.id, schedule.cron_expression, schedule.timezone)
            if key not in self._broken:
                self._broken.add(key)
                logger.error(
                    "recurring job %s cannot fire: %s. It stays stored and does not fire "
                    "until it is fixed (add_or_update_schedule) or removed",
                    schedule.id,
                    exc,
                )
            return None
        grace = timedelta(seconds=self._options.misfire_grace)
        missed = now - schedule.next_fire_at > grace
        next_fire_at = cron.next_after(now if missed else schedule.next_fire_at)
        skip = missed and self._options.missed_ticks == "skip"
        job = (
            None
            if skip
            else tick_job(
                schedule, schedule.next_fire_at, now, tick_placement(schedule, self._registry)
            )
        )
        try:
            fired = await self._store.fire_schedule(
                schedule.id, schedule.next_fire_at, next_fire_at, job
            )
        except Exception as exc:
            # Reading the schedules fails too while the store is away: the
            # outage is reported there, this one line says which tick waits.
            logger.warning("recurring job %s could not fire (%r); retrying", schedule.id, exc)
            return None
        if fired and missed:
            logger.warning(
                "recurring job %s missed its ticks since %s: %s",
                schedule.id,
                schedule.next_fire_at.isoformat(),
                "skipped" if skip else "one catch-up run",
            )
        return next_fire_at
