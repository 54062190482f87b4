"""Quiet, honest logs while a loop keeps failing on the store.

An outage of a few seconds makes every loop of a worker fail many times a
second; a traceback per failure buries the one line an operator needs. Each
loop reports through one ``OutageLog``: the first failure at ERROR with its
traceback, then one line at WARNING at most every ``OUTAGE_REPORT_SECONDS``
with the count, and one INFO when the store answers again, with the outage's
length.

Exception texts quote addresses, and drivers' sometimes whole DSNs: each goes
through a redaction function (masa-jobs' ``redact`` unless the owner passes
``options.redact_error``). The first failure's traceback is therefore part
of the message, redacted, not ``exc_info``, which a handler would format
from the exception itself, password included.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable

from ._redact import redact

__all__ = ["OUTAGE_REPORT_SECONDS", "OutageLog"]

# Often enough to show an outage is still on, rarely enough to stay readable.
OUTAGE_REPORT_SECONDS = 5.0


class OutageLog:
    """The failure reports of one activity (claiming, renewing leases, ...)."""

    def __init__(
        self,
        logger: logging.Logger,
        activity: str,
        redact_error: Callable[[str], str] = redact,
    ) -> None:
        self._logger = logger
        self._activity = activity
        self._redact = redact_error
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
            self._logger.error(
                "%s failed; retrying\n%s", self._activity, self._redact(_traceback(exc))
            )
            return
        if now - self._reported_at >= OUTAGE_REPORT_SECONDS:
            self._reported_at = now
            self._logger.warning(
                "%s still failing: %d failures in %.0f s; last: %s",
                self._activity,
                self._failures,
                now - self._since,
                _one_line(self._redact(f"{type(exc).__name__}: {exc}")),
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


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).rstrip("\n")


def _one_line(text: str) -> str:
    return text.splitlines()[0] if text else text
