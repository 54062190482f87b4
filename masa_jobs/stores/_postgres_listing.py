"""Operator reads of the PostgreSQL store: pages of jobs by cursor, and counts per state.

A page reads the listing indexes, ``jobs_by_state (state, created_at, id)``
and ``jobs_by_name (name, state, created_at, id)``, and never the whole
table: the statement is a ``UNION ALL`` of one branch per stored state, each
one descent of an index to the page's start and at most ``limit + 1``
entries from there in ``(created_at, id)`` order, and the planner merges the
branches (``Merge Append``) and stops at ``limit + 1`` rows. A branch whose
state the query does not ask for is switched off by a parameter (a one-time
filter), so one statement text serves every set of states. Each branch
names its state so that only these indexes can serve it (``_one_state``),
whatever the table's statistics say.

The cursor and the creation range are folded into one bound where the scan
starts and one where it stops, so that an index scan never starts at the
looser of two bounds and walks the entries between them. Pending jobs are
stored as ``scheduled`` or ``enqueued`` whatever their due time (an add keeps
the caller's state, a retry stores ``scheduled``), and the listed state of
one depends on the clock: a page of scheduled (or enqueued) jobs filters the
pending entries by ``next_try_at`` as it walks them, the one case where a
page may read more entries than it returns.

Counts are exact up to ``EXACT_COUNT_LIMIT`` per state: each is a count of at
most ``EXACT_COUNT_LIMIT + 1`` index entries (pending jobs split by the given
now on ``jobs_due``: a range per queue and priority, read until the count
reaches its cap). A state with more is answered with the planner's row
estimate for the same predicate (``EXPLAIN``, from the table's statistics),
never less than the entries counted; so a count never scans a whole state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ..queries import EXACT_COUNT_LIMIT, JobQuery
from ..records import PENDING_STATES, JobState
from ._listing import stored_states
from ._postgres_sql import JOB_COLUMNS, PENDING, PRIORITIES, check_schema_name, served_queues

__all__ = [
    "ListShape",
    "Listing",
    "count_arguments",
    "counts_of",
    "estimate_arguments",
    "estimated_count",
    "list_arguments",
]

# asyncpg sends these as PostgreSQL's 'infinity' and '-infinity': the bound
# of a query that sets none.
_LATEST = datetime.max.replace(tzinfo=UTC)
_EARLIEST = datetime.min.replace(tzinfo=UTC)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Sorts before every id: (t, NO_ID) bounds a scan at the first job created at t.
_NO_ID = ""
# Code point order of ids, whatever the database's collation (the indexes use it too).
_ID = 'id COLLATE "C"'


def _one_state(state: JobState) -> str:
    """``state = <state>`` that only the listing indexes serve.

    The state is a sub-select, not a literal: the planner cannot then prove
    the predicates of the partial indexes (``jobs_due``, ``jobs_leases``,
    ``jobs_finished``), whose order is not the page's, so it never trades
    the keyset scan for reading and sorting a whole state that its
    statistics say is small: they lag behind a queue's bursts, and an index
    whose rows follow the table's order looks cheaper than it is.
    """
    return f"state = (SELECT '{state}'::text)"


def _counted(state: JobState, *, estimate: bool = False) -> str:
    """The jobs one state counts; $1 is the now that splits pending jobs
    (on ``jobs_due``). For the planner's estimate, states are literals: its
    statistics then apply."""
    if state is JobState.SCHEDULED:
        return f"state IN {PENDING} AND next_try_at > $1::timestamptz"
    if state is JobState.ENQUEUED:
        return f"state IN {PENDING} AND next_try_at <= $1::timestamptz"
    return f"state = '{state}'" if estimate else _one_state(state)


def _count(s: str, state: JobState) -> str:
    """The capped count ($2 entries at most) of one state.

    Each reads an index in its order, so that the count stops at its cap
    there: unordered, the planner may read the table from the start when a
    state is most of it, as if the state's rows were spread evenly, which
    the rows of a queue table are not. Pending jobs are a range of
    ``jobs_due`` per queue (``served``: every queue with pending jobs) and
    priority, read in turn until $2 entries in all.
    """
    if not state.is_pending:
        return (
            f"(SELECT count(*) FROM (SELECT FROM {s}.jobs WHERE {_counted(state)} "
            "ORDER BY created_at LIMIT $2) AS counted)"
        )
    return (
        f"(SELECT count(*) FROM (SELECT FROM served CROSS JOIN {PRIORITIES} "
        f"CROSS JOIN LATERAL (SELECT FROM {s}.jobs WHERE {_counted(state)} "
        "AND queue = served.queue AND priority = p.priority ORDER BY next_try_at LIMIT $2) "
        "AS by_range LIMIT $2) AS counted)"
    )


@dataclass(frozen=True, slots=True)
class ListShape:
    """What changes the text of a list statement (the rest are parameters)."""

    newest_first: bool
    named: bool
    # Oldest first from a creation time (>=), rather than after a cursor (>).
    inclusive_start: bool = False


@dataclass(frozen=True, slots=True)
class Listing:
    """The operator's read statements for one schema."""

    pages: Mapping[ListShape, str]
    count: str
    estimates: Mapping[JobState, str]

    @classmethod
    def for_schema(cls, schema: str) -> Listing:
        """The statements for one schema (its name validated, then quoted)."""
        s = f'"{check_schema_name(schema)}"'
        shapes = [
            ListShape(newest_first, named, inclusive)
            for newest_first in (True, False)
            for named in (True, False)
            for inclusive in ((False,) if newest_first else (False, True))
        ]
        counts = ", ".join(_count(s, state) for state in JobState)
        served = served_queues(s, None, skip_paused=False)
        return cls(
            pages={shape: _page(s, shape) for shape in shapes},
            count=f"WITH RECURSIVE {served} SELECT {counts}",
            estimates={
                state: "EXPLAIN (FORMAT JSON) "
                f"SELECT FROM {s}.jobs WHERE {_counted(state, estimate=True)}"
                for state in JobState
            },
        )


