"""When a failed job runs again: MASA's exponential back-off."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from .options import BackgroundJobOptions

__all__ = ["RetryPolicy"]

# Exponential growth overflows timedelta after a few dozen retries; no job
# should wait longer than this between two attempts anyway.
MAX_RETRY_DELAY_SECONDS = 30 * 24 * 3600.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Attempt ``n`` that fails runs again at
    ``last_try + first_wait_duration * wait_duration ** (n - 1)``;
    after ``max_retry_times`` retries (``max_retry_times + 1`` attempts) the
    job is dead.
    """

    max_retry_times: int = 10
    first_wait_duration: float = 60.0
    wait_duration: float = 2.0

    @classmethod
    def from_options(cls, options: BackgroundJobOptions) -> RetryPolicy:
        return cls(options.max_retry_times, options.first_wait_duration, options.wait_duration)

    def delay_after(self, attempt: int) -> timedelta | None:
        """The wait after failed attempt ``attempt`` (1-based); None once the job is dead."""
        if attempt < 1:
            raise ValueError(f"attempt numbers start at 1, got {attempt}")
        if attempt > self.max_retry_times:
            return None
        try:
            # In floats: an int factor would build a huge exact integer first.
            seconds = self.first_wait_duration * float(self.wait_duration) ** (attempt - 1)
        except OverflowError:
            seconds = MAX_RETRY_DELAY_SECONDS
        return timedelta(seconds=min(seconds, MAX_RETRY_DELAY_SECONDS))

    def next_try_at(self, attempt: int, last_try_at: datetime) -> datetime | None:
        """When failed attempt ``attempt`` runs again; None once the job is dead."""
        delay = self.delay_after(attempt)
        return None if delay is None else last_try_at + delay
