"""Recurring jobs as records: declaring a schedule, and the job each tick becomes.

A tick is stored as an ordinary job named ``schedule:<id>`` whose payload is a
``ScheduleTick``; the executor runs it by building the recurring-job class,
so ticks get retries, leases and dead-letter handling like any job.

A schedule of an ordinary job (added at run time with its args) is a record
whose ``job_class`` is ``job:<job name>`` and whose ``payload`` holds the
args: each of its ticks is that job itself, with those args, so the job's
own handlers run it. Class names are ``module.QualName`` and never hold a
colon, so the prefix cannot collide with a class.
"""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from .cron import CronSchedule
from .exceptions import InvalidScheduleError
from .jobs import BackgroundScheduleJob, get_job_control, handler_name

if TYPE_CHECKING:
    from .registry import JobRegistry
from .records import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    JobRecord,
    JobState,
    ScheduleRecord,
    new_job_id,
)

__all__ = [
    "JOB_SCHEDULE_PREFIX",
    "SCHEDULE_JOB_PREFIX",
    "ScheduleTick",
    "check_schedule_id",
    "declared_schedule",
    "job_name_of_schedule",
    "job_schedule",
    "schedule_from_job",
    "tick_job",
    "tick_placement",
]

# Tick jobs are told apart from user jobs by this prefix of their name.
SCHEDULE_JOB_PREFIX = "schedule:"
# The job_class of a schedule of an ordinary job: this prefix and the job name.
JOB_SCHEDULE_PREFIX = "job:"
# Ids travel through job names, stores, logs and CLI arguments: keep them plain.
_VALID_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")


class ScheduleTick(BaseModel):
    """The payload of a tick job."""

    model_config = ConfigDict(frozen=True)

    schedule_id: str
    job_class: str
    fire_at: datetime


def schedule_from_job(
    job: BackgroundScheduleJob | type[BackgroundScheduleJob],
    now: datetime,
    existing: ScheduleRecord | None,
) -> ScheduleRecord:
    """Validate a recurring job and turn it into a record; raises InvalidScheduleError.

    When ``existing`` has the same class, cron and time zone it is returned
    unchanged, so declaring the same schedule again keeps its next tick.
    """
    job_class = job if isinstance(job, type) else type(job)
    if not (isinstance(job_class, type) and issubclass(job_class, BackgroundScheduleJob)):
        raise InvalidScheduleError(
            f"add_or_update_schedule takes a BackgroundScheduleJob, got {job!r}"
        )
    class_name = handler_name(job_class)
    if "<locals>" in class_name:
        raise InvalidScheduleError(
            f"recurring job class {class_name} is defined inside a function: define it at "
            "module level so that every worker can find it by name"
        )
    schedule_id = _attribute(job, "id")
    check_schedule_id(schedule_id, f"recurring job {class_name}")
    cron = CronSchedule(_attribute(job, "cron_expression"), _attribute(job, "timezone") or "UTC")
    if existing is not None and (
        existing.job_class,
        existing.cron_expression,
        existing.timezone,
    ) == (class_name, cron.expression, cron.timezone):
        return existing
    next_fire_at = cron.next_after(now)
    if existing is not None:
        return replace(
            existing,
            job_class=class_name,
            cron_expression=cron.expression,
            timezone=cron.timezone,
            next_fire_at=next_fire_at,
            updated_at=now,
            payload=None,
        )
    return ScheduleRecord(
        id=schedule_id,
        job_class=class_name,
        cron_expression=cron.expression,
        timezone=cron.timezone,
        next_fire_at=next_fire_at,
        created_at=now,
        updated_at=now,
    )


