"""Where a job's timeout comes from, and how it travels with the job.

A timeout set at enqueue is stored in the job's headers (as a message
header carries a time limit in other queues), so the worker that runs the
job reads it back; otherwise the args class's ``@job_options(timeout=...)``
applies, then the ``job_timeout`` option.
"""

from __future__ import annotations

import math

from .records import decode_headers, encode_headers

__all__ = ["TIMEOUT_HEADER", "stored_timeout", "timeout_headers"]

# The header a per-enqueue timeout travels in, in seconds as text.
TIMEOUT_HEADER = "masa-timeout"


def timeout_headers(seconds: float | None) -> str | None:
    """The headers of a new job with this timeout (None when it has none)."""
    return None if seconds is None else encode_headers({TIMEOUT_HEADER: repr(seconds)})


def stored_timeout(headers: str | None) -> float | None:
    """The timeout stored with a job; None when absent or not a positive number,
    so that a damaged header falls back to the class's or the option's."""
    text = (decode_headers(headers) or {}).get(TIMEOUT_HEADER)
    if text is None:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None
