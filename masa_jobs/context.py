"""What a running handler may know about the job it runs: ``current_job()``.

A context variable, set by the executor around the handlers of one job, so
that a handler (or anything it calls) can log or record its job id, attempt
and lease without the ``execute(args)`` signature growing.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from typing import Protocol

from ._completion import complete_outside_a_worker
from .exceptions import MasaJobsError
from .records import JobRecord

__all__ = ["JobContext", "current_job"]


class _Completes(Protocol):
    async def complete_in(self, connection: object) -> None: ...


@dataclass(frozen=True, slots=True)
class JobContext:
    """The job being executed: ``attempt`` counts executions started, this one
    included; ``lease_token`` is the fencing value of the claim that runs it."""

    id: str
    name: str
    attempt: int
    worker_id: str | None
    lease_token: str | None
    _completion: _Completes | None = field(default=None, repr=False, compare=False)

    async def complete_in(self, connection: object) -> None:
        """Record this handler done, and the job ``succeeded`` once it is the
        job's last handler, in the open transaction of ``connection`` on the
        store's database (an asyncpg or SQLAlchemy connection on PostgreSQL,
        a ``sqlite3`` or SQLAlchemy one on SQLite). Call it last, just before
        the commit: the handler's writes and its job's completion then commit
        together, or not at all, and a crash between them cannot run the
        effect twice. ``LeaseLostError`` when the job is no longer this run's
        (nothing written: let it roll the transaction back);
        ``TransactionError`` on a store that cannot share the transaction."""
        if self._completion is None:
            raise complete_outside_a_worker()
        await self._completion.complete_in(connection)


_current: ContextVar[JobContext | None] = ContextVar("masa_jobs_current_job", default=None)


def current_job() -> JobContext:
    """The job the calling handler runs; ``MasaJobsError`` outside a handler."""
    context = _current.get()
    if context is None:
        raise MasaJobsError(
            "current_job() was called outside a running job: call it from a handler's "
            "execute() (or code it calls), not at import time or from a request handler"
        )
    return context


@contextmanager
def running(record: JobRecord, completion: _Completes | None = None) -> Iterator[JobContext]:
    """Make ``record`` the current job for the duration of the block;
    ``completion`` is what its ``complete_in`` writes through, if anything."""
    context = _context_of(record, completion)
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)


def enter_job(record: JobRecord, completion: _Completes | None = None) -> Token[JobContext | None]:
    """``running`` without the context manager, for the worker's path of every
    job: the caller passes the returned token to ``leave_job`` when the run ends."""
    return _current.set(_context_of(record, completion))


def leave_job(token: Token[JobContext | None]) -> None:
    _current.reset(token)


def _context_of(record: JobRecord, completion: _Completes | None) -> JobContext:
    return JobContext(
        id=record.id,
        name=record.name,
        attempt=record.attempts,
        worker_id=record.lease_owner,
        lease_token=record.lease_token,
        _completion=completion,
    )
