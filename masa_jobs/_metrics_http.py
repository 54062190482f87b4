"""Serve ``/metrics`` from a worker process: a small HTTP server in a thread.

The counters are this process's; the queue's gauges need the store, whose
connections belong to the event loop. So each scrape is rendered *on* the
loop (``anyio.from_thread.run`` with the loop's token) rather than from a
copy refreshed every few seconds: the gauges are read when Prometheus asks,
never stale, and a process nobody scrapes never reads them. A scrape waits
at most ``STORE_READ_TIMEOUT_SECONDS`` for the store; the HTTP thread never
touches the store itself.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import anyio.from_thread
import anyio.lowlevel
import anyio.to_thread

from .manager import JobManager
from .metrics import render_metrics

__all__ = ["serve_metrics"]

logger = logging.getLogger("masa_jobs.metrics")

METRICS_PATH = "/metrics"


class _MetricsServer(ThreadingHTTPServer):
    # A scrape in flight must not hold up the process's exit.
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], render: Callable[[], tuple[bytes, str]]) -> None:
        super().__init__(address, _MetricsHandler)
        self.render = render


class _MetricsHandler(BaseHTTPRequestHandler):
    server: _MetricsServer

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] != METRICS_PATH:
            self._answer(404, b"not found: metrics are at /metrics\n", "text/plain")
            return
        try:
            body, content_type = self.server.render()
        except Exception:
            logger.exception("metrics: rendering a scrape failed")
            self._answer(503, b"metrics unavailable\n", "text/plain")
            return
        self._answer(200, body, content_type)

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        # One line per scrape would drown the worker's log.
        logger.debug("metrics: %s", format % args)


@asynccontextmanager
async def serve_metrics(
    manager: JobManager, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[tuple[str, int]]:
    """Serve ``http://host:port/metrics`` while the block runs; yields the address
    bound (``port`` 0 picks a free one). ``OSError`` when it cannot listen there."""
    token = anyio.lowlevel.current_token()

    def render() -> tuple[bytes, str]:
        return anyio.from_thread.run(render_metrics, manager, token=token)

    server = _MetricsServer((host, port), render)
    thread = threading.Thread(target=server.serve_forever, name="masa-jobs-metrics", daemon=True)
    thread.start()
    bound_host, bound_port = server.server_address[:2]
    try:
        yield str(bound_host), int(bound_port)
    finally:
        with anyio.CancelScope(shield=True):
            # In a thread: a scrape in flight needs this loop to finish.
            await anyio.to_thread.run_sync(server.shutdown)
        server.server_close()
