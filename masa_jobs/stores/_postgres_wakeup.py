"""Wake-ups and cancel notices of the PostgreSQL store: LISTEN on a dedicated
connection, poll as fallback.

Writers ``NOTIFY`` the store's channel in the statement that adds or requeues
jobs or resumes a queue; a waiting worker ``LISTEN``s on a connection of its
own. Each wait first asks that connection how many seconds remain until the
next job of the worker's queues falls due: its answer both sets the wait and
proves the channel alive. The server counts those seconds on its own clock,
so a worker whose clock is off by hours neither spins nor oversleeps. While
the channel is down, or does not answer, waits are capped at one second, so
that a lost wake-up costs at most one short poll.

An operator's cancel of a running job ``NOTIFY``s a second channel with the
job's id. From the first cancel listener on, a background task keeps the
connection up and listening on it, reconnecting after a loss, so that a
worker busy with long jobs (which does not wait for work) still hears a
cancel at once; a notice sent while the connection is down is lost, and the
worker learns at its next lease renewal instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import asyncpg

from .._redact import redact
from ._cancel_listeners import CancelListeners

__all__ = ["LOST_CONNECTION_ERRORS", "Look", "WakeUps"]

logger = logging.getLogger("masa_jobs.stores.postgres")

# Without a working LISTEN connection a wake-up can be missed: poll at least
# this often, so that a lost wake-up costs one short poll.
UNTRUSTED_POLL_SECONDS = 1.0
# A LISTEN connection that cannot answer a trivial query in this long is
# taken for dead (a half-open TCP connection never reports an error).
LISTENER_CHECK_SECONDS = 5.0
# After the LISTEN connection failed to open, wait this long before the next
# attempt, so that an outage does not cost a connect attempt per wait.
LISTEN_RETRY_SECONDS = 2.0
# close() waits this long for the server's goodbye, then cuts the connection.
CLOSE_TIMEOUT_SECONDS = 5.0
# What a connection that worked and then went away raises.
LOST_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
)
# What opening the LISTEN connection raises when it cannot.
_CONNECT_ERRORS = (*LOST_CONNECTION_ERRORS, ValueError, asyncpg.PostgresError)


@dataclass(frozen=True, slots=True)
class Look:
    """The statement that answers the seconds until the next job of a
    worker's queues falls due (NULL: none will), with its arguments."""

    statement: str
    arguments: tuple[object, ...] = ()


