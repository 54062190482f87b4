"""The sync API: enqueue, get and wait from code without an event loop.

Django views, Flask handlers, management commands and scripts run in threads
with no event loop, and the job manager is async. ``SyncJobManager`` (and the
facade's ``enqueue_sync``, ``get_sync`` and ``wait_sync``) run the root
container's own ``job_manager`` -- the same store, registry and options as
``BackgroundJobManager`` -- on an event loop that owns the store:

* **From a worker thread of a running event loop** (``anyio.to_thread.run_sync``,
  a sync route of Starlette or FastAPI), the call runs on that host loop
  through ``anyio.from_thread.run``: the loop of the app, whose
  ``MasaApp.lifespan()`` opened the store.
* **From any other thread** (a WSGI server's threads, a script), the call
  runs on one background event loop for the process: an asyncio loop in a
  daemon thread, started by the first call, which also opens the root
  container's store there. The store is closed, and the thread stopped, at
  interpreter exit (``atexit``) or on ``MasaApp.reset()``. Calls from many
  threads at once are safe: each is a task on that loop; one lock makes the
  first of them the only one that starts it.

Two event loops must not share a store: its connections belong to the loop
that opened them. So while the worker of ``MasaApp.lifespan()`` runs on an
event loop of this process, a sync call from a thread that loop did not start
is refused (``NotSupportedError``, naming the way out). A process whose
lifespan runs with ``disable_background_job`` cannot be told apart: call the
sync API there only from the loop's worker threads. And a sync call from
inside a running event loop is refused: it would block the loop (use ``await
BackgroundJobManager.enqueue``).
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

import anyio.from_thread
from pydantic import BaseModel

from .app import MasaApp, find_jobs_container
from .exceptions import NotSupportedError
from .manager import Delay, JobManager, Timeout
from .records import JobId, JobInfo, UniqueScope

__all__ = ["SyncJobManager", "close_sync_loop"]

T = TypeVar("T")

logger = logging.getLogger("masa_jobs")


class SyncJobManager:
    """Blocking ``enqueue``, ``get`` and ``wait`` on the root container's job manager.

    It holds nothing: every call resolves the container published by
    ``MasaApp.build(...)`` (``MasaNotBuiltError`` before that), so one made
    at import time works. Safe from many threads at once. Inside a running
    event loop it is refused: ``await`` the ``JobManager`` there instead.
    """

    def enqueue(
        self,
        args: BaseModel,
        delay: Delay = None,
        *,
        timeout: Delay = None,
        queue: str | None = None,
        priority: int | None = None,
        unique_key: str | None = None,
        unique_scope: UniqueScope | str | None = None,
        unique_for: Delay = None,
    ) -> JobId:
        """Store a job to run after ``delay`` (now when None); returns its id.
        The keyword arguments are ``JobManager.enqueue``'s."""
        control: dict[str, Any] = {
            key: value
            for key, value in (
                ("timeout", timeout),
                ("queue", queue),
                ("priority", priority),
                ("unique_key", unique_key),
                ("unique_scope", unique_scope),
                ("unique_for", unique_for),
            )
            if value is not None
        }
        # Only what was asked for: a manager of the application's own may
        # predate some of these options.
        return _call("enqueue", lambda manager: manager.enqueue(args, delay, **control))

    def get(self, job_id: str) -> JobInfo | None:
        """One job, or None."""
        return _call("get", lambda manager: manager.get(job_id))

    def wait(self, job_id: str, timeout: Timeout = None) -> JobInfo:
        """Block until the job is finished; see ``JobManager.wait``."""
        return _call("wait", lambda manager: manager.wait(job_id, timeout))


def close_sync_loop() -> None:
    """Close the store the sync API opened and stop its event loop thread.

    ``MasaApp.reset()`` and interpreter exit call it; the next sync call
    starts again. Calls still running on that loop fail.
    """
    global _loop
    with _lock:
        loop, _loop = _loop, None
    if loop is not None:
        loop.close()


def _call(name: str, operation: Callable[[JobManager], Awaitable[T]]) -> T:
    _refuse_inside_event_loop(name)
    root = MasaApp.root()  # MasaNotBuiltError before MasaApp.build(...)
    hosted = _call_on_host_loop(operation)
    if hosted is not None:
        return hosted[0]
    return _loop_for(root).call(operation)


def _refuse_inside_event_loop(name: str) -> None:
    library = _running_event_loop()
    if library is None:
        return
    raise NotSupportedError(
        f"{name}_sync was called from a thread running an event loop ({library}), which it "
        f"would block: in async code use `await BackgroundJobManager.{name}(...)` (or the "
        "injected JobManager), or run the sync call in a worker thread "
        "(`await anyio.to_thread.run_sync(...)`)"
    )


