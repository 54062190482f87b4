"""Hooks on the life of jobs, for metrics and traces, free when nothing watches.

The manager, the executor and the worker each hold an ``Observers`` built
from the options, or ``None`` when nothing watches (``metrics`` off or
prometheus-client missing, and ``tracing`` off or opentelemetry-api
missing): an unwatched enqueue or run then pays one ``is None`` test.

A ``JobObserver`` receives plain events (jobs enqueued, a run started with
its queue latency, an attempt that succeeded or failed with its run time, a
job gone dead, a lease lost); enqueues and runs are wrapped in spans
(``masa_jobs.tracing``) while a tracer provider is configured.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .records import JobOutcome, JobRecord, JobState

if TYPE_CHECKING:
    from opentelemetry.trace import Tracer

    from .options import BackgroundJobOptions

__all__ = ["JobObserver", "Observers", "observers_for"]


class JobObserver:
    """Receives the events of jobs; every hook does nothing here: override the ones needed.

    Hooks run on the event loop, inside the enqueue or the run: they must be
    quick and must not raise.
    """

    def jobs_enqueued(self, records: Sequence[JobRecord]) -> None:
        """Jobs were stored by ``enqueue`` or ``enqueue_many``."""

    def job_started(self, record: JobRecord, queue_latency: float) -> None:
        """A claimed job starts running, ``queue_latency`` seconds after it was due."""

    def job_succeeded(self, record: JobRecord, seconds: float) -> None:
        """An attempt ended with every handler done, after ``seconds``."""

    def job_failed(self, record: JobRecord, seconds: float) -> None:
        """An attempt failed after ``seconds`` (retried later or not)."""

    def job_dead(self, name: str) -> None:
        """A job of ``name`` is dead: no retry is left, or no retry can help."""

    def lease_lost(self, name: str) -> None:
        """A worker lost the lease of a job of ``name`` it held."""


class Observers:
    """The observers of one manager or worker, and the tracing of enqueues and runs.

    Its methods are plain calls, no generator context managers: this is on
    the path of every job, and the hooks are measured by ``masa-jobs bench``.
    """

    __slots__ = ("_hooks", "_tracer_of")

    def __init__(
        self,
        hooks: Sequence[JobObserver],
        *,
        tracer_of: Callable[[], Tracer | None] | None = None,
    ) -> None:
        self._hooks = tuple(hooks)
        # masa_jobs.tracing.current_tracer when tracing is on; it answers None
        # while no tracer provider is configured.
        self._tracer_of = tracer_of

    @property
    def hooks(self) -> tuple[JobObserver, ...]:
        return self._hooks

    def tracer(self) -> Tracer | None:
        """The tracer for one enqueue or run; None when runs are not traced now."""
        return None if self._tracer_of is None else self._tracer_of()

    def jobs_enqueued(self, records: Sequence[JobRecord]) -> None:
        for hook in self._hooks:
            hook.jobs_enqueued(records)

    def job_started(self, record: JobRecord) -> None:
        if self._hooks:
            latency = _queue_latency(record)
            for hook in self._hooks:
                hook.job_started(record, latency)

    def job_finished(self, record: JobRecord, outcome: JobOutcome, seconds: float) -> None:
        """After a run: an attempt succeeded or failed; a job only put back (no
        handler of its name here) is neither."""
        if not self._hooks:
            return
        if outcome.state is JobState.SUCCEEDED:
            for hook in self._hooks:
                hook.job_succeeded(record, seconds)
        elif outcome.state is JobState.DEAD or outcome.attempts >= record.attempts:
            for hook in self._hooks:
                hook.job_failed(record, seconds)

    def handler_failed(self, exc: BaseException) -> None:
        """A handler raised ``exc``: recorded on the run's span, if one records."""
        if self._tracer_of is not None:
            from .tracing import record_exception

            record_exception(exc)

    def job_dead(self, name: str) -> None:
        for hook in self._hooks:
            hook.job_dead(name)

    def lease_lost(self, name: str) -> None:
        for hook in self._hooks:
            hook.lease_lost(name)


def observers_for(options: BackgroundJobOptions) -> Observers | None:
    """What watches the jobs under ``options``; None when nothing does."""
    hooks: list[JobObserver] = []
    if options.metrics and metrics_installed():
        from .metrics import prometheus_observer

        hooks.append(prometheus_observer())
    tracer_of = None
    if options.tracing:
        from . import tracing

        if tracing.AVAILABLE:
            tracer_of = tracing.current_tracer
    if not hooks and tracer_of is None:
        return None
    return Observers(hooks, tracer_of=tracer_of)


def metrics_installed() -> bool:
    """Whether prometheus-client (the ``metrics`` extra) can be imported."""
    return importlib.util.find_spec("prometheus_client") is not None


def _queue_latency(record: JobRecord) -> float:
    """Seconds from when the job was due to its claim (both on the store's clock)."""
    if record.last_try_at is None:
        return 0.0
    return max((record.last_try_at - record.next_try_at).total_seconds(), 0.0)
