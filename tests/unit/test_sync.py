"""The sync API: enqueue_sync, get_sync and wait_sync from threads without an event loop."""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import pytest
from masa_jobs.containers import BackgroundJobContainer

from masa_jobs import (
    BackgroundJobManager,
    DefaultJobManager,
    JobNotFoundError,
    JobRegistry,
    JobState,
    MasaApp,
    MasaNotBuiltError,
    NotSupportedError,
    StoreError,
    SyncJobManager,
    Worker,
)
from masa_jobs.stores.sqlite import SqliteJobStore

from .support import ALL_HANDLERS, Greet, calls_of, fast_options, running

TIMEOUT = 10.0
THREADS = 16
REPO_ROOT = Path(__file__).resolve().parents[2]


def build(store: dict[str, Any], **options: Any) -> BackgroundJobContainer:
    container = BackgroundJobContainer()
    container.config.from_dict(
        {"store": store, "options": {"first_wait_duration": 0.01, **options}}
    )
    MasaApp.build(container)
    return container


def sqlite(path: Path) -> dict[str, Any]:
    return {"backend": "sqlite", "path": str(path)}


def run_worker_until_finished(path: Path, job_ids: list[str]) -> None:
    """A separate worker on its own store of the same file (as another process
    would run), on its own event loop, until every job is finished."""

    async def consume() -> None:
        store = SqliteJobStore(path)
        await store.open()
        try:
            registry = JobRegistry(ALL_HANDLERS)
            manager = DefaultJobManager(store, registry, fast_options())
            async with running(Worker(store, registry, fast_options())):
                for job_id in job_ids:
                    await manager.wait(job_id, timeout=TIMEOUT)
        finally:
            await store.aclose()

    anyio.run(consume)


def at_once(count: int, call: Callable[[int], str]) -> list[str]:
    """``call(i)`` for i in range(count), each in its own thread, all released together."""
    barrier = threading.Barrier(count)

    def run(index: int) -> str:
        barrier.wait(timeout=TIMEOUT)
        return call(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count), timeout=TIMEOUT))


# -- the API -------------------------------------------------------------------------


def test_the_sync_methods_are_plain_functions() -> None:
    for name in ("enqueue_sync", "get_sync", "wait_sync"):
        method = getattr(BackgroundJobManager, name)
        assert callable(method)
        assert not inspect.iscoroutinefunction(method)
    parameters = inspect.signature(BackgroundJobManager.enqueue_sync).parameters
    keyword_only = ["timeout", "queue", "priority", "unique_key", "unique_scope", "unique_for"]
    assert list(parameters) == ["args", "delay", *keyword_only]
    assert parameters["delay"].default is None
    for name in keyword_only:
        assert parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
        assert parameters[name].default is None
    assert list(inspect.signature(BackgroundJobManager.wait_sync).parameters) == [
        "job_id",
        "timeout",
    ]


def test_sync_calls_before_build_say_how_to_fix_it() -> None:
    with pytest.raises(MasaNotBuiltError, match=r"call MasaApp\.build"):
        BackgroundJobManager.enqueue_sync(Greet(key="early"))


# -- threads without an event loop -----------------------------------------------------


def test_enqueue_sync_from_16_threads_at_once_on_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    build(sqlite(path), disable_background_job=True)  # a web process that only enqueues

    job_ids = at_once(THREADS, lambda i: BackgroundJobManager.enqueue_sync(Greet(key=f"t{i}")))

    assert len(set(job_ids)) == THREADS
    infos = [BackgroundJobManager.get_sync(job_id) for job_id in job_ids]
    assert all(info is not None and info.state is JobState.ENQUEUED for info in infos)

    run_worker_until_finished(path, job_ids)

    assert sorted(calls_of("greet")) == sorted(f"t{i}" for i in range(THREADS))
    # wait_sync from many threads at once too, each seeing the worker's outcome.
    finished = at_once(
        THREADS,
        lambda i: BackgroundJobManager.wait_sync(job_ids[i], timeout=TIMEOUT).state.value,
    )
    assert finished == ["succeeded"] * THREADS


