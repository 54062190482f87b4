"""The memory store's ordered views of its jobs, for operator reads.

Jobs are grouped in *buckets* by stored state (``scheduled`` and ``enqueued``
share the ``pending`` bucket: the clock tells them apart). Each bucket keeps
its jobs in list order, ``(created_at in microseconds, id)``, once per bucket
and once per job name and bucket; pending jobs are also kept by due time, and
finished jobs by finish time. A page reads ``limit + 1`` entries from each
bucket it needs and merges them; counts are the sizes of the buckets, and the
pending split by the clock is one bisection of the due-time order.

The views are brought up to date on read, not on write: adding, claiming and
finishing a job only marks it (one set insert), so that the worker's hot path
stays as cheap as it was, and every read first moves the jobs marked since
the previous read to their place, in key order (in-order inserts into a
``SortedList`` cost a fraction of random ones). So a page costs
O(limit · log n) and a count O(log n), plus, once, the placing of the jobs
that changed since the previous read: a job added, run and finished between
two reads is placed once, in its final bucket. Removing a job (delete, purge)
unplaces it at once, so the marks never outlive the jobs; a purge that finds
no job finished early enough (``may_have_finished_before``) places nothing.
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any, NamedTuple

# sortedcontainers ships no type information; this module keeps its uses typed.
from sortedcontainers import SortedList  # type: ignore[import-untyped]

from ..queries import JobQuery
from ..records import FINISHED_STATES, JobRecord, JobState, display_state, to_us
from ._listing import created_bounds_us, stored_states

__all__ = ["JobIndex"]

# Where pending jobs (stored as scheduled or enqueued) are kept.
_PENDING = "pending"
_FINISHED_BUCKETS = tuple(sorted(state.value for state in FINISHED_STATES))
_BUCKETS = (_PENDING, JobState.PROCESSING.value, *_FINISHED_BUCKETS)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MINUTE_US = 60_000_000

# A job's place in an order: (microseconds, id); ids break ties.
Key = tuple[int, str]


class _Place(NamedTuple):
    """Where one job sits in the views: what ``sync`` compares and undoes
    (a named tuple: one is built per job placed, and tuples build fastest)."""

    bucket: str
    name: str
    created: Key
    due: Key | None
    finished: Key | None


def _at(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _bucket(state: JobState) -> str:
    return _PENDING if state.is_pending else state.value


def _place(record: JobRecord) -> _Place:
    bucket = _bucket(record.state)
    due = (to_us(record.next_try_at), record.id) if bucket == _PENDING else None
    finished = None
    if record.state in FINISHED_STATES and record.finished_at is not None:
        finished = (to_us(record.finished_at), record.id)
    return _Place(bucket, record.name, (to_us(record.created_at), record.id), due, finished)


class _Sorted:
    """A typed face of ``SortedList`` for the keys of one order."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        self._items: Any = SortedList()

    def __len__(self) -> int:
        return len(self._items)

    def remove(self, key: Key) -> None:
        self._items.remove(key)

    def add_all(self, keys: list[Key]) -> None:
        """Insert every key: in order, or by one merge sort for a large batch."""
        self._items.update(keys)

    def remove_all(self, keys: list[Key]) -> None:
        """Remove every key, in order (neighbours share a sublist)."""
        keys.sort()
        for key in keys:
            self._items.remove(key)

    def first(self) -> Key | None:
        return None if not self._items else self._key(self._items[0])

    def count_below(self, bound: tuple[int]) -> int:
        """How many keys sort before ``bound`` (a key prefix)."""
        return int(self._items.bisect_left(bound))

    def range(self, bounds: _Bounds, reverse: bool) -> Iterator[Key]:
        keys: Iterator[Key] = self._items.irange(
            bounds.low, bounds.high, inclusive=(bounds.low_inclusive, False), reverse=reverse
        )
        return keys

    @staticmethod
    def _key(item: object) -> Key:
        assert isinstance(item, tuple)
        return item


@dataclass(frozen=True, slots=True)
class _Bounds:
    """A range of keys: ``low`` inclusive or not, ``high`` exclusive; None is open."""

    low: Key | None = None
    high: Key | None = None
    low_inclusive: bool = True


def _list_bounds(query: JobQuery) -> _Bounds:
    """The keys a query's creation range and cursor leave."""
    start, end = created_bounds_us(query)
    # An empty id sorts before every job's: (us, "") is the first key of that microsecond.
    low: Key | None = None if start is None else (start, "")
    high: Key | None = None if end is None else (end, "")
    after = query.after
    if after is None:
        return _Bounds(low, high)
    position = (after.created_us, after.job_id)
    if query.newest_first:
        return _Bounds(low, position if high is None else min(high, position))
    if low is None or position >= low:
        return _Bounds(position, high, low_inclusive=False)
    return _Bounds(low, high)