class WakeUps:
    """The LISTEN side of one store: ``wait`` until a job may be due, and
    tell cancel listeners."""

    def __init__(
        self,
        dsn: str,
        *,
        channel: str,
        cancel_channel: str,
        address: str,
        connect_timeout: float,
        server_settings: dict[str, str],
    ) -> None:
        self._dsn = dsn
        self._channel = channel
        self._cancel_channel = cancel_channel
        self._address = address
        self._connect_timeout = connect_timeout
        self._server_settings = server_settings
        self._listener: asyncpg.Connection | None = None
        self._hears_cancels = False
        # Set when the current LISTEN connection is lost or dropped.
        self._down: anyio.Event | None = None
        self._retry_at = 0.0
        self._waiters: set[anyio.Event] = set()
        self._lock = anyio.Lock()
        self._cancel_listeners = CancelListeners()
        self._keeper: asyncio.Task[None] | None = None
        self._started = False

    def start(self) -> None:
        """Prepare for the event loop that is running now (``open()`` calls it)."""
        self._lock = anyio.Lock()
        self._retry_at = 0.0
        self._started = True
        if self._cancel_listeners:
            self._keep_listening()

    def add_cancel_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(job_id)`` for every running job an operator cancels,
        from now until ``close``; listening starts in the background."""
        self._cancel_listeners.add(listener)
        if self._started:
            self._keep_listening()

    async def wait(self, pool: asyncpg.Pool, timeout: float, look: Look) -> None:
        woken = anyio.Event()
        self._waiters.add(woken)
        try:
            # Registered before the look: a job added after the look is
            # notified, one added before it is seen.
            wait = await self.seconds_to_wait(pool, timeout, look)
            if wait > 0:
                with anyio.move_on_after(wait):
                    await woken.wait()
        finally:
            self._waiters.discard(woken)

    async def seconds_to_wait(self, pool: asyncpg.Pool, timeout: float, look: Look) -> float:
        """How long to sleep, at most ``timeout``: 0 or less when a job is due."""
        due_in, listening = await self._look(pool, look)
        wait = timeout if listening else min(timeout, UNTRUSTED_POLL_SECONDS)
        return wait if due_in is None else min(wait, due_in)

    async def close(self) -> None:
        keeper, self._keeper = self._keeper, None
        self._cancel_listeners.clear()
        self._started = False
        if keeper is not None:
            keeper.cancel()
            # asyncio.wait, not await: the keeper's CancelledError is not ours.
            await asyncio.wait([keeper])
        listener, self._listener = self._listener, None
        if listener is not None and not listener.is_closed():
            listener.remove_termination_listener(self._lost)
            with anyio.move_on_after(CLOSE_TIMEOUT_SECONDS) as scope:
                await listener.close()
            if scope.cancelled_caught:
                listener.terminate()
        self._wake_all()  # nothing will notify them any more

    def _keep_listening(self) -> None:
        """Start the task that keeps the connection listening, once."""
        if self._keeper is None:
            self._keeper = asyncio.get_running_loop().create_task(
                self._keep(), name=f"masa-jobs listener {self._address}"
            )

    async def _keep(self) -> None:
        """Connect and listen; after a loss, connect again (at most every
        LISTEN_RETRY_SECONDS); until ``close`` cancels it."""
        while True:
            try:
                async with self._lock:
                    listener, down = await self._listening(), self._down
                if listener is not None and down is not None and not down.is_set():
                    await down.wait()
                    continue
            except Exception:  # a bug here must not end cancel notices for good
                logger.exception("PostgreSQL store at %s: cancel notices failed", self._address)
            await anyio.sleep(max(self._retry_at - time.monotonic(), LISTEN_RETRY_SECONDS / 4))

    async def _look(self, pool: asyncpg.Pool, look: Look) -> tuple[float | None, bool]:
        """Seconds until the next job falls due (None: no job will), and whether
        notifications can be trusted.

        The look runs on the LISTEN connection itself: its answer proves the
        channel alive, where a half-open connection would look fine while
        every notification went nowhere.
        """
        async with self._lock:
            listener = await self._listening()
            if listener is not None:
                try:
                    due_in: float | None = await listener.fetchval(
                        look.statement, *look.arguments, timeout=LISTENER_CHECK_SECONDS
                    )
                except LOST_CONNECTION_ERRORS as exc:
                    self._drop(exc)
                else:
                    return due_in, True
        polled: float | None = await pool.fetchval(look.statement, *look.arguments)
        return polled, False

    async def _listening(self) -> asyncpg.Connection | None:
        """The LISTEN connection, (re)connected when due and listening for
        cancels once there are cancel listeners; None while it is down."""
        listener = self._listener
        if listener is None or listener.is_closed():
            listener = await self._connect()
            if listener is None:
                return None
        if self._cancel_listeners and not self._hears_cancels:
            try:
                await listener.add_listener(self._cancel_channel, self._cancelled)
            except LOST_CONNECTION_ERRORS as exc:
                self._drop(exc)
                return None
            self._hears_cancels = True
        return listener

    async def _connect(self) -> asyncpg.Connection | None:
        if time.monotonic() < self._retry_at:
            return None
        connection: asyncpg.Connection | None = None
        try:
            connection = await asyncpg.connect(
                self._dsn, timeout=self._connect_timeout, server_settings=self._server_settings
            )
            connection.add_termination_listener(self._lost)
            await connection.add_listener(self._channel, self._notified)
        except _CONNECT_ERRORS as exc:
            self._retry_at = time.monotonic() + LISTEN_RETRY_SECONDS
            logger.warning(
                "PostgreSQL store at %s: cannot listen for new jobs (%s); polling every %g s",
                self._address,
                redact(str(exc)),
                UNTRUSTED_POLL_SECONDS,
            )
            if connection is not None:
                connection.terminate()
            return None
        self._listener = connection
        self._hears_cancels = False
        self._down = anyio.Event()
        return connection

    def _drop(self, exc: BaseException) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.remove_termination_listener(self._lost)
            listener.terminate()
        self._set_down()
        logger.warning(
            "PostgreSQL store at %s: the LISTEN connection stopped answering (%s); reconnecting",
            self._address,
            redact(str(exc)) or type(exc).__name__,
        )

    def _notified(self, connection: object, pid: int, channel: str, payload: str) -> None:
        self._wake_all()

    def _cancelled(self, connection: object, pid: int, channel: str, job_id: str) -> None:
        self._cancel_listeners.tell(job_id)

    def _lost(self, connection: object) -> None:
        # Notifications sent while it is down are lost: waiters look again.
        logger.warning("PostgreSQL store at %s: lost the LISTEN connection", self._address)
        self._set_down()
        self._wake_all()

    def _set_down(self) -> None:
        if self._down is not None:
            self._down.set()

    def _wake_all(self) -> None:
        for waiter in self._waiters:
            waiter.set()