def test_wait_sync_blocks_until_another_process_finishes_the_job(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    build(sqlite(path), disable_background_job=True)
    job_id = SyncJobManager().enqueue(Greet(key="waited"))
    worker = threading.Thread(target=run_worker_until_finished, args=(path, [job_id]))
    worker.start()
    try:
        info = SyncJobManager().wait(job_id, timeout=TIMEOUT)
    finally:
        worker.join(TIMEOUT)

    assert (info.state, info.attempts) == (JobState.SUCCEEDED, 1)


def test_get_sync_and_wait_sync_on_the_memory_store() -> None:
    build({"backend": "memory"})
    job_id = BackgroundJobManager.enqueue_sync(Greet(key="later"), delay=3600)

    info = BackgroundJobManager.get_sync(job_id)
    assert info is not None
    assert (info.state, info.args) == (JobState.SCHEDULED, {"key": "later"})
    with pytest.raises(TimeoutError, match="still scheduled"):
        BackgroundJobManager.wait_sync(job_id, timeout=0.05)
    assert BackgroundJobManager.get_sync("nope") is None
    with pytest.raises(JobNotFoundError, match="no job with id 'nope'"):
        BackgroundJobManager.wait_sync("nope", timeout=TIMEOUT)
    # The store the sync side uses is the root container's: the async API sees the job.
    assert anyio.run(MasaApp.job_manager().get, job_id) == info


def test_reset_closes_the_store_and_the_next_call_opens_it_again(tmp_path: Path) -> None:
    container = build(sqlite(tmp_path / "jobs.db"), disable_background_job=True)
    job_id = BackgroundJobManager.enqueue_sync(Greet(key="before"))
    store = container.job_store()

    MasaApp.reset()

    with pytest.raises(StoreError, match="is not open"):
        anyio.run(store.get, job_id)
    MasaApp.build(container)
    info = BackgroundJobManager.get_sync(job_id)
    assert info is not None
    assert info.args == {"key": "before"}


def test_interpreter_exit_closes_the_store(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    script = tmp_path / "enqueue_script.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from masa_jobs.containers import BackgroundJobContainer
            from pydantic import BaseModel

            from masa_jobs import BackgroundJob, BackgroundJobManager, MasaApp


            class Ping(BaseModel):
                n: int


            class PingJob(BackgroundJob[Ping]):
                async def execute(self, args: Ping) -> None:
                    pass


            container = BackgroundJobContainer()
            container.config.from_dict(
                {{
                    "store": {{"backend": "sqlite", "path": {str(path)!r}}},
                    "options": {{"disable_background_job": True}},
                }}
            )
            MasaApp.build(container)
            print(BackgroundJobManager.enqueue_sync(Ping(n=1)))
            """
        )
    )

    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    job_id = done.stdout.strip()
    # The last connection to close checkpoints the WAL and removes it: a process
    # that exited without closing its store would leave it behind.
    assert not Path(f"{path}-wal").exists()

    async def stored() -> Any:
        store = SqliteJobStore(path)
        await store.open()
        try:
            return await store.get(job_id)
        finally:
            await store.aclose()

    record = anyio.run(stored)
    assert record is not None
    assert record.state is JobState.ENQUEUED


# -- event loops -------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["enqueue", "get", "wait"])
async def test_a_sync_call_inside_an_event_loop_is_refused(name: str) -> None:
    build({"backend": "memory"})
    calls: dict[str, Callable[[], object]] = {
        "enqueue": lambda: BackgroundJobManager.enqueue_sync(Greet(key="x")),
        "get": lambda: BackgroundJobManager.get_sync("x"),
        "wait": lambda: BackgroundJobManager.wait_sync("x"),
    }

    with pytest.raises(NotSupportedError) as caught:
        calls[name]()

    message = str(caught.value)
    assert f"{name}_sync was called from a thread running an event loop" in message
    assert f"await BackgroundJobManager.{name}(...)" in message


@pytest.mark.anyio
async def test_a_worker_thread_of_the_app_loop_uses_the_lifespan_store() -> None:
    build({"backend": "memory"})

    async with MasaApp.lifespan():
        job_id = await anyio.to_thread.run_sync(
            BackgroundJobManager.enqueue_sync, Greet(key="from a thread")
        )
        info = await anyio.to_thread.run_sync(BackgroundJobManager.wait_sync, job_id, TIMEOUT)

    assert info.state is JobState.SUCCEEDED
    assert calls_of("greet") == ["from a thread"]


@pytest.mark.anyio
async def test_another_thread_is_refused_while_the_lifespan_worker_runs() -> None:
    build({"backend": "memory"})
    errors: list[BaseException] = []

    def enqueue_in_a_plain_thread() -> None:
        def enqueue() -> None:
            try:
                BackgroundJobManager.enqueue_sync(Greet(key="stray"))
            except BaseException as exc:  # the test inspects it
                errors.append(exc)

        thread = threading.Thread(target=enqueue)
        thread.start()
        thread.join(TIMEOUT)

    async with MasaApp.lifespan():
        await anyio.to_thread.run_sync(enqueue_in_a_plain_thread)

    assert len(errors) == 1
    assert isinstance(errors[0], NotSupportedError)
    assert "call the sync API from that loop's worker threads" in str(errors[0])
    assert await MasaApp.job_manager().count() == dict.fromkeys(JobState, 0)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork is POSIX only")
def test_a_forked_child_is_told_to_call_after_the_fork(tmp_path: Path) -> None:
    script = tmp_path / "fork_script.py"
    script.write_text(
        textwrap.dedent(
            """
            import os

            from masa_jobs.containers import BackgroundJobContainer
            from pydantic import BaseModel

            from masa_jobs import BackgroundJob, BackgroundJobManager, MasaApp, NotSupportedError


            class Ping(BaseModel):
                n: int


            class PingJob(BackgroundJob[Ping]):
                async def execute(self, args: Ping) -> None:
                    pass


            MasaApp.build(BackgroundJobContainer())
            BackgroundJobManager.enqueue_sync(Ping(n=1))  # the parent opens the store
            child = os.fork()
            if child == 0:
                try:
                    BackgroundJobManager.enqueue_sync(Ping(n=2))
                except NotSupportedError as exc:
                    print(exc, flush=True)
                    os._exit(3)
                os._exit(0)
            _, status = os.waitpid(child, 0)
            print("child exit", os.waitstatus_to_exitcode(status), flush=True)
            BackgroundJobManager.enqueue_sync(Ping(n=3))  # the parent's loop still works
            """
        )
    )

    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert "make the first sync call after the fork" in done.stdout
    assert "child exit 3" in done.stdout