class JobIndex:
    """Ordered views of the memory store's jobs; see the module docstring.

    ``touch`` marks a job whose state, due time or existence changed;
    ``sync`` must run (with the store's jobs) before any read.
    """

    def __init__(self) -> None:
        self._buckets = {bucket: _Sorted() for bucket in _BUCKETS}
        self._named: dict[tuple[str, str], _Sorted] = {}
        self._due = _Sorted()
        self._finished = {bucket: _Sorted() for bucket in _FINISHED_BUCKETS}
        self._places: dict[str, _Place] = {}
        self._dirty: set[str] = set()
        # No job finished before this time (None: no job finished at all). It
        # may be earlier than the earliest finished job, never later.
        self._earliest: datetime | None = None

    def touch(self, record: JobRecord) -> None:
        """Note that a job changed (``record`` is it now): the next read places it again."""
        self._dirty.add(record.id)
        finished_at = record.finished_at
        if finished_at is not None and (self._earliest is None or finished_at < self._earliest):
            self._earliest = finished_at

    def may_have_finished_before(self, moment: datetime) -> bool:
        """False when no job finished before ``moment``: a purge has nothing to do,
        and need not bring the views up to date to find out."""
        return self._earliest is not None and self._earliest < moment

    def forget(self, job_id: str) -> None:
        """Unplace a removed job at once."""
        self._dirty.discard(job_id)
        place = self._places.pop(job_id, None)
        if place is not None:
            for order, key in self._orders_of(place):
                order.remove(key)
            if not self._named[place.name, place.bucket]:
                del self._named[place.name, place.bucket]

    def sync(self, jobs: Mapping[str, JobRecord]) -> None:
        """Move every job touched since the last read to its place."""
        if not self._dirty:
            return
        moves = _Moves()
        places = self._places
        for job_id in self._dirty:
            record = jobs.get(job_id)
            new = None if record is None else _place(record)
            old = places.get(job_id)
            if new == old:
                continue
            if old is not None:
                moves.out(self._orders_of(old))
                del places[job_id]
            if new is not None:
                moves.into(self._orders_of(new))
                places[job_id] = new
        self._dirty.clear()
        moves.apply()
        self._drop_empty_names()

    def page(
        self, query: JobQuery, now: datetime, jobs: Mapping[str, JobRecord]
    ) -> list[JobRecord]:
        """Up to ``query.limit + 1`` jobs of the query's page, in its order."""
        states = stored_states(query)
        buckets = _BUCKETS if states is None else sorted({_bucket(s) for s in states})
        orders = [self._order(bucket, query.name) for bucket in buckets]
        bounds = _list_bounds(query)
        newest_first = query.newest_first
        merged = heapq.merge(
            *(order.range(bounds, newest_first) for order in orders if order is not None),
            reverse=newest_first,
        )
        records: Iterable[JobRecord] = (jobs[job_id] for _, job_id in merged)
        if query.states is not None:
            # Only pending jobs can show a state other than their bucket's:
            # one kind of them is skipped (the documented exception).
            shown = query.states
            records = (r for r in records if display_state(r, now) in shown)
        return list(islice(records, query.limit + 1))

    def counts(self, now: datetime) -> dict[JobState, int]:
        """Jobs per state, pending ones split by ``now``."""
        counts = dict.fromkeys(JobState, 0)
        for state in (JobState.PROCESSING, *FINISHED_STATES):
            counts[state] = len(self._buckets[state.value])
        due = self._due.count_below((to_us(now) + 1,))
        counts[JobState.ENQUEUED] = due
        counts[JobState.SCHEDULED] = len(self._buckets[_PENDING]) - due
        return counts

    def first_due(self) -> str | None:
        """The id of the pending job due first."""
        first = self._due.first()
        return None if first is None else first[1]

    def take_finished_before(
        self, buckets: Iterable[str], before: datetime, limit: int | None
    ) -> list[str]:
        """Unplace up to ``limit`` jobs of ``buckets`` finished before ``before``,
        oldest first, and return their ids (for the caller to remove)."""
        bounds = _Bounds(high=(to_us(before), ""))
        merged = heapq.merge(*(self._finished[b].range(bounds, False) for b in sorted(buckets)))
        found = [job_id for _, job_id in islice(merged, limit)]
        for job_id in found:
            self.forget(job_id)
        firsts = [order.first() for order in self._finished.values()]
        self._earliest = min((_at(key[0]) for key in firsts if key is not None), default=None)
        return found

    def finished_per_minute(self, since: datetime) -> list[tuple[datetime, int]]:
        """Jobs finished in each whole minute (UTC) from ``since`` on, oldest first."""
        bounds = _Bounds(low=(to_us(since), ""))
        minutes: Counter[int] = Counter(
            us - us % _MINUTE_US
            for order in self._finished.values()
            for us, _ in order.range(bounds, False)
        )
        return [(_at(us), n) for us, n in sorted(minutes.items())]

    def _order(self, bucket: str, name: str | None) -> _Sorted | None:
        return self._buckets[bucket] if name is None else self._named.get((name, bucket))

    def _orders_of(self, place: _Place) -> Iterator[tuple[_Sorted, Key]]:
        """Each order a job sits in, with its key there."""
        yield self._buckets[place.bucket], place.created
        named = self._named.get((place.name, place.bucket))
        if named is None:
            named = self._named[place.name, place.bucket] = _Sorted()
        yield named, place.created
        if place.due is not None:
            yield self._due, place.due
        if place.finished is not None:
            yield self._finished[place.bucket], place.finished

    def _drop_empty_names(self) -> None:
        # Names come and go: an empty order is dropped, not kept forever.
        for empty in [key for key, order in self._named.items() if not order]:
            del self._named[empty]


class _Moves:
    """The keys one ``sync`` takes out of and puts into each order, applied
    in key order: a batch of inserts in order (or a rebuild, for a batch as
    large as the order) costs far less than the same inserts at random."""

    def __init__(self) -> None:
        self._out: dict[_Sorted, list[Key]] = {}
        self._in: dict[_Sorted, list[Key]] = {}

    def out(self, entries: Iterable[tuple[_Sorted, Key]]) -> None:
        for order, key in entries:
            self._out.setdefault(order, []).append(key)

    def into(self, entries: Iterable[tuple[_Sorted, Key]]) -> None:
        for order, key in entries:
            self._in.setdefault(order, []).append(key)

    def apply(self) -> None:
        for order, keys in self._out.items():
            order.remove_all(keys)
        for order, keys in self._in.items():
            order.add_all(keys)
