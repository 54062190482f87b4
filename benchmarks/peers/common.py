"""The measurement every peer script shares: phases, worker processes, counting, RSS.

Standard library only. Each peer script (``<peer>/bench.py``) runs with its own
venv's python, imports this module through ``sys.path`` and hands ``main`` an
object of the ``Peer`` shape below; its worker module calls ``task_ran()`` from
the no-op task.

Counting happens inside the worker process: the task bumps an in-process
counter and sends one UDP datagram to the measuring process at the first run
and when the counter reaches the reporting step (the number of jobs for the
end-to-end phases, 1 for the pickup phase). No per-job store round trip is
added to the peer's own work. A worker of several processes reports each
process's count as it grows instead (see ``_report_periodically``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "Peer",
    "WorkerSpec",
    "flush_redis_db",
    "fresh_pg_database",
    "main",
    "pg_dsn",
    "redis_url",
    "task_ran",
]

# Where the worker's task reports to, and every how many runs it reports.
REPORT_ADDR_ENV = "PEERS_REPORT_ADDR"
REPORT_EVERY_ENV = "PEERS_REPORT_EVERY"
# Server addresses: loopback by default, the same for every peer.
PG_DSN_ENV = "PEERS_PG_DSN"
REDIS_URL_ENV = "PEERS_REDIS_URL"
DEFAULT_PG_DSN = "postgresql://postgres@127.0.0.1:5432"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379"
# A worker that has not run its first job after this long is broken, not slow.
WORKER_START_TIMEOUT = 60.0
# No end-to-end phase should run slower than this, plus the start-up allowance.
SLOWEST_CREDIBLE_RATE = 100.0
# Lets the worker settle after its warm-up job, so RSS and pickup see an idle worker.
IDLE_SETTLE_SECONDS = 1.0
# Gap between pickup samples, so that each job lands on an idle worker.
PICKUP_GAP_SECONDS = 0.01
# A pickup slower than this is a lost job.
PICKUP_TIMEOUT = 30.0
# A worker gets this long to stop on SIGTERM/SIGINT before it is killed.
STOP_TIMEOUT = 15.0
PAGE_KIB = 1024
# How often each process of a multi-process worker reports its count: the
# end-to-end time is the latest run's own timestamp, so this only delays noticing it.
PERIODIC_REPORT_SECONDS = 0.002

_lock = threading.Lock()
_count = 0
_last_at = 0.0
_report: tuple[socket.socket, tuple[str, int], int] | None = None


def task_ran() -> None:
    """Called first thing by each peer's no-op task, in the worker process."""
    global _count, _last_at
    now = time.time()
    with _lock:  # thread-pool workers run tasks in parallel threads
        _count += 1
        count = _count
        _last_at = now
    sock, addr, every = _report or _open_report()
    if count == 1 or (every and count % every == 0):
        sock.sendto(f"{os.getpid()} {count} {now!r}".encode(), addr)


def _open_report() -> tuple[socket.socket, tuple[str, int], int]:
    """The report socket; with a reporting step of 0, a thread reports the count as it grows."""
    global _report
    with _lock:
        if _report is None:
            host, port = os.environ[REPORT_ADDR_ENV].rsplit(":", 1)
            every = int(os.environ[REPORT_EVERY_ENV])
            _report = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM), (host, int(port)), every)
            if not every:
                threading.Thread(target=_report_periodically, daemon=True).start()
        return _report


def _report_periodically() -> None:
    """For workers of several processes: none knows when all jobs ran, so each
    reports its own count (and the time of its latest run) while it grows."""
    assert _report is not None
    sock, addr, _ = _report
    reported = 0
    while True:
        time.sleep(PERIODIC_REPORT_SECONDS)
        with _lock:
            count, at = _count, _last_at
        if count != reported:
            sock.sendto(f"{os.getpid()} {count} {at!r}".encode(), addr)
            reported = count


def pg_dsn(database: str) -> str:
    """The DSN of ``database`` on the benchmark's PostgreSQL server."""
    return f"{os.environ.get(PG_DSN_ENV, DEFAULT_PG_DSN).rstrip('/')}/{database}"


def redis_url(db: int) -> str:
    """The URL of logical database ``db`` on the benchmark's Redis server."""
    return f"{os.environ.get(REDIS_URL_ENV, DEFAULT_REDIS_URL).rstrip('/')}/{db}"


