"""Take the screenshots of docs/dashboard.md again: ``python -m tests.dashboard.docs_screenshots``.

Serves a dashboard on a memory store filled with a plausible hour of work,
and saves the overview, the jobs list and a dead job's page as PNG files in
docs/images/, at the size the documentation shows them.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

from dependency_injector import providers
from masa_jobs.containers import BackgroundJobContainer
from playwright.sync_api import sync_playwright

from masa_jobs import JobState
from masa_jobs.dashboard import dashboard
from masa_jobs.records import WorkerInfo, utcnow
from masa_jobs.stores.base import Store
from masa_jobs.stores.memory import MemoryJobStore

from .browser.chromium import CHROMIUM, CHROMIUM_ARGS
from .live import LiveServer
from .seed import WORKER, new_job, run_to_death, seed_states, seed_throughput

IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
VIEWPORT = {"width": 1280, "height": 800}
# While the jobs are made, every reading of the store's clock moves it on by
# this much, from this long ago: the jobs get plausible, distinct times.
CLOCK_STEP = timedelta(seconds=9)
SEEDED_SINCE = timedelta(minutes=5)
# A busy hour: a slow wave of finished jobs per minute.
THROUGHPUT = [round(30 + 18 * math.sin(minute / 6) + (minute * 7) % 11) for minute in range(60)]
MORE_JOBS = (
    ("image.resize", {"image": 1812, "width": 1280}),
    ("mail.send", {"to": "grace@example.com", "template": "invoice"}),
    ("report.build", {"report": "churn", "month": "2024-05"}),
    ("search.reindex", {"index": "products", "shard": 3}),
    ("mail.send", {"to": "linus@example.com", "template": "welcome"}),
    ("webhook.deliver", {"endpoint": 77, "event": "order.paid"}),
)


class SteppingClock:
    """The store's clock: moving on by ``CLOCK_STEP`` per reading, or the real time."""

    def __init__(self) -> None:
        self.at: datetime | None = None

    def __call__(self) -> datetime:
        if self.at is None:
            return utcnow()
        self.at += CLOCK_STEP
        return self.at


async def _fill(store: Store, clock: SteppingClock) -> str:
    """The store's jobs; returns the id of the dead job to show."""
    await seed_throughput(store, THROUGHPUT)
    clock.at = utcnow() - SEEDED_SINCE
    now = await store.now()
    await run_to_death(store, new_job("webhook.deliver", {"endpoint": 12}, created_at=now))
    seeded = await seed_states(store)
    for minutes, (name, args) in enumerate(MORE_JOBS):
        due = now + timedelta(minutes=5 * minutes) if minutes % 2 else None
        await store.add((new_job(name, args, created_at=await store.now(), due_at=due),))
    clock.at = None
    for host, pid, running in (("web-1", 4242, 1), ("worker-2", 311, 7), ("worker-3", 318, 5)):
        started = utcnow() - timedelta(hours=pid % 7, minutes=pid % 50)
        worker_id = WORKER if host == "web-1" else f"{host}:{pid}:{pid * 7919 % 65536:04x}"
        await store.heartbeat(WorkerInfo(worker_id, host, pid, started, utcnow(), running))
    return seeded.ids[JobState.DEAD]


def main() -> None:
    clock = SteppingClock()
    container = BackgroundJobContainer()
    container.job_store.override(providers.Object(MemoryJobStore(clock)))
    server = LiveServer()
    server.app = dashboard(container)
    server.start()
    try:
        dead = server.call(_fill(container.job_manager().store, clock))
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=[*CHROMIUM_ARGS, "--lang=en-GB"]
            )
            # A 24-hour clock in the date fields, like the times on the pages.
            page = browser.new_page(viewport=VIEWPORT, locale="en-GB")
            IMAGES.mkdir(parents=True, exist_ok=True)
            page.goto(f"{server.base_url}/")
            page.screenshot(path=str(IMAGES / "dashboard-overview.png"))
            page.goto(f"{server.base_url}/jobs")
            page.screenshot(path=str(IMAGES / "dashboard-jobs.png"))
            page.goto(f"{server.base_url}/job?id={dead}")
            page.locator("table.history details summary").first.click()
            page.screenshot(path=str(IMAGES / "dashboard-job.png"), full_page=True)
            browser.close()
    finally:
        server.stop()
    print(f"saved the screenshots in {IMAGES}")


if __name__ == "__main__":
    main()