def count_arguments(now: datetime) -> tuple[datetime, int]:
    """The parameters of ``Listing.count``: one entry beyond the exact limit
    tells that a state holds more."""
    return now, EXACT_COUNT_LIMIT + 1


def counts_of(row: Sequence[int]) -> tuple[dict[JobState, int], list[JobState]]:
    """The counts in the ``count`` statement's row (in ``JobState`` order),
    and the states that hold more than the exact limit."""
    counts = {state: int(row[i]) for i, state in enumerate(JobState)}
    return counts, [state for state, n in counts.items() if n > EXACT_COUNT_LIMIT]


def estimate_arguments(state: JobState, now: datetime) -> tuple[datetime, ...]:
    """The parameters of ``Listing.estimates[state]``."""
    return (now,) if state.is_pending else ()


def estimated_count(plan: str, counted: int) -> int:
    """The planner's row estimate in ``EXPLAIN (FORMAT JSON)`` text, never
    below what was counted already."""
    estimate = json.loads(plan)[0]["Plan"]["Plan Rows"]
    return max(int(estimate), counted)


def _page(s: str, shape: ListShape) -> str:
    """One page: a branch per stored state, merged in the page's order.

    $1 the stored states asked for, $2/$3 the start (created_at, id), $4 the
    creation time where the scan stops, $5 which pending jobs to keep (true:
    due by $6, false: due after it, NULL: all), $6 now, $7 the rows to
    fetch, $8 the job name.
    """
    order = "DESC" if shape.newest_first else "ASC"
    if shape.newest_first:
        start, stop = "<", ">="
    else:
        start, stop = (">=" if shape.inclusive_start else ">"), "<"
    named = "name = $8::text AND " if shape.named else ""
    branches = []
    for state in JobState:
        due = ""
        if state in PENDING_STATES:
            due = " AND ($5::boolean IS NULL OR (next_try_at <= $6::timestamptz) = $5::boolean)"
        branches.append(
            f"""(SELECT {JOB_COLUMNS} FROM {s}.jobs
    WHERE {named}{_one_state(state)} AND '{state}' = ANY($1::text[])
      AND (created_at, {_ID}) {start} ($2::timestamptz, $3::text)
      AND created_at {stop} $4::timestamptz{due}
    ORDER BY created_at {order}, {_ID} {order}
    LIMIT $7)"""
        )
    union = "\nUNION ALL ".join(branches)
    return f"""
SELECT {JOB_COLUMNS} FROM (
{union}
) AS page
ORDER BY created_at {order}, {_ID} {order}
LIMIT $7
"""


def list_arguments(query: JobQuery, now: datetime) -> tuple[ListShape, list[Any]]:
    """The statement shape and the parameters of one page of ``query``."""
    stored = stored_states(query)
    due = _due_filter(query)
    # A job stored enqueued was due when stored (base.py): a page of scheduled
    # jobs need not walk them.
    states = [
        state.value
        for state in (JobState if stored is None else stored)
        if not (due is False and state is JobState.ENQUEUED)
    ]
    (start_at, start_id), inclusive = _start(query)
    stop = _stop(query)
    shape = ListShape(query.newest_first, query.name is not None, inclusive)
    arguments: list[Any] = [
        states,
        start_at,
        start_id,
        stop,
        due,
        now,
        query.limit + 1,
    ]
    if query.name is not None:
        arguments.append(query.name)
    return shape, arguments


def _start(query: JobQuery) -> tuple[tuple[datetime, str], bool]:
    """Where the scan starts: the tighter of the cursor and the creation
    bound on that side, and whether it is inclusive."""
    after = query.after
    cursor = None if after is None else (_moment(after.created_us), after.job_id)
    if query.newest_first:
        # Both exclusive: created_at < until is (created_at, id) < (until, "").
        bounds = [(_LATEST if query.created_until is None else query.created_until, _NO_ID)]
        if cursor is not None:
            bounds.append(cursor)
        return min(bounds), False
    begin = _EARLIEST if query.created_from is None else query.created_from
    # A cursor at or after the range's start implies it; else the start implies the cursor.
    if cursor is not None and cursor[0] >= begin:
        return cursor, False
    return (begin, _NO_ID), True


def _stop(query: JobQuery) -> datetime:
    """Where the scan stops: the creation bound on the far side."""
    if query.newest_first:
        return _EARLIEST if query.created_from is None else query.created_from
    return _LATEST if query.created_until is None else query.created_until


def _due_filter(query: JobQuery) -> bool | None:
    """True to keep pending jobs that are due (enqueued), False those that are
    not (scheduled), None for all of them (or when none are listed)."""
    if query.states is None:
        return None
    enqueued = JobState.ENQUEUED in query.states
    if enqueued == (JobState.SCHEDULED in query.states):
        return None
    return enqueued


def _moment(created_us: int) -> datetime:
    """A cursor's microseconds as a datetime; one beyond what Python holds
    becomes the end of time on that side (no job is created there)."""
    try:
        return _EPOCH + timedelta(microseconds=created_us)
    except OverflowError:
        return _LATEST if created_us > 0 else _EARLIEST
