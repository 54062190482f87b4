"""The claim that rides behind an idle worker's wake-up (``RedisJobStore.wait_for_work``).

An idle worker waits for a wake-up token with BLPOP and then claims. A claim
sent once the token came would cost a round trip of its own: the worker would
wake, send it and wait for Redis again before a job could start. Instead the
claim script is sent on the same connection right behind the BLPOP. Redis
runs a client's commands in order, so the claim runs the moment the pop
returns (a token, or the timeout) and its reply follows the pop's.

The claim takes the arguments of the worker's last claim that came back
short (``ClaimPlan``): the same worker, lease and queues, as many jobs as that
claim still had room for, and never a job it held or was given then (a
superset of what it holds now, since only claims give it jobs). The jobs wait
in the store (``Ahead``) for the worker's next ``claim``, which the worker
makes right after the wait. A claim for other queues, another worker or
another lease makes its own claim, and a claim for fewer jobs takes those that
fit; the jobs not taken are handed back as if never claimed (the attempt is
not counted), and so are those still waiting when the store closes.

The worker reckons a lease from just before its ``claim`` call, while the
ahead claim ran earlier, when the pop returned: the jobs are handed over as
they are only while that difference is a small share of the lease
(``AHEAD_SLACK_SHARE``); after a longer delay (an event loop that was blocked)
their leases are renewed first. A wait that is cancelled unblocks its pop
(``CLIENT UNBLOCK``) and hands back what the claim took, so a job is never left
under a lease that nobody knows of; a Redis user that may not unblock gets
waits without a claim behind them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

__all__ = [
    "AHEAD_SLACK_SHARE",
    "Ahead",
    "ClaimPlan",
    "blpop_then_claim",
    "claim_reply",
    "send_and_read",
]

# How much later than the truth a worker may reckon the end of an ahead
# claim's leases, as a share of the lease: far below the share of a lease
# after which a worker renews a job before it starts (a half).
AHEAD_SLACK_SHARE = 0.05


@dataclass(frozen=True)
class ClaimPlan:
    """The claim a worker makes after its wait: its last short claim's arguments."""

    worker_id: str
    limit: int
    lease_us: int
    served: tuple[Any, ...]
    exclude: frozenset[str]

    def args(self, token: str) -> list[Any]:
        """The claim script's arguments after the key tag."""
        return [self.limit, self.lease_us, self.worker_id, token, *self.served, *self.exclude]

    def fits(self, worker_id: str, lease_us: int, served: tuple[Any, ...]) -> bool:
        """Whether a claim with these arguments may take this plan's jobs."""
        return (worker_id, lease_us, served) == (self.worker_id, self.lease_us, self.served)


@dataclass(frozen=True)
class Ahead:
    """An ahead claim's reply, and the earliest ``time.monotonic()`` it can have run at."""

    plan: ClaimPlan
    token: str
    reply: Any
    earliest: float

    @property
    def empty(self) -> bool:
        return not self.reply[2]


async def blpop_then_claim(
    connection: AbstractConnection,
    blpop: tuple[Any, ...],
    claim: tuple[Any, ...],
    after_cancel: Callable[[AbstractConnection, int], Awaitable[None]],
) -> Any:
    """BLPOP, then the claim script (EVALSHA), in one write on ``connection``;
    returns the claim's reply, or None when the script cache lost the script
    (the caller's next claim loads it again).

    The connection is usable afterwards only if this returns. On
    cancellation, ``after_cancel(connection, client id)`` ends the pop and
    deals with the claim's reply before the cancellation goes on."""
    packed = connection.pack_commands([("CLIENT", "ID"), blpop, ("EVALSHA", *claim)])
    # Only the pop's wait may be cancelled: a claim whose reply went unread
    # would leave its jobs leased to nobody. The rest comes at once (or meets
    # the connection's timeout).
    with anyio.CancelScope(shield=True):
        client_id = await send_and_read(connection, packed)
    try:
        await connection.read_response(disconnect_on_error=False)
    except anyio.get_cancelled_exc_class():
        with anyio.CancelScope(shield=True):
            await after_cancel(connection, client_id)
        raise
    with anyio.CancelScope(shield=True):
        return await claim_reply(connection)


async def send_and_read(
    connection: AbstractConnection, packed: list[bytes], *, resend: bool = True
) -> Any:
    """Send packed commands and read the first reply. Sent once more on a
    connection found broken, as redis-py retries a command: one the server
    closed while it was idle. Unless ``resend`` is False: the connection
    may also have broken after the server ran the commands, so a caller for
    whom a second run differs from the first (an add) decides itself."""
    try:
        await connection.send_packed_command(packed)
        return await connection.read_response(disconnect_on_error=False)
    except RedisConnectionError:
        await connection.disconnect()
        if not resend:
            raise
    await connection.send_packed_command(packed)
    return await connection.read_response(disconnect_on_error=False)


async def claim_reply(connection: AbstractConnection) -> Any:
    """The reply of the claim behind a pop, or None for a script the cache lost."""
    try:
        return await connection.read_response(disconnect_on_error=False)
    except NoScriptError:
        return None
