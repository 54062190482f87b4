"""A loopback TCP proxy a test owns: the network between workers and the store.

Modes, each switched from the test's thread:

* ``refuse()``: abort every open connection and close new ones at once (the
  server is down or a firewall rejects), until ``restore()``;
* ``drop()``: abort every open connection once; new ones are served (a blip);
* ``freeze()``: keep every connection open but forward no byte either way,
  new ones included (a partition: the peers' kernels keep the bytes, which
  arrive, late, at ``restore()``, as TCP delivers after a partition heals);
* ``lose_next_reply()``: the next bytes the server sends, on any connection,
  are thrown away and that connection aborted, once (the server did the work,
  its answer never arrived: the ambiguous case of a command sent again);
* ``restore()``: forward again.

Runs its own event loop in a thread, so it works whatever loop the test uses.
The integration and fault suites share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

__all__ = ["FaultProxy", "in_front_of", "through"]

_CHUNK = 65536
T = TypeVar("T")


class FaultProxy:
    """Forwards 127.0.0.1:<port> to ``target``; see the module docstring for the modes."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._refusing = False
        self._flowing: asyncio.Event | None = None
        self._losing_a_reply = False
        self.port = 0
        # How many replies ``lose_next_reply`` threw away so far.
        self.replies_lost = 0

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._flowing = self._call(_new_set_event())
        self._server = self._call(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.refuse()
        if self._server is not None:
            self._call(self._close_server(self._server))
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        # A loop left open leaks its self-pipe: a ResourceWarning, an error under pytest.
        if not self._thread.is_alive():
            self._loop.close()

    def refuse(self) -> None:
        """Abort every connection and refuse new ones until ``restore()``."""
        self._call(self._abort_all(refuse=True))

    def drop(self) -> None:
        """Abort every open connection once; new ones are served."""
        self._call(self._abort_all(refuse=False))

    def freeze(self) -> None:
        """Forward nothing, either way, on any connection until ``restore()``."""
        self._call(self._set_flowing(False))

    def lose_next_reply(self) -> None:
        """Throw the server's next reply away and abort its connection, once."""
        self._call(self._set_losing_a_reply())

    def restore(self) -> None:
        """Accept and forward again; frozen bytes are delivered now."""
        self._call(self._set_flowing(True))
        self._refusing = False

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    @staticmethod
    async def _close_server(server: asyncio.Server) -> None:
        server.close()
        await server.wait_closed()

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _set_losing_a_reply(self) -> None:
        self._losing_a_reply = True

    async def _abort_all(self, *, refuse: bool) -> None:
        self._refusing = refuse
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer),
            self._pipe(up_reader, writer, replies=True),
            return_exceptions=True,
        )
        self._writers.difference_update((writer, up_writer))

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, replies: bool = False
    ) -> None:
        assert self._flowing is not None
        try:
            while True:
                await self._flowing.wait()
                data = await reader.read(_CHUNK)
                if not data:
                    break
                # Bytes read just before a freeze wait for the thaw like the rest.
                await self._flowing.wait()
                if replies and self._losing_a_reply:
                    self._losing_a_reply = False
                    self.replies_lost += 1
                    writer.transport.abort()  # the client's side: it never hears back
                    break
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(Exception):
                writer.close()


async def _new_set_event() -> asyncio.Event:
    # Created on the proxy's loop, where it is waited on.
    event = asyncio.Event()
    event.set()
    return event


def in_front_of(url: str) -> FaultProxy:
    """A proxy to the host:port of ``url`` (enter it to serve; ``through`` gives its URL)."""
    address = urlsplit(url)
    assert address.hostname is not None, f"{url!r} names no host"
    assert address.port is not None, f"{url!r} names no port"
    return FaultProxy(address.hostname, address.port)


def through(url: str, proxy: FaultProxy) -> str:
    """``url`` with its host:port replaced by the proxy's."""
    address = urlsplit(url)
    netloc = address.netloc.replace(f"{address.hostname}:{address.port}", f"127.0.0.1:{proxy.port}")
    return urlunsplit(address._replace(netloc=netloc))
