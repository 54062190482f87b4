"""A recurring-job class with the same qualified name as one in ``schedule_jobs``."""

from __future__ import annotations

from masa_jobs import BackgroundScheduleJob


class Twin(BackgroundScheduleJob):
    """Declares nothing; a test gives it and ``schedule_jobs.Twin`` the same id."""

    async def execute(self) -> None:
        return None
