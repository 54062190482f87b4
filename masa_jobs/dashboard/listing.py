"""The jobs list's filters: read from the query string, turned into a ``JobQuery``.

The filters travel in the query string (so a filtered list is a link one can
share), and so does the page's cursor. Times are UTC: a value without an
offset (what a ``datetime-local`` field sends) is read as UTC.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from ..exceptions import InvalidQueryError
from ..queries import JobQuery
from ..records import JobState

__all__ = ["NEWEST", "OLDEST", "PAGE_SIZE", "JobFilter", "loose_filter", "parse_filter"]

# Jobs on one page: a screenful of rows that still answers in milliseconds.
PAGE_SIZE = 50
NEWEST, OLDEST = "newest", "oldest"
# A job name is short; a longer filter value is a mistake or an attack.
_MAX_NAME_CHARS = 500


@dataclass(frozen=True, slots=True)
class JobFilter:
    """What the jobs list shows, as the form and the links carry it."""

    state: JobState | None = None
    name: str = ""
    created_from: str = ""
    created_until: str = ""
    order: str = NEWEST
    cursor: str | None = None

    def query(self) -> JobQuery:
        """The query of this page (``InvalidQueryError`` for a bad cursor)."""
        return JobQuery.of(
            self.state,
            name=self.name or None,
            created_from=_moment("created from", self.created_from),
            created_until=_moment("created until", self.created_until),
            newest_first=self.order != OLDEST,
            limit=PAGE_SIZE,
            cursor=self.cursor,
        )

    def params(self, *, cursor: str | None = None) -> dict[str, str]:
        """The query string of this list (at ``cursor``; the first page without one)."""
        values = {
            "state": self.state.value if self.state is not None else "",
            "name": self.name,
            "from": self.created_from,
            "until": self.created_until,
            "order": self.order if self.order != NEWEST else "",
            "cursor": cursor or "",
        }
        return {key: value for key, value in values.items() if value}

    @property
    def filtered(self) -> bool:
        return bool(self.params())


def parse_filter(params: Mapping[str, str]) -> JobFilter:
    """The filter a query string asks for; ``InvalidQueryError`` says what is wrong."""
    state_text = params.get("state", "").strip()
    order = params.get("order", "").strip() or NEWEST
    job_filter = JobFilter(
        state=_state(state_text),
        name=params.get("name", "").strip(),
        created_from=params.get("from", "").strip(),
        created_until=params.get("until", "").strip(),
        order=order,
        cursor=params.get("cursor", "").strip() or None,
    )
    if order not in (NEWEST, OLDEST):
        raise InvalidQueryError(f"order must be {NEWEST!r} or {OLDEST!r}, not {order!r}")
    if len(job_filter.name) > _MAX_NAME_CHARS:
        raise InvalidQueryError(f"a job name has at most {_MAX_NAME_CHARS} characters")
    return job_filter


def loose_filter(params: Mapping[str, str]) -> JobFilter:
    """The filter's fields as typed, for showing the form again next to an error."""
    state_text = params.get("state", "")
    return JobFilter(
        state=JobState(state_text) if state_text in set(JobState) else None,
        name=params.get("name", "")[:_MAX_NAME_CHARS],
        created_from=params.get("from", "")[:_MAX_NAME_CHARS],
        created_until=params.get("until", "")[:_MAX_NAME_CHARS],
        order=OLDEST if params.get("order") == OLDEST else NEWEST,
    )


def _state(text: str) -> JobState | None:
    if not text:
        return None
    try:
        return JobState(text)
    except ValueError:
        states = ", ".join(s.value for s in JobState)
        raise InvalidQueryError(f"state {text!r} is not one of {states}") from None


def _moment(label: str, text: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidQueryError(
            f"{label} {text!r} is not a date and time such as 2024-05-01T12:30 (UTC)"
        ) from None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
