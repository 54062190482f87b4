"""The shop's infrastructure, recording every call so that tests can count them.

Handlers run in the worker's task group, in the test's event loop, so no lock
is needed; ``wait_until`` lets a test wait on a condition without sleeping.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable

import anyio


class Recorder:
    """Counts calls per key and remembers when (``time.monotonic()``) they happened."""

    def __init__(self) -> None:
        self.calls: Counter[int] = Counter()
        self.times: defaultdict[int, list[float]] = defaultdict(list)
        self._changed: anyio.Event | None = None

    def record(self, key: int) -> int:
        """Record one call for ``key``; returns how many calls ``key`` has had."""
        self.calls[key] += 1
        self.times[key].append(time.monotonic())
        if self._changed is not None:
            self._changed.set()
        return self.calls[key]

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Return once ``condition()`` holds; callers bound it with ``anyio.fail_after``."""
        while not condition():
            self._changed = anyio.Event()
            await self._changed.wait()


class Mailer(Recorder):
    """Sends order confirmations (records them)."""

    def send_confirmation(self, order_id: int, email: str) -> int:
        return self.record(order_id)


class Ledger(Recorder):
    """Books order amounts (records them)."""

    def __init__(self) -> None:
        super().__init__()
        self.amounts: dict[int, int] = {}

    def book(self, order_id: int, amount_cents: int) -> int:
        self.amounts[order_id] = amount_cents
        return self.record(order_id)


class ReportArchive(Recorder):
    """Stores exported reports: ``record`` marks a start, ``finished`` the end."""

    def __init__(self) -> None:
        super().__init__()
        self.finished: list[int] = []

    def finish(self, report_id: int) -> None:
        self.finished.append(report_id)
        if self._changed is not None:
            self._changed.set()
