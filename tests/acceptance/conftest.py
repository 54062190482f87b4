"""Helpers for the shop acceptance tests: a fresh, built app per test."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from masa_jobs import JobInfo, JobManager, JobState, MasaApp

from .shop.container import AppContainer

# Small durations so that retries happen within milliseconds; a long poll
# interval so that a prompt pickup proves the store's wake-up, not polling.
FAST_OPTIONS: dict[str, Any] = {
    "poll_interval": 5,
    "first_wait_duration": 0.01,
    "wait_duration": 2,
    "max_retry_times": 2,
    "shutdown_timeout": 0.1,
}
WAIT_TIMEOUT = 10.0


@pytest.fixture
def build_shop() -> Callable[..., AppContainer]:
    """Build a fresh AppContainer with FAST_OPTIONS (overridable) and publish it."""

    def build(**options: Any) -> AppContainer:
        container = AppContainer()
        container.config.from_dict(
            {"store": {"backend": "memory"}, "options": {**FAST_OPTIONS, **options}}
        )
        MasaApp.build(container)
        return container

    return build


async def wait_for_state(
    manager: JobManager, job_id: str, *states: JobState, timeout: float = WAIT_TIMEOUT
) -> JobInfo:
    """Poll the store until the job is in one of ``states``; fail after ``timeout``."""
    with anyio.fail_after(timeout):
        while True:
            info = await manager.get(job_id)
            if info is not None and info.state in states:
                return info
            await anyio.sleep(0.005)


async def wait_for_count(
    manager: JobManager, state: JobState, expected: int, timeout: float = WAIT_TIMEOUT
) -> None:
    """Poll the store until ``expected`` jobs are in ``state``; fail after ``timeout``."""
    with anyio.fail_after(timeout):
        while True:
            counts = await manager.count()
            if counts[state] == expected:
                return
            await anyio.sleep(0.01)
