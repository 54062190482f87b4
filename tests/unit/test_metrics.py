"""Prometheus metrics: counted where jobs are enqueued and run, gauges read at scrape."""

from __future__ import annotations

import urllib.error
import urllib.request
from datetime import timedelta
from typing import Any
from uuid import uuid4

import anyio
import anyio.to_thread
import pytest
from masa_jobs.containers import BackgroundJobContainer
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from masa_jobs import (
    DefaultJobManager,
    JobRecord,
    JobRegistry,
    JobState,
    MemoryJobStore,
    Worker,
    WorkerInfo,
    get_job_name,
)
from masa_jobs._leases import HeldJobs
from masa_jobs._metrics_http import serve_metrics
from masa_jobs._observe import JobObserver, Observers, observers_for
from masa_jobs.metrics import (
    CONTENT_TYPE,
    PrometheusObserver,
    prometheus_observer,
    read_store_snapshot,
    render_metrics,
)
from masa_jobs.records import JobOutcome, utcnow

from .support import (
    ALL_HANDLERS,
    FAILURES,
    Doomed,
    Flaky,
    Greet,
    fast_options,
    running,
    wait_for_record,
)

pytestmark = pytest.mark.anyio

GREET = get_job_name(Greet)
DOOMED = get_job_name(Doomed)
FLAKY = get_job_name(Flaky)
COUNTERS = ("enqueued", "started", "succeeded", "failed", "dead")


def counter(kind: str, name: str) -> float:
    """The value of ``masa_jobs_jobs_<kind>_total`` for one job name (0 when absent)."""
    value = REGISTRY.get_sample_value(f"masa_jobs_jobs_{kind}_total", {"job_name": name})
    return value or 0.0


def histogram_count(metric: str, name: str) -> float:
    return REGISTRY.get_sample_value(f"{metric}_count", {"job_name": name}) or 0.0


class Counts:
    """The counters of some job names, to compare before and after."""

    def __init__(self, *names: str) -> None:
        self._names = names
        self._before = self._read()

    def _read(self) -> dict[tuple[str, str], float]:
        read = {(kind, name): counter(kind, name) for kind in COUNTERS for name in self._names}
        for name in self._names:
            read["run", name] = histogram_count("masa_jobs_job_run_seconds", name)
            read["latency", name] = histogram_count("masa_jobs_queue_latency_seconds", name)
            lost = REGISTRY.get_sample_value("masa_jobs_lease_lost_total", {"job_name": name})
            read["lost", name] = lost or 0.0
        return read

    def delta(self, kind: str, name: str) -> float:
        return self._read()[kind, name] - self._before[kind, name]


def options(**overrides: Any) -> Any:
    return fast_options(**{"metrics": True, "tracing": False, **overrides})


@pytest.fixture
def store() -> MemoryJobStore:
    return MemoryJobStore()


def make_manager(store: MemoryJobStore, **overrides: Any) -> DefaultJobManager:
    return DefaultJobManager(store, JobRegistry(ALL_HANDLERS), options(**overrides))


def make_worker(store: MemoryJobStore, **overrides: Any) -> Worker:
    return Worker(store, JobRegistry(ALL_HANDLERS), options(**overrides), worker_id="metrics")


# -- counters -------------------------------------------------------------------------


async def test_a_succeeding_job_is_counted_enqueued_started_and_succeeded(
    store: MemoryJobStore,
) -> None:
    counts = Counts(GREET)
    manager = make_manager(store)

    async with running(make_worker(store)):
        job_ids = [await manager.enqueue(Greet(key=str(n))) for n in range(3)]
        for job_id in job_ids:
            await wait_for_record(store, job_id, lambda r: r.state is JobState.SUCCEEDED)

    assert counts.delta("enqueued", GREET) == 3
    assert counts.delta("started", GREET) == 3
    assert counts.delta("succeeded", GREET) == 3
    assert counts.delta("failed", GREET) == 0
    assert counts.delta("run", GREET) == 3
    assert counts.delta("latency", GREET) == 3


async def test_every_failed_attempt_is_counted_and_the_dead_job_once(
    store: MemoryJobStore,
) -> None:
    counts = Counts(DOOMED)
    manager = make_manager(store)

    async with running(make_worker(store, max_retry_times=2)):
        job_id = await manager.enqueue(Doomed(key="x"))
        await wait_for_record(store, job_id, lambda r: r.state is JobState.DEAD)

    assert counts.delta("started", DOOMED) == 3
    assert counts.delta("failed", DOOMED) == 3
    assert counts.delta("dead", DOOMED) == 1
    assert counts.delta("succeeded", DOOMED) == 0
    assert counts.delta("run", DOOMED) == 3


