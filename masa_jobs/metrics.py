"""Prometheus metrics: what happened to jobs, counted where it happens, and
the queue as the store sees it, read when scraped.

Counters and histograms, labelled ``job_name`` (never by id: one series per
job name), are counted by the process that enqueues or runs the job:

* ``masa_jobs_jobs_enqueued_total``: jobs stored by ``enqueue``/``enqueue_many``;
* ``masa_jobs_jobs_started_total``: runs begun by this process's worker;
* ``masa_jobs_jobs_succeeded_total``: attempts that ended with every handler done;
* ``masa_jobs_jobs_failed_total``: attempts that failed, retried later or not;
* ``masa_jobs_jobs_dead_total``: jobs that went dead;
* ``masa_jobs_lease_lost_total``: held jobs whose lease this worker lost;
* ``masa_jobs_job_run_seconds``: how long an attempt ran (succeeded or failed);
* ``masa_jobs_queue_latency_seconds``: from when a job was due to its claim.

They are counted by one observer per process, registered in prometheus-client's
default registry when this module is first imported, so several containers in
one process share them and an application's own ``/metrics`` endpoint shows
them too.

The gauges of the queue come from the store at scrape time, in
``render_metrics(manager)``, never from a cached value that could be stale:
``masa_jobs_jobs{state}``, ``masa_jobs_workers_live``,
``masa_jobs_oldest_due_age_seconds`` and ``masa_jobs_store_up`` (0 when the
store did not answer in time: the other three are then left out). They are
the whole fleet's, the same from every process that serves them.

Needs prometheus-client (the ``metrics`` extra); the rest of masa-jobs
imports this module only when it is installed and ``options.metrics`` is on.
"""

from __future__ import annotations

import logging
import math
import threading
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from ._observe import JobObserver
from ._redact import redact
from .health import operator_store
from .manager import JobManager
from .options import BackgroundJobOptions
from .records import JobRecord, JobState

__all__ = [
    "CONTENT_TYPE",
    "StoreSnapshot",
    "prometheus_observer",
    "read_store_snapshot",
    "render_metrics",
]

logger = logging.getLogger("masa_jobs.metrics")

CONTENT_TYPE = CONTENT_TYPE_LATEST
# `job` is the label Prometheus gives every target: ours must not clash with it.
LABELS = ("job_name",)
# Run times from a few milliseconds (a no-op handler) to an hour (a report).
RUN_SECONDS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600)
# Queue latency from a wake-up's milliseconds to an hour of backlog.
LATENCY_SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)
# A scrape waits this long for the store, then answers without the store's gauges:
# Prometheus' own scrape timeout is 10 s by default.
STORE_READ_TIMEOUT_SECONDS = 5.0

# (attribute of a series, metric name, help) of each counter.
_COUNTERS = (
    ("enqueued", "masa_jobs_jobs_enqueued", "Jobs stored by enqueue and enqueue_many."),
    ("started", "masa_jobs_jobs_started", "Runs of claimed jobs begun."),
    ("succeeded", "masa_jobs_jobs_succeeded", "Attempts that ended with every handler done."),
    ("failed", "masa_jobs_jobs_failed", "Attempts that failed, whether retried later or not."),
    ("dead", "masa_jobs_jobs_dead", "Jobs that went dead."),
    ("lost", "masa_jobs_lease_lost", "Held jobs whose lease a worker lost (they may run again)."),
)
# (attribute of a series, metric name, help) of each histogram.
_HISTOGRAMS = (
    ("run", "masa_jobs_job_run_seconds", "How long an attempt ran."),
    (
        "latency",
        "masa_jobs_queue_latency_seconds",
        "Seconds from when a job was due to when a worker claimed it.",
    ),
)


class _Histogram:
    """Observations per bucket (the last one past every bound) and their sum."""

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.total = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le).
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def cumulative(self) -> list[tuple[str, float]]:
        buckets, running = [], 0
        for bound, count in zip((*self.bounds, math.inf), self.counts, strict=True):
            running += count
            buckets.append((_le(bound), float(running)))
        return buckets


def _le(bound: float) -> str:
    """A bucket's bound as Prometheus writes it: 0.005, 60.0, +Inf."""
    return "+Inf" if math.isinf(bound) else repr(float(bound))


class _Series:
    """What happened to the jobs of one name in this process.

    Plain numbers under one lock per name: a job's events cost a fraction of
    a microsecond, where prometheus-client's metric objects cost several
    (measured by ``masa-jobs bench``); the lock keeps the counts exact when
    several event loops of one process (the sync API's) count the same name.
    """

    __slots__ = (
        "dead",
        "enqueued",
        "failed",
        "latency",
        "lock",
        "lost",
        "run",
        "started",
        "succeeded",
    )

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.enqueued = self.started = self.succeeded = self.failed = self.dead = self.lost = 0
        self.run = _Histogram(RUN_SECONDS_BUCKETS)
        self.latency = _Histogram(LATENCY_SECONDS_BUCKETS)


