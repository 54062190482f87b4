"""Store errors shared by the backends: duplicate ids, and driver errors that are
no connection failure.

Every error a store raises to a caller is a ``MasaJobsError``. Connection
failures are ``reports_unavailable``'s (``_unavailable``); a network store also
decorates each public method with ``translates_driver_errors``, inside that
one, which asks the store what any other exception of its driver means (a
refused value, a full disk, a failed transaction, anything else) and raises
that, chained to the driver's exception. Exceptions that are not the driver's
(a bug, a caller's mistake such as a naive datetime) and cancellation pass
unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from ..exceptions import DuplicateJobError, MasaJobsError, StoreError
from ..records import JobRecord

__all__ = [
    "cut",
    "duplicate_job",
    "first_repeated_id",
    "refuse_repeated_ids",
    "shown",
    "translates_driver_errors",
]

# How much of an id or a driver's message an error message quotes: ids and
# values may be long (a store keeps what it is given), a message must stay readable.
_SHOWN_CHARACTERS = 200


class _Translates(Protocol):
    def _driver_error(self, call: str, exc: Exception) -> StoreError | None:
        """The error to raise for ``exc`` in ``call``; None to let it pass (not the
        driver's, or a connection failure that ``reports_unavailable`` words)."""


S = TypeVar("S", bound=_Translates)
P = ParamSpec("P")
T = TypeVar("T")


def translates_driver_errors(
    method: Callable[Concatenate[S, P], Awaitable[T]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, T]]:
    """Raise the store's error for a driver's exception that ``method`` meets."""

    @functools.wraps(method)
    async def translating(store: S, /, *args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(store, *args, **kwargs)
        except MasaJobsError:
            raise
        except Exception as exc:
            error = store._driver_error(method.__name__, exc)
            if error is None:
                raise
            raise error from exc

    return translating


def shown(value: object) -> str:
    """``repr(value)``, cut to a readable length: control characters come escaped."""
    return cut(repr(value))


def cut(text: str) -> str:
    """``text`` cut to a readable length (a driver's message may quote a long value)."""
    if len(text) <= _SHOWN_CHARACTERS:
        return text
    return f"{text[:_SHOWN_CHARACTERS]}... ({len(text)} characters)"


def first_repeated_id(records: Sequence[JobRecord]) -> str | None:
    """The first id a batch names twice, or None."""
    if len(records) < 2:
        return None
    seen: set[str] = set()
    for record in records:
        if record.id in seen:
            return record.id
        seen.add(record.id)
    return None


def refuse_repeated_ids(store: str, records: Sequence[JobRecord], *, tick: bool = False) -> None:
    """Raise ``DuplicateJobError`` for a batch that names an id twice, before
    anything of it is stored."""
    repeated = first_repeated_id(records)
    if repeated is not None:
        raise duplicate_job(store, repeated, in_batch=True, tick=tick)


def duplicate_job(
    store: str, job_id: str | None, *, in_batch: bool = False, tick: bool = False
) -> DuplicateJobError:
    """The error for an id that exists already (or twice in one batch)."""
    which = "a job" if job_id is None else f"the job id {shown(job_id)}"
    if in_batch:
        clash = f"the batch names {which} twice"
    elif job_id is None:
        clash = "a job of the batch has an id that is stored already"
    else:
        clash = f"{which} is stored already"
    outcome = "the tick did not fire" if tick else "nothing of the batch was stored"
    return DuplicateJobError(
        f"{store}: {clash}, and job ids are unique; {outcome}. Enqueue the job again "
        "without an id (enqueue picks a new one every time), or give the record an id "
        "that is not in use"
    )