async def test_a_retried_job_counts_its_failure_then_its_success(store: MemoryJobStore) -> None:
    FAILURES["k"] = 1
    counts = Counts(FLAKY)
    manager = make_manager(store)

    async with running(make_worker(store)):
        job_id = await manager.enqueue(Flaky(key="k"))
        await wait_for_record(store, job_id, lambda r: r.state is JobState.SUCCEEDED)

    assert (counts.delta("failed", FLAKY), counts.delta("succeeded", FLAKY)) == (1, 1)
    assert counts.delta("dead", FLAKY) == 0


async def test_enqueue_many_counts_each_job_by_its_name(store: MemoryJobStore) -> None:
    counts = Counts(GREET, DOOMED)

    await make_manager(store).enqueue_many(
        [(Greet(key="a"), None), (Greet(key="b"), None), (Doomed(key="c"), 60)]
    )

    assert counts.delta("enqueued", GREET) == 2
    assert counts.delta("enqueued", DOOMED) == 1


async def test_a_job_waiting_for_a_worker_with_its_handler_is_no_failure(
    store: MemoryJobStore,
) -> None:
    name = f"unknown-{uuid4().hex[:8]}"
    counts = Counts(name)
    now = utcnow()
    record = JobRecord(
        id=uuid4().hex,
        name=name,
        payload="{}",
        state=JobState.ENQUEUED,
        created_at=now,
        next_try_at=now,
    )
    await store.add([record])

    async with running(make_worker(store)):
        await wait_for_record(store, record.id, lambda r: r.last_error is not None)

    assert counts.delta("started", name) == 1
    assert counts.delta("failed", name) == 0
    assert counts.delta("run", name) == 0


async def test_queue_latency_is_from_the_due_time_to_the_claim(store: MemoryJobStore) -> None:
    overdue = timedelta(seconds=90)
    now = utcnow()
    record = JobRecord(
        id=uuid4().hex,
        name=GREET,
        payload='{"key": "late"}',
        state=JobState.ENQUEUED,
        created_at=now - overdue,
        next_try_at=now - overdue,
    )
    above = {"job_name": GREET, "le": "60.0"}
    before = REGISTRY.get_sample_value("masa_jobs_queue_latency_seconds_bucket", above) or 0
    total = histogram_count("masa_jobs_queue_latency_seconds", GREET)
    await store.add([record])

    async with running(make_worker(store)):
        await wait_for_record(store, record.id, lambda r: r.state is JobState.SUCCEEDED)

    # Counted, and above 60 s: not in the le=60 bucket.
    assert histogram_count("masa_jobs_queue_latency_seconds", GREET) == total + 1
    assert REGISTRY.get_sample_value("masa_jobs_queue_latency_seconds_bucket", above) == before


def test_a_lost_lease_is_counted_by_job_name() -> None:
    name = f"lost-{uuid4().hex[:8]}"
    counts = Counts(name)
    observers = Observers([prometheus_observer()])
    held = HeldJobs(MemoryJobStore(), "w", 30.0, on_lost=observers.lease_lost)
    now = utcnow()
    record = JobRecord(
        id="j1",
        name=name,
        payload="{}",
        state=JobState.PROCESSING,
        created_at=now,
        next_try_at=now,
        attempts=1,
        lease_token="t",
    )
    held.add([record], 0.0)
    outcome = JobOutcome(job_id="j1", state=JobState.SUCCEEDED, attempts=1, next_try_at=now)

    held.report_refused([outcome], applied=set())
    held.report_refused([outcome], applied=set())  # a loss is counted once

    assert counts.delta("lost", name) == 1
    assert held.leases_lost == 1


# -- switches -------------------------------------------------------------------------


async def test_metrics_off_counts_nothing(store: MemoryJobStore) -> None:
    counts = Counts(GREET)
    manager = make_manager(store, metrics=False)
    worker = make_worker(store, metrics=False)

    async with running(worker):
        job_id = await manager.enqueue(Greet(key="off"))
        await wait_for_record(store, job_id, lambda r: r.state is JobState.SUCCEEDED)

    assert all(counts.delta(kind, GREET) == 0 for kind in (*COUNTERS, "run", "latency"))


def test_nothing_watching_means_no_observers() -> None:
    assert observers_for(fast_options(metrics=False, tracing=False)) is None


def test_without_prometheus_client_there_are_no_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("masa_jobs._observe.metrics_installed", lambda: False)

    assert observers_for(fast_options(metrics=True, tracing=False)) is None


def test_every_worker_and_manager_shares_one_observer() -> None:
    first = observers_for(options())
    second = observers_for(options())

    assert first is not None
    assert second is not None
    assert first.hooks == second.hooks == (prometheus_observer(),)
    assert isinstance(prometheus_observer(), PrometheusObserver)