@dataclass
class WorkerSpec:
    """The peer's own worker command, and the settings it runs with (for the report)."""

    argv: list[str]
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    # True when the command runs jobs in several processes: each counts its own.
    multi_process: bool = False


class Peer(Protocol):
    """What a peer script provides; every method runs in the measuring process."""

    name: str
    store: str
    version: str
    bulk_method: str | None  # the API used for bulk enqueue, None when there is none

    async def reset(self) -> None:
        """Give the peer a fresh, empty namespace (and open its client)."""

    async def close(self) -> None:
        """Close the client opened by reset()."""

    async def enqueue_one(self) -> None:
        """Enqueue one no-op job with one call."""

    async def enqueue_bulk(self, n: int) -> None:
        """Enqueue ``n`` no-op jobs the fastest way the peer offers."""

    def worker(self, tuned: bool) -> WorkerSpec:
        """The worker command: default settings, or the tuned ones."""


class _Listener:
    """The UDP socket the worker's task reports to."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = "{}:{}".format(*self.sock.getsockname())
        # Per worker process: its run count and the time of its latest reported run.
        self.latest: dict[int, tuple[int, float]] = {}

    def wait(self, at_least: int, timeout: float, worker: subprocess.Popen[bytes]) -> float:
        """The time.time() of the run that brought the workers' total to ``at_least``."""
        deadline = time.monotonic() + timeout
        while True:
            total = sum(count for count, _ in self.latest.values())
            if total >= at_least:
                return max(at for _, at in self.latest.values())
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"{total} runs reported, not {at_least}, within {timeout:.0f} s")
            # Short slices, so that a worker that died is noticed at once.
            self.sock.settimeout(min(left, 0.5))
            try:
                data = self.sock.recv(128)
            except TimeoutError:
                if worker.poll() is not None:
                    raise RuntimeError(f"worker exited with {worker.returncode}") from None
                continue
            pid, count, at = data.decode().split()
            # Datagrams on loopback keep their order per sender; keep the highest anyway.
            if int(count) > self.latest.get(int(pid), (0, 0.0))[0]:
                self.latest[int(pid)] = (int(count), float(at))

    def close(self) -> None:
        self.sock.close()


class _Worker:
    """One run of the peer's worker command, in its own process group."""

    def __init__(self, spec: WorkerSpec, listener: _Listener, every: int, log: Path) -> None:
        env = {**os.environ, **spec.env, REPORT_ADDR_ENV: listener.address}
        env[REPORT_EVERY_ENV] = str(every)
        self.log = log.open("ab")
        self.started_at = time.time()
        self.process = subprocess.Popen(
            spec.argv,
            env=env,
            cwd=spec.cwd,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self) -> None:
        """SIGTERM to the group (SIGINT first where a peer needs it), then SIGKILL."""
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        else:
            # Children a peer forked may outlive its main process.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.log.close()


async def fresh_pg_database(name: str) -> None:
    """Drop and create database ``name`` (asyncpg, which the calling peer's venv has)."""
    import asyncpg  # type: ignore[import-not-found]

    connection = await asyncpg.connect(pg_dsn("postgres"))
    try:
        # The name is a constant of the peer script, never input.
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()


def flush_redis_db(db: int) -> None:
    """FLUSHDB on logical database ``db`` only, over a plain socket (no driver needed)."""
    url = os.environ.get(REDIS_URL_ENV, DEFAULT_REDIS_URL)
    host, _, port = url.removeprefix("redis://").rstrip("/").partition(":")
    with socket.create_connection((host, int(port or 6379)), timeout=10) as sock:
        sock.sendall(f"SELECT {db}\r\nFLUSHDB\r\n".encode())
        replies = b""
        while replies.count(b"\r\n") < 2:
            chunk = sock.recv(256)
            if not chunk:
                break
            replies += chunk
    if replies != b"+OK\r\n+OK\r\n":
        raise RuntimeError(f"FLUSHDB on Redis db {db} failed: {replies!r}")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name may hold spaces: fields follow its closing parenthesis.
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                kids.append(int(entry.name))
    return kids


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def process_tree_rss(pid: int) -> dict[str, Any]:
    """VmRSS of the worker's main process, and of it plus every descendant."""
    tree = [pid]
    for parent in tree:
        tree.extend(_children(parent))
    return {
        "rss_main_mb": round(_rss_kib(pid) / PAGE_KIB, 1),
        "rss_tree_mb": round(sum(_rss_kib(p) for p in tree) / PAGE_KIB, 1),
        "processes": len(tree),
    }