class PrometheusObserver(JobObserver):
    """Counts the events of jobs, and hands them to Prometheus as counters and
    histograms by job name when it collects."""

    def __init__(self) -> None:
        self._series: dict[str, _Series] = {}
        self._adding = threading.Lock()

    def _of(self, name: str) -> _Series:
        series = self._series.get(name)
        if series is None:
            with self._adding:
                series = self._series.setdefault(name, _Series())
        return series

    def jobs_enqueued(self, records: Sequence[JobRecord]) -> None:
        if len(records) == 1:
            series = self._of(records[0].name)
            with series.lock:
                series.enqueued += 1
            return
        per_name: dict[str, int] = {}
        for record in records:
            per_name[record.name] = per_name.get(record.name, 0) + 1
        for name, count in per_name.items():
            series = self._of(name)
            with series.lock:
                series.enqueued += count

    def job_started(self, record: JobRecord, queue_latency: float) -> None:
        series = self._of(record.name)
        with series.lock:
            series.started += 1
            series.latency.observe(queue_latency)

    def job_succeeded(self, record: JobRecord, seconds: float) -> None:
        series = self._of(record.name)
        with series.lock:
            series.succeeded += 1
            series.run.observe(seconds)

    def job_failed(self, record: JobRecord, seconds: float) -> None:
        series = self._of(record.name)
        with series.lock:
            series.failed += 1
            series.run.observe(seconds)

    def job_dead(self, name: str) -> None:
        series = self._of(name)
        with series.lock:
            series.dead += 1

    def lease_lost(self, name: str) -> None:
        series = self._of(name)
        with series.lock:
            series.lost += 1

    # -- the Collector protocol of prometheus-client --------------------------------

    def describe(self) -> Iterator[Metric]:
        return self._families({})

    def collect(self) -> Iterator[Metric]:
        snapshot = {}
        for name, series in list(self._series.items()):
            with series.lock:
                snapshot[name] = _copy(series)
        return self._families(snapshot)

    @staticmethod
    def _families(snapshot: dict[str, _Series]) -> Iterator[Metric]:
        for attribute, metric, help_text in _COUNTERS:
            counter = CounterMetricFamily(metric, help_text, labels=LABELS)
            for name, series in snapshot.items():
                counter.add_metric([name], getattr(series, attribute))
            yield counter
        for attribute, metric, help_text in _HISTOGRAMS:
            histogram = HistogramMetricFamily(metric, help_text, labels=LABELS)
            for name, series in snapshot.items():
                observed: _Histogram = getattr(series, attribute)
                histogram.add_metric([name], observed.cumulative(), observed.total)
            yield histogram


def _copy(series: _Series) -> _Series:
    copy = _Series()
    for attribute, _, _ in _COUNTERS:
        setattr(copy, attribute, getattr(series, attribute))
    for attribute, _, _ in _HISTOGRAMS:
        source: _Histogram = getattr(series, attribute)
        target: _Histogram = getattr(copy, attribute)
        target.counts, target.total = list(source.counts), source.total
    return copy


_OBSERVER = PrometheusObserver()
# Registered once, when this module is first imported: every container of the
# process counts into it, and no second registration can clash.
REGISTRY.register(_OBSERVER)


def prometheus_observer() -> PrometheusObserver:
    """The one observer of this process: every worker and manager counts into it."""
    return _OBSERVER


# -- the store's gauges, read at scrape time ----------------------------------------------


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """The queue as the store saw it at one scrape; ``up`` False when it did not answer."""

    up: bool
    jobs: dict[JobState, int] | None = None
    workers_live: int | None = None
    oldest_due_age: float | None = None


async def read_store_snapshot(
    manager: JobManager, timeout: float = STORE_READ_TIMEOUT_SECONDS
) -> StoreSnapshot:
    """Counts per state, live workers and the oldest due job's age, within ``timeout``."""
    try:
        with anyio.fail_after(timeout):
            jobs = await manager.count()
            workers = len(await manager.workers())
            age = await _oldest_due_age(manager)
    except Exception as exc:
        # One line per scrape (seconds apart); the text may quote a connection string.
        text = _redactor(manager)(f"{type(exc).__name__}: {exc}").splitlines()
        logger.warning(
            "metrics: reading the store's gauges failed: %s", text[0] if text else "timed out"
        )
        return StoreSnapshot(up=False)
    return StoreSnapshot(up=True, jobs=jobs, workers_live=workers, oldest_due_age=age)


async def _oldest_due_age(manager: JobManager) -> float | None:
    """Seconds the pending job due first has been due (0 when none is overdue);
    None when the manager offers no operator store to ask."""
    store = operator_store(manager)
    if store is None:
        return None
    oldest = await store.oldest_due_at()
    if oldest is None:
        return 0.0
    return max((await store.now() - oldest).total_seconds(), 0.0)


def _redactor(manager: JobManager) -> Callable[[str], str]:
    options = getattr(manager, "options", None)
    return options.redact_error if isinstance(options, BackgroundJobOptions) else redact


class _Exposition:
    """The default registry's metrics followed by one scrape's store gauges."""

    def __init__(self, snapshot: StoreSnapshot) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from _snapshot_metrics(self._snapshot)


def _snapshot_metrics(snapshot: StoreSnapshot) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "masa_jobs_store_up", "1 when the store answered this scrape, else 0.", int(snapshot.up)
    )
    if snapshot.jobs is not None:
        jobs = GaugeMetricFamily(
            "masa_jobs_jobs", "Jobs in each state, as the store counts them.", labels=["state"]
        )
        for state in JobState:
            jobs.add_metric([state.value], snapshot.jobs.get(state, 0))
        yield jobs
    if snapshot.workers_live is not None:
        yield GaugeMetricFamily(
            "masa_jobs_workers_live",
            "Workers whose heartbeat is recent (within one lease timeout).",
            snapshot.workers_live,
        )
    if snapshot.oldest_due_age is not None:
        yield GaugeMetricFamily(
            "masa_jobs_oldest_due_age_seconds",
            "Seconds the pending job due first has waited past its due time.",
            snapshot.oldest_due_age,
        )


async def render_metrics(manager: JobManager) -> tuple[bytes, str]:
    """The body and content type of a ``/metrics`` answer: this process's
    counters and histograms, and the store's gauges read now."""
    snapshot = await read_store_snapshot(manager)
    return generate_latest(_Exposition(snapshot)), CONTENT_TYPE