def test_two_containers_in_one_process_register_nothing_twice() -> None:
    for _ in range(2):
        container = BackgroundJobContainer()
        container.config.from_dict({"options": {"metrics": True}})
        container.job_manager()
        container.worker()


def test_observer_hooks_do_nothing_by_default() -> None:
    now = utcnow()
    record = JobRecord("j", "n", "{}", JobState.PROCESSING, now, now)
    hook = JobObserver()
    hook.jobs_enqueued([record])
    hook.job_started(record, 0.0)
    hook.job_succeeded(record, 0.0)
    hook.job_failed(record, 0.0)
    hook.job_dead("n")
    hook.lease_lost("n")


# -- the store's gauges ---------------------------------------------------------------


def samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


async def test_render_reads_the_queue_from_the_store(store: MemoryJobStore) -> None:
    manager = make_manager(store)
    overdue = utcnow() - timedelta(seconds=120)
    late = JobRecord(uuid4().hex, GREET, '{"key": "x"}', JobState.ENQUEUED, overdue, overdue)
    await store.add([late])
    await manager.enqueue(Greet(key="later"), delay=3600)
    worker = make_worker(store)
    await store.heartbeat(_worker_info(worker.worker_id))

    body, content_type = await render_metrics(manager)

    found = samples(body)
    assert content_type == CONTENT_TYPE
    assert found["masa_jobs_store_up", ()] == 1
    assert found["masa_jobs_jobs", (("state", "enqueued"),)] == 1
    assert found["masa_jobs_jobs", (("state", "scheduled"),)] == 1
    assert found["masa_jobs_jobs", (("state", "dead"),)] == 0
    assert found["masa_jobs_workers_live", ()] == 1
    assert found["masa_jobs_oldest_due_age_seconds", ()] >= 120
    # The process's counters come with them.
    assert ("masa_jobs_jobs_enqueued_total", (("job_name", GREET),)) in found


async def test_an_empty_queue_has_no_due_age(store: MemoryJobStore) -> None:
    snapshot = await read_store_snapshot(make_manager(store))

    assert snapshot.up
    assert snapshot.oldest_due_age == 0
    assert snapshot.workers_live == 0


class BrokenStore(MemoryJobStore):
    async def count_by_state(self, now: Any) -> dict[JobState, int]:
        raise ConnectionError("store down")


class HangingStore(MemoryJobStore):
    async def count_by_state(self, now: Any) -> dict[JobState, int]:
        await anyio.sleep_forever()
        raise AssertionError


async def test_a_store_that_fails_leaves_its_gauges_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    body, _ = await render_metrics(make_manager(BrokenStore()))

    found = samples(body)
    assert found["masa_jobs_store_up", ()] == 0
    assert not any(name == "masa_jobs_workers_live" for name, _ in found)
    assert "reading the store's gauges failed" in caplog.text


async def test_a_store_that_hangs_is_given_up_on(caplog: pytest.LogCaptureFixture) -> None:
    snapshot = await read_store_snapshot(make_manager(HangingStore()), timeout=0.05)

    assert not snapshot.up
    assert snapshot.jobs is None
    assert "TimeoutError" in caplog.text


# -- serving /metrics from a worker process -------------------------------------------


def _get(url: str) -> tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


async def test_the_metrics_server_renders_each_scrape_on_the_loop(store: MemoryJobStore) -> None:
    manager = make_manager(store)
    await manager.enqueue(Greet(key="served"))

    async with serve_metrics(manager, "127.0.0.1", 0) as (host, port):
        status, content_type, body = await anyio.to_thread.run_sync(
            _get, f"http://{host}:{port}/metrics"
        )
        missing = await anyio.to_thread.run_sync(_get, f"http://{host}:{port}/other")

    assert status == 200
    assert content_type == CONTENT_TYPE
    assert samples(body)["masa_jobs_jobs", (("state", "enqueued"),)] == 1
    assert missing[0] == 404


async def test_the_metrics_server_refuses_a_port_in_use(store: MemoryJobStore) -> None:
    manager = make_manager(store)
    async with serve_metrics(manager, "127.0.0.1", 0) as (_, port):
        with pytest.raises(OSError, match="in use"):
            async with serve_metrics(manager, "127.0.0.1", port):
                pass


def _worker_info(worker_id: str) -> WorkerInfo:
    now = utcnow()
    return WorkerInfo(id=worker_id, host="h", pid=1, started_at=now, last_seen_at=now)


def test_a_metrics_port_without_prometheus_client_names_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from masa_jobs.cli import _worker_setup
    from masa_jobs.cli._common import CliError

    monkeypatch.setattr(_worker_setup, "metrics_installed", lambda: False)

    _worker_setup.check_metrics_flag(None)
    with pytest.raises(CliError, match=r"pip install 'masa-jobs\[metrics\]'"):
        _worker_setup.check_metrics_flag(9100)