def _running_event_loop() -> str | None:
    """The event loop library running in this thread, if any."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    trio: Any = sys.modules.get("trio")  # imported by whoever runs trio; never by us
    if trio is not None:
        try:
            trio.lowlevel.current_trio_token()
        except RuntimeError:
            pass
        else:
            return "trio"
    return None


def _call_on_host_loop(operation: Callable[[JobManager], Awaitable[T]]) -> tuple[T] | None:
    """``(result,)`` of the operation run on the event loop that started this
    worker thread; None when no event loop did."""
    entered = False

    async def run() -> T:
        nonlocal entered
        entered = True
        return await operation(MasaApp.job_manager())

    try:
        return (anyio.from_thread.run(run),)
    except RuntimeError:
        # anyio's "not in a worker thread" (NoEventLoopError, a RuntimeError)
        # comes before anything ran; an error of the operation itself passes.
        if entered:
            raise
        return None


class _SyncLoop:
    """The event loop thread of the sync API, owning the root container's store."""

    def __init__(self, root: Any) -> None:
        self.root = root
        jobs = find_jobs_container(root)
        self._jobs = jobs
        self._store = jobs.job_store()
        self._refuse_beside_a_running_worker()
        self._thread = _LoopThread()
        try:
            self._thread.call(self._store.open())
        except BaseException:
            self._thread.stop()
            raise

    def call(self, operation: Callable[[JobManager], Awaitable[T]]) -> T:
        self._refuse_beside_a_running_worker()
        # Resolved on every call: a test may override the provider meanwhile.
        manager: JobManager = self._jobs.job_manager()
        return self._thread.call(_apply(operation, manager))

    def close(self) -> None:
        try:
            self._thread.call(self._store.aclose())
        except Exception:
            # At exit or in MasaApp.reset() nobody can act on it: say it, go on.
            logger.warning("the sync API could not close %r", self._store, exc_info=True)
        finally:
            self._thread.stop()

    def _refuse_beside_a_running_worker(self) -> None:
        if not self._jobs.worker().running:
            return
        raise NotSupportedError(
            "MasaApp.lifespan() runs the worker on an event loop in another thread of this "
            "process, and the store belongs to that loop: call the sync API from that loop's "
            "worker threads (`anyio.to_thread.run_sync`, a sync route of Starlette or "
            "FastAPI), or hand the call to that loop with `anyio.from_thread.run("
            "BackgroundJobManager.enqueue, args, token=token)` (token = "
            "anyio.lowlevel.current_token() taken on it)"
        )


async def _apply(operation: Callable[[JobManager], Awaitable[T]], manager: JobManager) -> T:
    return await operation(manager)


class _LoopThread:
    """An asyncio event loop in a daemon thread, and blocking calls into it.

    ``asyncio.run`` runs it: its main task is the root task that anyio ties its
    worker threads to (the SQLite store's), so they are reused from call to
    call. A daemon thread never holds up interpreter exit, and is still there
    when the ``atexit`` hook closes the store. Handing a coroutine over with
    ``run_coroutine_threadsafe`` costs about half of what a ``BlockingPortal``
    call does (a task group and cancel scope per call).
    """

    def __init__(self) -> None:
        started: Future[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = Future()
        self._thread = threading.Thread(
            target=_serve, args=(started,), name="masa-jobs-sync", daemon=True
        )
        self._thread.start()
        self._loop, self._stopped = started.result()

    def call(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def stop(self) -> None:
        """Let ``asyncio.run`` end: calls still running are cancelled."""
        try:
            self._loop.call_soon_threadsafe(self._stopped.set)
        except RuntimeError:
            return  # the loop has ended already
        self._thread.join()


def _serve(started: Future[tuple[asyncio.AbstractEventLoop, asyncio.Event]]) -> None:
    async def main() -> None:
        stopped = asyncio.Event()
        started.set_result((asyncio.get_running_loop(), stopped))
        await stopped.wait()

    try:
        asyncio.run(main())
    except BaseException as exc:
        if not started.done():
            started.set_exception(exc)
            return
        raise


# The one sync loop of the process, for the root container it opened the store of.
_lock = threading.Lock()
_loop: _SyncLoop | None = None
_exit_hook_registered = False
# The root whose store a parent process opened before it forked this one.
_opened_before_fork: Any | None = None


def _after_fork_in_child() -> None:
    """A forked child has the parent's memory but not its threads: the loop is gone
    (a call into it would wait forever) and the store's connections are the parent's."""
    global _lock, _loop, _opened_before_fork
    _lock = threading.Lock()  # another thread may have held it at the fork
    if _loop is not None:
        _opened_before_fork, _loop = _loop.root, None


if hasattr(os, "register_at_fork"):  # not on Windows
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _refuse_a_store_opened_before_fork(root: Any) -> None:
    if _opened_before_fork is None or root is not _opened_before_fork:
        return
    raise NotSupportedError(
        "this process was forked after a sync call had opened the store in its parent, "
        "and a store's connections cannot cross a fork: make the first sync call after "
        "the fork (gunicorn --preload: enqueue nothing at import time), or build a new "
        "container in the child"
    )


def _loop_for(root: Any) -> _SyncLoop:
    global _loop, _exit_hook_registered
    loop = _loop
    if loop is not None and loop.root is root:
        return loop  # the common case: no lock
    with _lock:
        stale = _loop
        if stale is not None and stale.root is root:
            return stale
        _loop = None
        if stale is not None:  # another root was published without MasaApp.reset()
            stale.close()
        _refuse_a_store_opened_before_fork(root)
        _loop = _SyncLoop(root)
        if not _exit_hook_registered:
            atexit.register(close_sync_loop)
            _exit_hook_registered = True
        return _loop
