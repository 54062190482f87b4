"""Job args, handlers and helpers shared by the unit tests.

The handlers live at module level so that discovery and wiring find them like
a user's. They record each call in ``CALLS``; a test steers them through
``SIGNALS`` (set when a handler runs for a key), ``GATES`` (a blocking
handler waits on its key's gate) and ``FAILURES`` (how many more times the
flaky handler fails for a key). The autouse fixture in conftest clears them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio
from dependency_injector.wiring import Provide, inject
from pydantic import BaseModel

from masa_jobs import BackgroundJob, BackgroundJobOptions, JobRecord, JobStore, Worker
from masa_jobs.records import utcnow

T = TypeVar("T")

CALLS: list[tuple[str, str]] = []
SIGNALS: dict[str, anyio.Event] = {}
GATES: dict[str, anyio.Event] = {}
FAILURES: dict[str, int] = {}


def record_call(handler: str, key: str) -> None:
    CALLS.append((handler, key))
    signal = SIGNALS.get(key)
    if signal is not None:
        signal.set()


def calls_of(handler: str) -> list[str]:
    return [key for name, key in CALLS if name == handler]


def signal(key: str) -> anyio.Event:
    """An event set when a handler runs for ``key``."""
    event = SIGNALS[key] = anyio.Event()
    return event


def gate(key: str) -> anyio.Event:
    """The event the blocking handler waits on for ``key``; set it to let the job end."""
    event = GATES[key] = anyio.Event()
    return event


class Greet(BaseModel):
    key: str


class GreetJob(BackgroundJob[Greet]):
    async def execute(self, args: Greet) -> None:
        record_call("greet", args.key)


class Flaky(BaseModel):
    key: str


class FlakySteady(BackgroundJob[Flaky]):
    async def execute(self, args: Flaky) -> None:
        record_call("steady", args.key)


class FlakyFailing(BackgroundJob[Flaky]):
    async def execute(self, args: Flaky) -> None:
        record_call("failing", args.key)
        if FAILURES.get(args.key, 0) > 0:
            FAILURES[args.key] -= 1
            raise RuntimeError(f"flaky failure for {args.key}")


class Doomed(BaseModel):
    key: str


class DoomedJob(BackgroundJob[Doomed]):
    async def execute(self, args: Doomed) -> None:
        record_call("doomed", args.key)
        raise RuntimeError(f"doomed {args.key}")


class Blocking(BaseModel):
    key: str


class BlockingJob(BackgroundJob[Blocking]):
    async def execute(self, args: Blocking) -> None:
        record_call("blocking", args.key)
        await GATES[args.key].wait()
        record_call("unblocked", args.key)


class Strict(BaseModel):
    count: int


class StrictJob(BackgroundJob[Strict]):
    async def execute(self, args: Strict) -> None:
        record_call("strict", str(args.count))


class Salute(BaseModel):
    key: str


class InjectedSaluter(BackgroundJob[Salute]):
    """Gets ``greeting`` from the root container through wiring."""

    @inject
    def __init__(self, greeting: str = Provide["greeting"]) -> None:
        self.greeting = greeting

    async def execute(self, args: Salute) -> None:
        record_call(f"salute:{self.greeting}", args.key)


class ShiftedClock:
    """The real clock plus an offset a test can change: a skewed machine."""

    def __init__(self, offset: timedelta = timedelta()) -> None:
        self.offset = offset

    def __call__(self) -> datetime:
        return utcnow() + self.offset


ALL_HANDLERS = (GreetJob, FlakySteady, FlakyFailing, DoomedJob, BlockingJob, StrictJob)


def fast_options(**overrides: Any) -> BackgroundJobOptions:
    """Options with sub-second waits, for tests."""
    values: dict[str, Any] = {
        "poll_interval": 5,
        "first_wait_duration": 0.01,
        "wait_duration": 1,
        "lease_timeout": 30,
        "shutdown_timeout": 1,
    }
    values.update(overrides)
    return BackgroundJobOptions(**values)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[Worker]:
    """Run ``worker`` in a task group; stop it and wait for it on exit."""
    async with anyio.create_task_group() as tg:
        await tg.start(_run, worker)
        try:
            yield worker
        finally:
            worker.stop()


async def _run(worker: Worker, *, task_status: Any) -> None:
    await worker.run(task_status=task_status)


async def wait_for_record(
    store: JobStore,
    job_id: str,
    predicate: Callable[[JobRecord], bool],
    timeout: float = 5.0,
) -> JobRecord:
    """Poll the store until the job satisfies ``predicate``; fail after ``timeout``."""
    with anyio.fail_after(timeout):
        while True:
            record = await store.get(job_id)
            if record is not None and predicate(record):
                return record
            await anyio.sleep(0.002)


async def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll ``condition`` until it holds; fail after ``timeout``."""
    with anyio.fail_after(timeout):
        while True:
            if condition():
                return
            await anyio.sleep(0.002)


async def wait_for(
    fetch: Callable[[], Awaitable[T]], predicate: Callable[[T], bool], timeout: float = 5.0
) -> T:
    """Poll ``fetch()`` until its result satisfies ``predicate``; fail after ``timeout``."""
    with anyio.fail_after(timeout):
        while True:
            value = await fetch()
            if predicate(value):
                return value
            await anyio.sleep(0.002)
