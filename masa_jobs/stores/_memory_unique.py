"""The memory store's unique keys: which job holds each key.

A key maps to the job that took it, and is released eagerly when that job
stops holding it under its scope: the first claim ends a ``pending`` hold,
a finished state ends a ``pending`` or ``active`` one, deleting or purging
the job ends any (a key with no scope holds as an ``active`` one). A
``period`` hold ends with time, which no write marks:
``holder`` checks ``unique_until`` against the store's clock when the key is
asked for again. A released key is gone from the map, so the job that held
it never takes it back (a retry does not add it again). The store checks
and takes keys with no await in between, so two adds never both take one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ..records import FINISHED_STATES, JobRecord, JobState, UniqueScope

__all__ = ["UniqueKeys"]


class UniqueKeys:
    """Unique key -> id of the job holding it."""

    __slots__ = ("_holders",)

    def __init__(self) -> None:
        self._holders: dict[str, str] = {}

    def holder(self, key: str, now: datetime, jobs: Mapping[str, JobRecord]) -> str | None:
        """The id of the job holding ``key`` at ``now``, or None (a hold that
        ended with its period is released on the way)."""
        job_id = self._holders.get(key)
        if job_id is None:
            return None
        record = jobs.get(job_id)
        if record is None or _period_over(record, now):
            del self._holders[key]
            return None
        return job_id

    def take(self, record: JobRecord) -> None:
        """Let ``record`` hold its key (the caller checked that nobody does)."""
        if record.unique_key is not None:
            self._holders[record.unique_key] = record.id

    def after_claim(self, record: JobRecord) -> None:
        """The first run of a job starts: a ``pending`` hold ends."""
        if record.unique_key is not None and record.unique_scope is UniqueScope.PENDING:
            self.release(record)

    def after_move(self, record: JobRecord, state: JobState) -> None:
        """A job reached ``state``: a finished one ends every hold but a period."""
        if state in FINISHED_STATES and record.unique_scope is not UniqueScope.PERIOD:
            self.release(record)

    def release(self, record: JobRecord) -> None:
        """Free the key of ``record`` if it is the one holding it."""
        key = record.unique_key
        if key is not None and self._holders.get(key) == record.id:
            del self._holders[key]


def _period_over(record: JobRecord, now: datetime) -> bool:
    # A period with no end holds until the job is removed.
    until = record.unique_until
    return record.unique_scope is UniqueScope.PERIOD and until is not None and until <= now
