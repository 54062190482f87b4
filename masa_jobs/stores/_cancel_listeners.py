"""The listeners of one store's cancel notices (``CancelFeed``)."""

from __future__ import annotations

import logging
from collections.abc import Callable

__all__ = ["CancelListeners"]

logger = logging.getLogger("masa_jobs.store")


class CancelListeners:
    """Who hears that a running job was cancelled; each store keeps one."""

    def __init__(self) -> None:
        self._listeners: list[Callable[[str], None]] = []

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def add(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    def clear(self) -> None:
        self._listeners.clear()

    def tell(self, job_id: str) -> None:
        """Call every listener; one that fails is logged, and the others still hear."""
        for listener in tuple(self._listeners):
            try:
                listener(job_id)
            except Exception:
                # A listener's failure is its own: the cancel stands.
                logger.exception("a cancel listener failed on job %s", job_id)
