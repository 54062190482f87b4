"""The SQLite store's list statement: one page of a ``JobQuery`` in one SELECT.

A page reads, for each stored state the query needs, at most ``limit + 1``
rows in list order from the index ``(state, created_at, id)`` (or
``(name, state, created_at, id)`` for a job name), starting after the cursor;
several states are merged with ``UNION ALL`` and the few rows they give are
sorted once. So a page costs an index descent and O(limit) rows per state,
however many jobs the file holds. ``scheduled`` and ``enqueued`` are both
pending: when a query wants one of them, the other is skipped row by row
(the one exception that the store protocol allows).
"""

from __future__ import annotations

from datetime import datetime

from ..queries import JobQuery
from ..records import PENDING_STATES, JobState
from ._listing import created_bounds_us, stored_states
from ._sqlite_schema import JOB_COLUMNS, Row, to_us

__all__ = ["list_statement"]

# Every stored state, in a fixed order: a query for every state reads each.
_ALL_STATES = tuple(sorted(state.value for state in JobState))


def list_statement(prefix: str, query: JobQuery, now: datetime) -> tuple[str, Row]:
    """The SQL text and parameters that select ``limit + 1`` rows of a page."""
    states = stored_states(query)
    values = _ALL_STATES if states is None else tuple(sorted(s.value for s in states))
    if query.states is not None and query.states & PENDING_STATES == {JobState.SCHEDULED}:
        # A job stored enqueued was due when stored (base.py): a page of
        # scheduled jobs need not walk them.
        values = tuple(v for v in values if v != JobState.ENQUEUED.value)
    direction = "DESC" if query.newest_first else "ASC"
    parts: list[str] = []
    params: list[object] = []
    for value in values:
        text, values_params = _one_state(prefix, query, value, now, direction)
        parts.append(text)
        params.extend(values_params)
    if len(parts) == 1:
        return parts[0], tuple(params)
    # Each part is ordered and limited by its index; the merge sorts at most
    # len(parts) * (limit + 1) rows.
    merged = " UNION ALL ".join(f"SELECT * FROM ({part})" for part in parts)
    text = f"{merged} ORDER BY created_at {direction}, id {direction} LIMIT ?"
    return text, (*params, query.limit + 1)


def _one_state(
    prefix: str, query: JobQuery, state: str, now: datetime, direction: str
) -> tuple[str, list[object]]:
    """The ordered, limited SELECT of one stored state."""
    terms = ["state = ?"]
    params: list[object] = [state]
    if query.name is None:
        index = f"{prefix}jobs_list"
    else:
        index = f"{prefix}jobs_list_name"
        terms.append("name = ?")
        params.append(query.name)
    start, end = created_bounds_us(query)
    if start is not None:
        terms.append("created_at >= ?")
        params.append(start)
    if end is not None:
        terms.append("created_at < ?")
        params.append(end)
    after = query.after
    if after is not None:
        # A row value compares (created_at, id) as the list orders them.
        terms.append(f"(created_at, id) {'<' if query.newest_first else '>'} (?, ?)")
        params.extend((after.created_us, after.job_id))
    due = _due_term(query, state)
    if due is not None:
        terms.append(due)
        params.append(to_us(now))
    text = (
        f"SELECT {JOB_COLUMNS} FROM {prefix}jobs INDEXED BY {index} "
        f"WHERE {' AND '.join(terms)} "
        f"ORDER BY created_at {direction}, id {direction} LIMIT ?"
    )
    params.append(query.limit + 1)
    return text, params


def _due_term(query: JobQuery, state: str) -> str | None:
    """For a pending state, the clock term that keeps only scheduled or only
    enqueued jobs; None when the query wants both or the state is not pending."""
    if query.states is None or JobState(state) not in PENDING_STATES:
        return None
    shown = query.states & PENDING_STATES
    if shown == {JobState.ENQUEUED}:
        return "next_try_at <= ?"
    if shown == {JobState.SCHEDULED}:
        return "next_try_at > ?"
    return None
