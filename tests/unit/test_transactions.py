"""Enqueue and completion in the application's transaction, above the stores.

The real transactional stores (PostgreSQL, SQLite) are tested against real
databases in tests/integration; here a memory store that plays one shows the
policy: the manager routes ``connection=`` to ``add_in`` and refuses it on a
store that cannot share a transaction, ``complete_in`` builds the right
outcome and turns a refusal into ``LeaseLostError``, and a worker whose
handler completed its job does not report the refusal of its own outcome as
a lost lease.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from uuid import uuid4

import pytest
from pydantic import BaseModel

from masa_jobs import (
    BackgroundJob,
    BackgroundJobManager,
    DefaultJobManager,
    JobOutcome,
    JobRecord,
    JobRegistry,
    JobState,
    MasaApp,
    MemoryJobStore,
    TransactionalStore,
    TransactionError,
    Worker,
    current_job,
)
from masa_jobs.stores import BACKENDS
from masa_jobs.testing import inline, manual

from .support import fast_options, running, wait_for_record

pytestmark = pytest.mark.anyio


@dataclass
class FakeTransaction:
    """The application's connection in an open transaction: writes wait for commit."""

    added: list[JobRecord] = field(default_factory=list)
    finished: list[JobOutcome] = field(default_factory=list)


class TransactionalMemoryStore(MemoryJobStore):
    """A memory store that plays a transactional one: ``add_in`` keeps the
    records on the connection, ``commit`` stores them; ``finish_in`` applies
    at once (as if the handler's transaction committed)."""

    transaction_connections = "a FakeTransaction"

    def __init__(self) -> None:
        super().__init__()
        # Lease tokens stolen by "another claim": finish_in refuses them.
        self.stolen: set[str] = set()

    async def add_in(self, connection: object, records: Sequence[JobRecord]) -> list[str]:
        assert isinstance(connection, FakeTransaction)
        connection.added.extend(records)
        return [record.id for record in records]

    async def commit(self, connection: FakeTransaction) -> None:
        await self.add(connection.added)

    async def finish_in(self, connection: object, worker_id: str, outcome: JobOutcome) -> bool:
        assert isinstance(connection, FakeTransaction)
        if outcome.job_id in self.stolen:
            return False
        connection.finished.append(outcome)
        if outcome.state is JobState.PROCESSING:
            return True
        return outcome.job_id in await self.finish(worker_id, [outcome])


class Order(BaseModel):
    key: str


EFFECTS: list[str] = []
CONNECTIONS: dict[str, FakeTransaction] = {}
STORES: list[TransactionalMemoryStore] = []


class ConfirmOrder(BackgroundJob[Order]):
    """Writes its effect and completes its job in one (fake) transaction."""

    async def execute(self, args: Order) -> None:
        connection = CONNECTIONS.setdefault(args.key, FakeTransaction())
        if STORES and args.key.startswith("stolen"):
            STORES[0].stolen.add(current_job().id)
        await current_job().complete_in(connection)
        EFFECTS.append(args.key)


class Shipment(BaseModel):
    key: str


class PackShipment(BackgroundJob[Shipment]):
    async def execute(self, args: Shipment) -> None:
        await current_job().complete_in(CONNECTIONS.setdefault(args.key, FakeTransaction()))


class LabelShipment(BackgroundJob[Shipment]):
    async def execute(self, args: Shipment) -> None:
        await current_job().complete_in(CONNECTIONS.setdefault(args.key, FakeTransaction()))


@pytest.fixture(autouse=True)
def _clean() -> None:
    EFFECTS.clear()
    CONNECTIONS.clear()
    STORES.clear()


def test_only_the_stores_that_share_the_application_s_database_are_transactional() -> None:
    transactional = {
        name for name, backend in BACKENDS.items() if hasattr(_class_of(backend.store), "add_in")
    }
    assert transactional == {"postgres", "sqlite"}
    assert not isinstance(MemoryJobStore(), TransactionalStore)
    assert isinstance(TransactionalMemoryStore(), TransactionalStore)


async def test_a_store_that_cannot_share_the_transaction_refuses_the_connection() -> None:
    store = MemoryJobStore()
    manager = DefaultJobManager(store, JobRegistry([ConfirmOrder]), fast_options())

    with pytest.raises(TransactionError, match=r"only the PostgreSQL and SQLite stores can"):
        await manager.enqueue(Order(key="a"), connection=FakeTransaction())
    with pytest.raises(TransactionError, match=r"enqueue after the commit instead"):
        await manager.enqueue_many([(Order(key="b"), None)], connection=FakeTransaction())

    assert await store.count_by_state(await store.now()) == dict.fromkeys(JobState, 0)


async def test_enqueue_with_a_connection_stores_the_job_only_at_commit() -> None:
    store = TransactionalMemoryStore()
    manager = DefaultJobManager(store, JobRegistry([ConfirmOrder]), fast_options())
    transaction = FakeTransaction()

    job_id = await manager.enqueue(Order(key="a"), connection=transaction)
    ids = await manager.enqueue_many([(Order(key="b"), 5.0)], connection=transaction)

    assert [record.id for record in transaction.added] == [job_id, *ids]
    assert await manager.get(job_id) is None
    await store.commit(transaction)
    stored = await manager.get(job_id)
    assert stored is not None
    assert stored.state is JobState.ENQUEUED


