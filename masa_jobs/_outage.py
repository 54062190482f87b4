"""Quiet, honest logs while a loop keeps failing on the store.

An outage of a few seconds makes every loop of a worker fail many times a
second; a traceback per failure buries the one line an operator needs. Each
loop reports through one ``OutageLog``: the first failure at ERROR with its
traceback, then one line at WARNING at most every ``OUTAGE_REPORT_SECONDS``
with the count, and one INFO when the store answers again, with the outage's
length.
"""

from __future__ import annotations

import logging
import time

__all__ = ["OUTAGE_REPORT_SECONDS", "OutageLog"]

# Often enough to show an outage is still on, rarely enough to stay readable.
OUTAGE_REPORT_SECONDS = 5.0


class OutageLog:
    """The failure reports of one activity (claiming, renewing leases, ...)."""

    def __init__(self, logger: logging.Logger, activity: str) -> None:
        self._logger = logger
        self._activity = activity
        self._since: float | None = None
        self._failures = 0
        self._reported_at = 0.0

    @property
    def failing(self) -> bool:
        return self._since is not None

    def failed(self, exc: BaseException) -> None:
        """Count a failure; log it if it is the first or a report is due."""
        now = time.monotonic()
        self._failures += 1
        if self._since is None:
            self._since = self._reported_at = now
            self._logger.error("%s failed; retrying", self._activity, exc_info=exc)
            return
        if now - self._reported_at >= OUTAGE_REPORT_SECONDS:
            self._reported_at = now
            self._logger.warning(
                "%s still failing: %d failures in %.0f s; last: %s",
                self._activity,
                self._failures,
                now - self._since,
                _one_line(exc),
            )

    def succeeded(self) -> None:
        """End an outage, if one was on, with one line saying how long it lasted."""
        if self._since is None:
            return
        self._logger.info(
            "%s: store reachable again after %.1f s (%d failures)",
            self._activity,
            time.monotonic() - self._since,
            self._failures,
        )
        self._since = None
        self._failures = 0


def _one_line(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text.splitlines()[0] if text else type(exc).__name__
