"""Completing a job in the handler's own transaction: ``JobContext.complete_in``.

A handler that writes its effect to the store's database can record its job
done in the same transaction, so that the effect and the completion commit
together: a crash between them can no longer run the effect twice. The write
is fenced like every outcome (the claim's lease token), so a handler whose
lease was lost gets ``LeaseLostError`` and its transaction rolls back.

The worker learns of the completion through ``on_completed``: the job's
later outcome (and any renewal) finding the job no longer held is then that
completion, not a lost lease.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from .exceptions import LeaseLostError, MasaJobsError, TransactionError
from .records import JobOutcome, JobRecord, JobState, utcnow
from .stores.base import TransactionalStore

__all__ = [
    "Completion",
    "CompletionSource",
    "Completions",
    "InlineCompletions",
    "RunCompletion",
    "complete_outside_a_worker",
]

logger = logging.getLogger("masa_jobs.worker")


class RunCompletion(Protocol):
    """The completion of one run, as the executor sees it."""

    current: str | None
    handlers: tuple[str, ...]

    async def complete_in(self, connection: object) -> None: ...


class CompletionSource(Protocol):
    def of(self, record: JobRecord, done: list[str]) -> RunCompletion: ...


class Completion:
    """What ``complete_in`` needs of one run of one job; the executor says
    which handler runs (``current``) and which the job has (``handlers``)."""

    __slots__ = ("_done", "_owner", "_record", "current", "handlers")

    def __init__(self, owner: Completions, record: JobRecord, done: list[str]) -> None:
        self._owner = owner
        self._record = record
        # The executor's own list: it grows as handlers succeed.
        self._done = done
        self.current: str | None = None
        self.handlers: tuple[str, ...] = ()

    async def complete_in(self, connection: object) -> None:
        record, current = self._record, self.current
        if current is None:
            raise MasaJobsError(
                "complete_in() was called outside a handler's execute(): call it from "
                "the handler, inside the transaction that writes the job's effect"
            )
        done = tuple(self._done) if current in self._done else (*self._done, current)
        final = all(handler in done for handler in self.handlers)
        outcome = JobOutcome(
            job_id=record.id,
            state=JobState.SUCCEEDED if final else JobState.PROCESSING,
            attempts=record.attempts,
            next_try_at=record.next_try_at,
            done_handlers=done,
            finished_at=utcnow() if final else None,
            lease_token=record.lease_token,
        )
        owner = self._owner
        if not await owner.store.finish_in(connection, owner.worker_id, outcome):
            logger.warning(
                "job %s (%s): complete_in refused on attempt %d: its lease is lost (it "
                "lapsed and the job was claimed again, or an operator cancelled or moved "
                "it); the handler's transaction must roll back",
                record.id,
                record.name,
                record.attempts,
            )
            raise LeaseLostError(
                f"job {record.id} ({record.name}) cannot be completed in this transaction: "
                "it is no longer held by this run (its lease lapsed and another worker "
                "claimed it, or an operator cancelled or moved it). Nothing was written; "
                "roll the transaction back (letting this exception leave the transaction's "
                "`with` block does), so that the effect is not committed"
            )
        if final:
            owner.on_completed(record.id)


class Completions:
    """Makes the ``Completion`` of each run of one worker over one store."""

    __slots__ = ("on_completed", "store", "worker_id")

    def __init__(
        self, store: TransactionalStore, worker_id: str, on_completed: Callable[[str], None]
    ) -> None:
        self.store = store
        self.worker_id = worker_id
        # Told the id of each job whose completion was written in a transaction.
        self.on_completed = on_completed

    def of(self, record: JobRecord, done: list[str]) -> Completion:
        return Completion(self, record, done)


class InlineCompletion:
    """``complete_in`` in the testing modes: their jobs are not in the
    application's database, so there is nothing to write; the handler's
    outcome decides, as if the transaction committed."""

    __slots__ = ("current", "handlers")

    def __init__(self) -> None:
        self.current: str | None = None
        self.handlers: tuple[str, ...] = ()

    async def complete_in(self, connection: object) -> None:
        return None


class InlineCompletions:
    """Makes an ``InlineCompletion`` for every run (the manual testing mode)."""

    __slots__ = ()

    def of(self, record: JobRecord, done: list[str]) -> RunCompletion:
        return InlineCompletion()


def complete_outside_a_worker() -> TransactionError:
    return TransactionError(
        "complete_in() needs a job run by a worker on a store that shares the "
        "application's transactions (PostgreSQL or SQLite); this job runs on a store "
        "that keeps its jobs elsewhere (memory, Redis): write the effect, then let the "
        "handler return"
    )