async def test_the_static_facade_passes_the_connection_on() -> None:
    store = TransactionalMemoryStore()
    container = _container_over(store)
    MasaApp.build(container)
    try:
        transaction = FakeTransaction()
        job_id = await BackgroundJobManager.enqueue(Order(key="a"), connection=transaction)
        assert [record.id for record in transaction.added] == [job_id]
    finally:
        MasaApp.reset()


async def test_complete_in_finishes_the_job_in_the_handler_s_transaction(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = TransactionalMemoryStore()
    registry = JobRegistry([ConfirmOrder])
    manager = DefaultJobManager(store, registry, fast_options())
    worker = Worker(store, registry, fast_options())
    key = uuid4().hex
    async with running(worker):
        job_id = await manager.enqueue(Order(key=key))
        record = await wait_for_record(store, job_id, lambda r: r.state.is_finished)

    (completion,) = CONNECTIONS[key].finished
    assert completion.state is JobState.SUCCEEDED
    assert completion.lease_token is not None
    assert completion.done_handlers == ("tests.unit.test_transactions.ConfirmOrder",)
    assert record.state is JobState.SUCCEEDED
    assert record.attempts == 1
    assert [key] == EFFECTS
    # The worker's own outcome was refused (the job was finished already):
    # that is the completion, not a lost lease.
    assert worker.leases_lost == 0
    assert "lease lost" not in caplog.text


async def test_a_job_with_two_handlers_finishes_with_the_last_completion() -> None:
    store = TransactionalMemoryStore()
    registry = JobRegistry([PackShipment, LabelShipment])
    manager = DefaultJobManager(store, registry, fast_options())
    key = uuid4().hex
    async with running(Worker(store, registry, fast_options())):
        job_id = await manager.enqueue(Shipment(key=key))
        record = await wait_for_record(store, job_id, lambda r: r.state.is_finished)

    first, last = CONNECTIONS[key].finished
    assert first.state is JobState.PROCESSING
    assert len(first.done_handlers) == 1
    assert last.state is JobState.SUCCEEDED
    assert len(last.done_handlers) == 2
    assert record.state is JobState.SUCCEEDED


async def test_complete_in_of_a_run_that_lost_its_lease_raises_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = TransactionalMemoryStore()
    STORES.append(store)
    registry = JobRegistry([ConfirmOrder])
    manager = DefaultJobManager(store, registry, fast_options())
    key = f"stolen-{uuid4().hex}"
    caplog.set_level(logging.WARNING, "masa_jobs.worker")
    async with running(Worker(store, registry, fast_options())):
        job_id = await manager.enqueue(Order(key=key))
        record = await wait_for_record(store, job_id, lambda r: r.state is JobState.SCHEDULED)

    assert EFFECTS == []  # the handler's code after complete_in never ran
    assert CONNECTIONS[key].finished == []
    assert "LeaseLostError" in (record.last_error or "")
    assert "complete_in refused on attempt 1: its lease is lost" in caplog.text


async def test_complete_in_on_a_store_that_cannot_share_the_transaction_fails_the_run() -> None:
    store = MemoryJobStore()
    registry = JobRegistry([ConfirmOrder])
    manager = DefaultJobManager(store, registry, fast_options())
    async with running(Worker(store, registry, fast_options())):
        job_id = await manager.enqueue(Order(key="a"))
        record = await wait_for_record(store, job_id, lambda r: r.state is JobState.SCHEDULED)

    assert "TransactionError" in (record.last_error or "")
    assert "PostgreSQL or SQLite" in (record.last_error or "")


async def test_the_testing_modes_accept_a_connection_and_complete_in() -> None:
    container = _container_over(MemoryJobStore())
    MasaApp.build(container)
    try:
        with inline(container) as jobs:
            await BackgroundJobManager.enqueue(Order(key="inline"), connection=FakeTransaction())
        assert jobs.performed(Order) == [Order(key="inline")]
        with manual(container) as recorded:
            await BackgroundJobManager.enqueue(Order(key="manual"), connection=FakeTransaction())
            assert recorded.enqueued(Order) == [Order(key="manual")]
            result = await recorded.drain()
        assert result.succeeded == 1
    finally:
        MasaApp.reset()
    assert EFFECTS == ["inline", "manual"]


def _class_of(reference: str) -> type:
    module, name = reference.split(":")
    found: type = getattr(importlib.import_module(module), name)
    return found


def _container_over(store: MemoryJobStore) -> object:
    from dependency_injector import providers
    from masa_jobs.containers import BackgroundJobContainer

    container = BackgroundJobContainer()
    container.job_store.override(providers.Object(store))
    container.job_registry.override(providers.Object(JobRegistry([ConfirmOrder])))
    return container
