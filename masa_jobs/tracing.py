"""OpenTelemetry spans for enqueues and runs, the run continuing the enqueuer's trace.

``enqueue`` and ``enqueue_many`` open a PRODUCER span, ``enqueue <job name>``,
and store its context in the job's headers as W3C ``traceparent`` (and
``tracestate``), with the globally configured propagator. Each run of the
job opens a CONSUMER span, ``run <job name>``, whose parent is read back from
those headers: the run of a job enqueued during a web request is part of
that request's trace, whichever process or machine runs it. Both spans carry
``masa_jobs.job.id``, ``masa_jobs.job.name`` and ``masa_jobs.job.attempt``;
a handler's exception is recorded on the run's span, whose status is ERROR
when the attempt failed.

Only the API (``opentelemetry-api``, the ``tracing`` extra) is used: the
application configures an SDK and exporter. Without the package nothing here
runs (``AVAILABLE`` is False and no caller asks for a span); with it but no
tracer provider configured, an enqueue or a run costs one look at the global
provider (``current_tracer``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace

from .records import JobOutcome, JobRecord, JobState, decode_headers, encode_headers

__all__ = [
    "ATTEMPT_ATTRIBUTE",
    "AVAILABLE",
    "ID_ATTRIBUTE",
    "NAME_ATTRIBUTE",
    "RunSpan",
    "current_tracer",
    "enqueue_span",
    "record_exception",
    "run_span",
]

try:
    from opentelemetry import propagate, trace
    from opentelemetry.context import Context
    from opentelemetry.trace import ProxyTracerProvider, SpanKind, Status, StatusCode
except ImportError:  # the `tracing` extra is not installed
    AVAILABLE = False
else:
    AVAILABLE = True

ID_ATTRIBUTE = "masa_jobs.job.id"
NAME_ATTRIBUTE = "masa_jobs.job.name"
ATTEMPT_ATTRIBUTE = "masa_jobs.job.attempt"
# How many jobs one enqueue_many span stored (they share its context).
COUNT_ATTRIBUTE = "masa_jobs.job.count"
# How the run ended: succeeded, scheduled (a retry, or put back) or dead.
OUTCOME_ATTRIBUTE = "masa_jobs.job.outcome"
# The instrumentation scope the spans are reported under.
TRACER_NAME = "masa_jobs"

# While no provider is set, get_tracer_provider() looks the environment up on
# every call (about a microsecond, on every enqueue and run). The global it
# reads answers that case at once, when it exists and no provider is to be
# loaded from the environment; otherwise the public call decides.
_UNSET_IS_VISIBLE = (
    AVAILABLE
    and hasattr(trace, "_TRACER_PROVIDER")
    and "OTEL_PYTHON_TRACER_PROVIDER" not in os.environ
)
# The provider the cached tracer came from, and that tracer: one tracer per
# provider (tests, and apps that configure tracing late, change it).
_cached: list[tuple[trace.TracerProvider, trace.Tracer]] = []


def current_tracer() -> trace.Tracer | None:
    """The tracer of the configured provider; None while none is configured."""
    if _UNSET_IS_VISIBLE and trace._TRACER_PROVIDER is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, ProxyTracerProvider):
        return None
    if _cached and _cached[0][0] is provider:
        return _cached[0][1]
    tracer = provider.get_tracer(TRACER_NAME)
    _cached[:] = [(provider, tracer)]
    return tracer


@contextmanager
def enqueue_span(
    tracer: trace.Tracer, records: Sequence[JobRecord]
) -> Iterator[Sequence[JobRecord]]:
    """A PRODUCER span around storing ``records`` (at least one); yields them
    with its context in their headers."""
    with tracer.start_as_current_span(
        _enqueue_name(records), kind=SpanKind.PRODUCER, attributes=_enqueue_attributes(records)
    ):
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield [_with_headers(record, carrier) for record in records]


class RunSpan:
    """The span of one run, for the executor to say how the run ended."""

    __slots__ = ("_attempt", "_span")

    def __init__(self, span: trace.Span, attempt: int) -> None:
        self._span = span
        self._attempt = attempt

    def finish(self, outcome: JobOutcome) -> None:
        """Mark the span with the outcome; ERROR when the attempt failed (a job
        only put back for a worker with its handler did not fail)."""
        self._span.set_attribute(OUTCOME_ATTRIBUTE, outcome.state.value)
        failed = outcome.state is JobState.DEAD or (
            outcome.state is JobState.SCHEDULED and outcome.attempts >= self._attempt
        )
        if failed:
            self._span.set_status(Status(StatusCode.ERROR, _first_line(outcome.last_error)))


@contextmanager
def run_span(tracer: trace.Tracer, record: JobRecord) -> Iterator[RunSpan]:
    """A CONSUMER span around one run of ``record``, child of the span that
    enqueued it (read from its headers)."""
    # Extracted into an empty context: without stored headers the run starts
    # a trace of its own instead of joining whatever the worker's task carries.
    parent = propagate.extract(decode_headers(record.headers) or {}, context=Context())
    with tracer.start_as_current_span(
        f"run {record.name}",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            ID_ATTRIBUTE: record.id,
            NAME_ATTRIBUTE: record.name,
            ATTEMPT_ATTRIBUTE: record.attempts,
        },
    ) as span:
        yield RunSpan(span, record.attempts)


def record_exception(exc: BaseException) -> None:
    """Record a handler's exception on the current span (the run's), if it records."""
    if not AVAILABLE:
        return
    span = trace.get_current_span()
    if span.is_recording():
        span.record_exception(exc)


def _enqueue_name(records: Sequence[JobRecord]) -> str:
    name = records[0].name
    if all(record.name == name for record in records):
        return f"enqueue {name}"
    return "enqueue many"


def _enqueue_attributes(records: Sequence[JobRecord]) -> dict[str, str | int]:
    first = records[0]
    if len(records) == 1:
        return {ID_ATTRIBUTE: first.id, NAME_ATTRIBUTE: first.name, ATTEMPT_ATTRIBUTE: 0}
    attributes: dict[str, str | int] = {COUNT_ATTRIBUTE: len(records)}
    if all(record.name == first.name for record in records):
        attributes[NAME_ATTRIBUTE] = first.name
    return attributes


def _with_headers(record: JobRecord, carrier: dict[str, str]) -> JobRecord:
    if not carrier:
        return record
    headers = {**(decode_headers(record.headers) or {}), **carrier}
    return replace(record, headers=encode_headers(headers))


def _first_line(text: str | None) -> str:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()
    return "failed"
