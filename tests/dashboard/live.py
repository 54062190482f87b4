"""A real HTTP server for the browser tests: uvicorn in a background thread.

One server serves the whole session; each test sets the app it serves
(``LiveServer.app``). Store calls that a test makes while the server runs go
through ``LiveServer.call``, on the server's own event loop, so that the
test and the dashboard never touch the in-memory store from two threads.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import uvicorn
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["LiveServer", "no_app"]

T = TypeVar("T")

# Bounds for a loaded CI machine; a passing run takes a fraction of them.
STARTUP_TIMEOUT_SECONDS = 15.0
CALL_TIMEOUT_SECONDS = 30.0
# How often start() looks whether the server accepts requests yet.
_READY_POLL_SECONDS = 0.01


async def no_app(scope: Scope, receive: Receive, send: Send) -> None:
    """What the server answers between tests."""
    await PlainTextResponse("no app set", status_code=503)(scope, receive, send)


class LiveServer:
    """uvicorn on 127.0.0.1 and a free port, serving ``app``."""

    def __init__(self) -> None:
        self.app: ASGIApp = no_app
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self._dispatch, interface="asgi3", lifespan="off", log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, name="dashboard-server", daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self._server.serve(sockets=[self._socket])

    def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while not (self._server.started and self._loop is not None):
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard's test server did not start on {self.port}")
            time.sleep(_READY_POLL_SECONDS)

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the server's event loop and return its result."""
        assert self._loop is not None, "start() the server first"
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(CALL_TIMEOUT_SECONDS)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(STARTUP_TIMEOUT_SECONDS)
        self._socket.close()
