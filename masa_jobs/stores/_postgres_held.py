"""One pool connection kept across back-to-back single statements.

asyncpg's ``Pool.execute`` acquires a connection and releases it on every
call, and the release runs in a task of its own (shielded from
cancellation) with a timer re-armed per connection: on a 2-core machine
that is 50 to 70 us, more than a tenth of a single enqueue, whose statement
is one short commit. A caller that enqueues jobs one after another, each
awaited, pays it per job.

``HeldConnection.execute`` keeps the connection of its last statement
instead, and gives it back to the pool as soon as the event loop runs
anything else while it is idle (a callback scheduled after each
statement): a loop of awaited statements, which never lets the loop run
in between, uses one connection without a release per statement, and any
other use of the pool finds it back within one turn of the loop. A
statement that comes while the connection is busy (a concurrent caller)
goes through the pool as before. A statement that fails (an error, a lost
connection, a cancellation) gives its connection back through the pool,
which waits out a cancelled query and replaces a lost connection. The held
connection is one of the pool's: ``pool_max_size`` still bounds them all.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import asyncpg

__all__ = ["HeldConnection"]


class HeldConnection:
    """The pool connection of the last single statement, while the loop is busy."""

    def __init__(self) -> None:
        self._pool: asyncpg.Pool | None = None
        self._idle: Any = None  # a pool connection, acquired and not in use
        self._check_scheduled = False
        self._returns: set[asyncio.Task[None]] = set()

    async def execute(self, pool: asyncpg.Pool, query: str, *args: Any) -> str:
        """``pool.execute(query, *args)``, on the held connection when it is idle."""
        connection, self._idle = self._idle, None
        if connection is None or self._pool is not pool or connection.is_closed():
            if connection is not None:
                # The pool replaces a connection the server closed, as on any acquire.
                self._give_back(connection)
            connection = await pool.acquire()
            self._pool = pool
        try:
            status: str = await connection.execute(query, *args)
        except BaseException:
            await pool.release(connection)
            raise
        if self._idle is not None:
            # A concurrent statement kept its own: one held connection is enough.
            self._give_back(connection)
        else:
            self._idle = connection
            self._schedule_check()
        return status

    async def release(self) -> None:
        """Give the held connection back now (before the pool closes)."""
        connection, self._idle = self._idle, None
        if connection is not None:
            self._give_back(connection)
        if self._returns:
            await asyncio.gather(*self._returns, return_exceptions=True)

    def _schedule_check(self) -> None:
        if not self._check_scheduled:
            self._check_scheduled = True
            asyncio.get_running_loop().call_soon(self._return_if_idle)

    def _return_if_idle(self) -> None:
        """Runs on the loop's next turn: a connection still idle then is not in a
        loop of statements, and goes back to the pool."""
        self._check_scheduled = False
        connection, self._idle = self._idle, None
        if connection is not None:
            self._give_back(connection)

    def _give_back(self, connection: Any) -> None:
        pool = self._pool
        if pool is None:
            return
        task = asyncio.get_running_loop().create_task(_release(pool, connection))
        # Referenced until done: the loop keeps only weak references to tasks.
        self._returns.add(task)
        task.add_done_callback(self._returns.discard)


async def _release(pool: asyncpg.Pool, connection: Any) -> None:
    # A pool closed or terminated meanwhile refuses it: it closed the connection itself.
    with contextlib.suppress(asyncpg.InterfaceError):
        await pool.release(connection)
