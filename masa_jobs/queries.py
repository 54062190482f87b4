"""Operator queries: which jobs to list, and one page of the answer.

Every list is paged by a **cursor** (keyset pagination), never by an offset:
a page names the last job it returned, and the next page starts after it, so
that each page costs the same on every store however many jobs come before
it, and jobs that change state meanwhile are neither skipped nor shown twice
among the ones that stay.

Jobs are ordered by ``(created_at, id)``, newest first unless the query asks
for oldest first. The cursor is opaque to callers (URL-safe text); stores
read it with ``decode_cursor``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Generic, TypeVar

from .exceptions import InvalidQueryError
from .records import JobRecord, JobState, to_us

__all__ = [
    "EXACT_COUNT_LIMIT",
    "MAX_PAGE_SIZE",
    "Cursor",
    "JobQuery",
    "Page",
    "decode_cursor",
    "encode_cursor",
    "page_of",
    "pages",
    "sort_key",
]

# Rows one page holds at most: a page is one short statement or script call,
# and a dashboard never needs more on one screen.
MAX_PAGE_SIZE = 500
# Up to this many jobs per state, every store counts exactly; above it, a store
# whose exact count would scan (PostgreSQL) may give its planner's estimate.
EXACT_COUNT_LIMIT = 10_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where a page ended: the ``created_at`` (UTC microseconds) and id of its last job."""

    created_us: int
    job_id: str


@dataclass(frozen=True, slots=True)
class JobQuery:
    """Which jobs to list, and how many.

    ``states`` are the states callers see (``scheduled`` and ``enqueued``
    split pending jobs by the store's clock); None lists every state.
    ``name`` keeps one job name. ``created_from`` (inclusive) and
    ``created_until`` (exclusive) bound ``created_at``. ``cursor`` is the
    ``next_cursor`` of the page before.
    """

    states: frozenset[JobState] | None = None
    name: str | None = None
    created_from: datetime | None = None
    created_until: datetime | None = None
    newest_first: bool = True
    limit: int = 50
    cursor: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_PAGE_SIZE:
            raise InvalidQueryError(
                f"a page holds 1 to {MAX_PAGE_SIZE} jobs, not {self.limit}; "
                "page with the cursor for more"
            )
        for label, value in (
            ("created_from", self.created_from),
            ("created_until", self.created_until),
        ):
            if value is not None and value.tzinfo is None:
                raise InvalidQueryError(
                    f"{label} must be timezone-aware (e.g. datetime.now(UTC)), not {value!r}"
                )
        if self.states is not None and not self.states:
            raise InvalidQueryError("states is empty: pass None to list every state")
        if self.cursor is not None:
            decode_cursor(self.cursor)

    @classmethod
    def of(
        cls,
        states: Collection[JobState] | JobState | None = None,
        **fields: object,
    ) -> JobQuery:
        """A query from one state, several, or None (every state)."""
        if isinstance(states, JobState):
            states = (states,)
        chosen = None if states is None else frozenset(JobState(s) for s in states)
        return cls(states=chosen, **fields)  # type: ignore[arg-type]

    @property
    def after(self) -> Cursor | None:
        """The decoded cursor: list the jobs after this one in the query's order."""
        return None if self.cursor is None else decode_cursor(self.cursor)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list; ``next_cursor`` is None on the last page."""

    items: tuple[T, ...] = field(default=())
    next_cursor: str | None = None


def sort_key(record: JobRecord) -> tuple[int, str]:
    """The order of every list: ``(created_at in microseconds, id)``."""
    return to_us(record.created_at), record.id


def encode_cursor(record: JobRecord) -> str:
    """The cursor that lists the jobs after ``record``."""
    created_us, job_id = sort_key(record)
    raw = f"{created_us}:{job_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> Cursor:
    """The position a cursor names; ``InvalidQueryError`` for text no page gave."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        raw = base64.urlsafe_b64decode(padded.encode("ascii")).decode()
        created, job_id = raw.split(":", 1)
        if not job_id or not created.lstrip("-").isdigit():
            raise ValueError(raw)
        return Cursor(int(created), job_id)
    except (ValueError, UnicodeError, binascii.Error) as error:
        raise InvalidQueryError(
            f"cursor {cursor[:40]!r} is not one a page returned; start again without a cursor"
        ) from error


def page_of(records: list[JobRecord], limit: int) -> Page[JobRecord]:
    """A page from up to ``limit + 1`` records in the query's order: the extra
    one only tells that another page follows."""
    items = tuple(records[:limit])
    more = len(records) > limit
    return Page(items, encode_cursor(items[-1]) if more and items else None)


async def pages(
    fetch: Callable[[JobQuery], Awaitable[Page[T]]], query: JobQuery
) -> AsyncGenerator[Page[T], None]:
    """Every page of ``query`` in turn, each fetched with the cursor of the one
    before: the walk a caller that wants a whole list makes."""
    while True:
        page = await fetch(query)
        yield page
        if page.next_cursor is None:
            return
        query = replace(query, cursor=page.next_cursor)
