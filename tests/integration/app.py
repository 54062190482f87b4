"""The app the integration tests run in real ``masa-jobs worker`` processes.

Every completed execution appends one line to the file named by
``MASA_TEST_RECORD_FILE`` (appends of one short line are atomic), so the test
can count executions across processes whatever the store.

``EffectJob`` writes its effect and completes its job in one transaction on
the store's own database, reached from the store settings the worker was
started with (``MASA_JOBS_STORE__*``), and can SIGKILL its own process on
either side of the commit.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from enum import StrEnum

import anyio
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel

from masa_jobs import BackgroundJob, BackgroundScheduleJob, current_job, job_name

RECORD_FILE_VARIABLE = "MASA_TEST_RECORD_FILE"
# The table of EffectJob's effects: in the store's schema on PostgreSQL, in
# the store's file on SQLite; the test creates it (columns key, pid).
EFFECTS_TABLE = "transaction_effects"

container = BackgroundJobContainer()


@job_name("integration-work")
class Work(BaseModel):
    key: str
    sleep: float = 0.0


def record(event: str, key: str) -> None:
    path = os.environ.get(RECORD_FILE_VARIABLE)
    if not path:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{event} {key} {os.getpid()}\n".encode())
    finally:
        os.close(fd)


class WorkJob(BackgroundJob[Work]):
    async def execute(self, args: Work) -> None:
        if args.sleep:
            record("start", args.key)
            await anyio.sleep(args.sleep)
        record("done", args.key)


class RecordedTick(BackgroundScheduleJob):
    """A recurring job whose schedule the tests add at run time (no class-level id)."""

    async def execute(self) -> None:
        assert self.fire_at is not None
        record("tick", self.fire_at.strftime("%Y-%m-%dT%H:%M:%S"))


class Kill(StrEnum):
    """When ``EffectJob`` kills its own process, on the job's first attempt."""

    NEVER = "never"
    BEFORE_COMMIT = "before-commit"  # after complete_in, before the commit
    AFTER_COMMIT = "after-commit"  # after the commit, before the handler returns


@job_name("integration-effect")
class Effect(BaseModel):
    key: str
    kill: Kill = Kill.NEVER


class EffectJob(BackgroundJob[Effect]):
    """Inserts a row keyed by ``args.key`` and completes its job in the same
    transaction (``complete_in``), as an application's handler would."""

    async def execute(self, args: Effect) -> None:
        record("start", args.key)
        kill = args.kill if current_job().attempt == 1 else Kill.NEVER
        if os.environ["MASA_JOBS_STORE__BACKEND"] == "postgres":
            await _effect_on_postgres(args.key, kill)
        else:
            await _effect_on_sqlite(args.key, kill)
        record("done", args.key)


def _die_at(moment: Kill, kill: Kill) -> None:
    if kill is moment:
        # SIGKILL: no handler, no cleanup, no rollback sent: as a crash.
        os.kill(os.getpid(), signal.SIGKILL)


async def _effect_on_postgres(key: str, kill: Kill) -> None:
    import asyncpg

    schema = os.environ["MASA_JOBS_STORE__SCHEMA"]
    connection = await asyncpg.connect(os.environ["MASA_JOBS_STORE__DSN"])
    try:
        async with connection.transaction():
            await connection.execute(
                f'INSERT INTO "{schema}".{EFFECTS_TABLE} (key, pid) VALUES ($1, $2)',
                key,
                os.getpid(),
            )
            await current_job().complete_in(connection)
            _die_at(Kill.BEFORE_COMMIT, kill)
        _die_at(Kill.AFTER_COMMIT, kill)
    finally:
        await connection.close()


async def _effect_on_sqlite(key: str, kill: Kill) -> None:
    # The default (legacy) transaction mode: the INSERT opens the transaction.
    connection = sqlite3.connect(os.environ["MASA_JOBS_STORE__PATH"])
    try:
        connection.execute(
            f"INSERT INTO {EFFECTS_TABLE} (key, pid) VALUES (?, ?)", (key, os.getpid())
        )
        await current_job().complete_in(connection)
        _die_at(Kill.BEFORE_COMMIT, kill)
        connection.commit()
        _die_at(Kill.AFTER_COMMIT, kill)
    finally:
        connection.close()  # uncommitted (complete_in refused): rolled back
