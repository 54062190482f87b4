"""What every store shares to answer a list query: which jobs a query keeps.

A store filters with its indexes; this module is the definition they follow,
and the filter of the memory store and of any residual check a store makes
after its index (the split of pending jobs into scheduled and enqueued).
"""

from __future__ import annotations

from datetime import datetime

from ..queries import JobQuery, decode_cursor, sort_key
from ..records import PENDING_STATES, JobRecord, JobState, display_state, to_us

__all__ = ["created_bounds_us", "matches", "stored_states"]


def stored_states(query: JobQuery) -> frozenset[JobState] | None:
    """The stored states a query reads (pending for scheduled or enqueued);
    None for every state."""
    if query.states is None:
        return None
    stored: set[JobState] = set()
    for state in query.states:
        stored |= PENDING_STATES if state.is_pending else {state}
    return frozenset(stored)


def matches(record: JobRecord, query: JobQuery, now: datetime) -> bool:
    """Whether ``record`` belongs on a page of ``query`` (cursor included)."""
    if query.states is not None and display_state(record, now) not in query.states:
        return False
    if query.name is not None and record.name != query.name:
        return False
    if query.created_from is not None and record.created_at < query.created_from:
        return False
    if query.created_until is not None and record.created_at >= query.created_until:
        return False
    if query.cursor is not None:
        key, after = sort_key(record), decode_cursor(query.cursor)
        position = (after.created_us, after.job_id)
        return key < position if query.newest_first else key > position
    return True


def created_bounds_us(query: JobQuery) -> tuple[int | None, int | None]:
    """The query's creation range in microseconds: inclusive start, exclusive end."""
    start = None if query.created_from is None else to_us(query.created_from)
    end = None if query.created_until is None else to_us(query.created_until)
    return start, end