def _percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


async def _timed(n: int, call: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    for _ in range(n):
        await call()
    return n / (time.perf_counter() - started)


async def _end_to_end(peer: Peer, n: int, tuned: bool, log: Path) -> dict[str, Any]:
    """Jobs per second from worker start (and from its first job) until all ``n`` ran."""
    await peer.reset()
    await peer.enqueue_bulk(n)
    await peer.close()
    spec = peer.worker(tuned)
    listener = _Listener()
    worker = _Worker(spec, listener, 0 if spec.multi_process else n, log)
    try:
        first = listener.wait(1, WORKER_START_TIMEOUT, worker.process)
        last = listener.wait(n, WORKER_START_TIMEOUT + n / SLOWEST_CREDIBLE_RATE, worker.process)
    finally:
        worker.stop()
        listener.close()
    return {
        "settings": spec.settings,
        "seconds_from_start": round(last - worker.started_at, 4),
        "per_s_from_start": round(n / (last - worker.started_at), 1),
        "start_to_first_job_s": round(first - worker.started_at, 4),
        # n - 1 intervals lie between the first job's start and the last one's.
        "per_s_from_first_job": round((n - 1) / (last - first), 1) if last > first else None,
    }


async def _pickup(peer: Peer, samples: int, log: Path) -> dict[str, Any]:
    """Idle RSS, then ms from enqueue to the task's start, one job at a time."""
    await peer.reset()
    spec = peer.worker(False)
    listener = _Listener()
    worker = _Worker(spec, listener, 1, log)
    latencies: list[float] = []
    try:
        await peer.enqueue_one()  # warm-up: proves the worker is up and has imported the task
        listener.wait(1, WORKER_START_TIMEOUT, worker.process)
        await asyncio.sleep(IDLE_SETTLE_SECONDS)
        rss = process_tree_rss(worker.process.pid)
        for run in range(2, samples + 2):
            enqueued_at = time.time()
            await peer.enqueue_one()
            started_at = listener.wait(run, PICKUP_TIMEOUT, worker.process)
            latencies.append((started_at - enqueued_at) * 1000)
            await asyncio.sleep(PICKUP_GAP_SECONDS)
    finally:
        await peer.close()
        worker.stop()
        listener.close()
    return {
        **rss,
        "settings": spec.settings,
        "pickup_samples": len(latencies),
        "pickup_p50_ms": round(_percentile(latencies, 0.5), 2),
        "pickup_p99_ms": round(_percentile(latencies, 0.99), 2),
        "pickup_mean_ms": round(statistics.fmean(latencies), 2),
    }


async def _run(peer: Peer, n: int, samples: int, log: Path) -> dict[str, Any]:
    await peer.reset()
    single = await _timed(n, peer.enqueue_one)
    await peer.reset()
    started = time.perf_counter()
    await peer.enqueue_bulk(n)
    bulk = n / (time.perf_counter() - started)
    await peer.close()
    default = await _end_to_end(peer, n, False, log)
    tuned = await _end_to_end(peer, n, True, log)
    pickup = await _pickup(peer, samples, log)
    await peer.reset()  # leave nothing behind
    await peer.close()
    return {
        "peer": peer.name,
        "store": peer.store,
        "version": peer.version,
        "python": sys.version.split()[0],
        "jobs": n,
        "enqueue_single_per_s": round(single, 1),
        "enqueue_bulk_per_s": round(bulk, 1) if peer.bulk_method else None,
        "bulk_method": peer.bulk_method,
        "e2e_default": default,
        "e2e_tuned": tuned,
        "idle": pickup,
    }


def main(make_peer: Callable[[argparse.Namespace], Peer], add_arguments: Any = None) -> None:
    """Parse the common options, run every phase, print (or write) one JSON object."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--out", type=Path, help="write the JSON result here (default: stdout)")
    parser.add_argument("--log", type=Path, default=Path(os.devnull), help="worker output")
    if add_arguments is not None:
        add_arguments(parser)
    args = parser.parse_args()
    peer = make_peer(args)
    result = asyncio.run(_run(peer, args.jobs, args.latency_samples, args.log))
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    else:
        print(text)
