"""A recurring job that fires once a year: it lets a memory-store worker start.

``masa-jobs worker`` refuses an in-memory store that nothing could give a job;
a declared recurring job is such a source. Imported only by
``_bench_app.memory_container``, for the idle-RSS scenario.
"""

from __future__ import annotations

from masa_jobs import BackgroundScheduleJob

__all__ = ["Yearly"]


class Yearly(BackgroundScheduleJob):
    """Midnight of the first of January: never due while a benchmark runs."""

    id = "bench.yearly"
    cron_expression = "0 0 1 1 *"

    async def execute(self) -> None:
        """Nothing: the job exists only to be declared."""