def job_schedule(
    schedule_id: str,
    job_name: str,
    payload: str,
    cron: CronSchedule,
    now: datetime,
    existing: ScheduleRecord | None,
) -> ScheduleRecord:
    """The record of a schedule that enqueues job ``job_name`` with ``payload`` each tick.

    Raises InvalidScheduleError for a bad id. Like ``schedule_from_job``, an
    unchanged ``existing`` is returned as it is, and a changed one keeps its
    next tick unless the cron expression or time zone changed (the store's
    upsert decides that against the row as it is then).
    """
    check_schedule_id(schedule_id, f"the schedule of job {job_name!r}")
    job_class = f"{JOB_SCHEDULE_PREFIX}{job_name}"
    wanted = (job_class, cron.expression, cron.timezone, payload)
    if existing is not None:
        stored = (existing.job_class, existing.cron_expression, existing.timezone)
        if (*stored, existing.payload) == wanted:
            return existing
        return replace(
            existing,
            job_class=job_class,
            cron_expression=cron.expression,
            timezone=cron.timezone,
            next_fire_at=cron.next_after(now),
            updated_at=now,
            payload=payload,
        )
    return ScheduleRecord(
        id=schedule_id,
        job_class=job_class,
        cron_expression=cron.expression,
        timezone=cron.timezone,
        next_fire_at=cron.next_after(now),
        created_at=now,
        updated_at=now,
        payload=payload,
    )


def check_schedule_id(schedule_id: object, what: str) -> None:
    """Raise InvalidScheduleError unless ``schedule_id`` is a plain id."""
    if not isinstance(schedule_id, str) or not _VALID_ID.match(schedule_id):
        raise InvalidScheduleError(
            f"{what} needs an id of 1-200 letters, digits, '_', '.', ':' or '-', "
            f"got {schedule_id!r}"
        )


def job_name_of_schedule(schedule: ScheduleRecord) -> str | None:
    """The job name a schedule of an ordinary job enqueues; None for a class schedule."""
    if schedule.payload is None or not schedule.job_class.startswith(JOB_SCHEDULE_PREFIX):
        return None
    return schedule.job_class[len(JOB_SCHEDULE_PREFIX) :]


def declared_schedule(job_class: type[BackgroundScheduleJob]) -> bool:
    """Whether a class declares its schedule itself (``id`` and ``cron_expression``)."""
    return isinstance(getattr(job_class, "id", None), str) and isinstance(
        getattr(job_class, "cron_expression", None), str
    )


def tick_placement(schedule: ScheduleRecord, registry: JobRegistry) -> tuple[str, int]:
    """The queue and priority of a schedule's ticks: those its args class
    declares (a schedule of an ordinary job), or its class's ``queue``;
    the defaults where this process does not know the class."""
    job_name = job_name_of_schedule(schedule)
    if job_name is None:
        schedule_class = registry.schedule_class(schedule.job_class)
        queue = getattr(schedule_class, "queue", DEFAULT_QUEUE)
        return (queue if isinstance(queue, str) else DEFAULT_QUEUE), DEFAULT_PRIORITY
    args_type = registry.args_type(job_name)
    if args_type is None:
        return DEFAULT_QUEUE, DEFAULT_PRIORITY
    control = get_job_control(args_type)
    priority = DEFAULT_PRIORITY if control.priority is None else control.priority
    return control.queue or DEFAULT_QUEUE, priority


def tick_job(
    schedule: ScheduleRecord,
    fire_at: datetime,
    now: datetime,
    placement: tuple[str, int] = (DEFAULT_QUEUE, DEFAULT_PRIORITY),
) -> JobRecord:
    """The job that runs one tick of ``schedule``, due now, in the queue and
    at the priority of ``placement`` (see ``tick_placement``).

    For a schedule of an ordinary job that is the job itself, with the
    stored args; for a class schedule, a ``schedule:<id>`` tick.
    """
    job_name = job_name_of_schedule(schedule)
    queue, priority = placement
    if job_name is not None and schedule.payload is not None:
        return JobRecord(
            id=new_job_id(),
            name=job_name,
            payload=schedule.payload,
            state=JobState.ENQUEUED,
            created_at=now,
            next_try_at=now,
            queue=queue,
            priority=priority,
        )
    tick = ScheduleTick(schedule_id=schedule.id, job_class=schedule.job_class, fire_at=fire_at)
    return JobRecord(
        id=new_job_id(),
        name=f"{SCHEDULE_JOB_PREFIX}{schedule.id}",
        payload=tick.model_dump_json(),
        state=JobState.ENQUEUED,
        created_at=now,
        next_try_at=now,
        queue=queue,
        priority=priority,
    )


def _attribute(job: Any, name: str) -> Any:
    return getattr(job, name, None)
