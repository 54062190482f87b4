from __future__ import annotations

from masa_jobs import BackgroundScheduleJob


class NightlyA(BackgroundScheduleJob):
    id = "scoped-a.nightly"
    cron_expression = "0 0 29 2 *"  # 29 February: never while a test runs, in practice

    async def execute(self) -> None:
        return None
