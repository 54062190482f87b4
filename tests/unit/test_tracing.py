"""OpenTelemetry spans: the run of a job continues the trace that enqueued it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from masa_jobs.containers import BackgroundJobContainer
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util._once import Once

from masa_jobs import (
    BackgroundJobManager,
    DefaultJobManager,
    JobRegistry,
    JobState,
    MasaApp,
    MemoryJobStore,
    Worker,
    get_job_name,
)
from masa_jobs._observe import observers_for
from masa_jobs.records import decode_headers

from .support import ALL_HANDLERS, Doomed, Greet, fast_options, running, wait_for_record

pytestmark = pytest.mark.anyio

GREET = get_job_name(Greet)
DOOMED = get_job_name(Doomed)


def _reset_global_provider() -> None:
    # The API lets a process set its provider once; tests put it back as it was.
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """A configured SDK whose finished spans the test reads."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    _reset_global_provider()
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        _reset_global_provider()
        provider.shutdown()


@pytest.fixture
def store() -> MemoryJobStore:
    return MemoryJobStore()


def options(**overrides: Any) -> Any:
    return fast_options(**{"metrics": False, "tracing": True, **overrides})


def make_manager(store: MemoryJobStore, **overrides: Any) -> DefaultJobManager:
    return DefaultJobManager(store, JobRegistry(ALL_HANDLERS), options(**overrides))


def make_worker(store: MemoryJobStore, **overrides: Any) -> Worker:
    return Worker(store, JobRegistry(ALL_HANDLERS), options(**overrides), worker_id="tracer")


def spans_named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def only(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, spans
    return spans[0]


async def test_the_run_continues_the_trace_of_the_enqueue(
    store: MemoryJobStore, exporter: InMemorySpanExporter
) -> None:
    manager = make_manager(store)

    async with running(make_worker(store)):
        job_id = await manager.enqueue(Greet(key="a"))
        await wait_for_record(store, job_id, lambda r: r.state is JobState.SUCCEEDED)

    enqueue = only(spans_named(exporter, f"enqueue {GREET}"))
    run = only(spans_named(exporter, f"run {GREET}"))
    assert enqueue.kind is SpanKind.PRODUCER
    assert run.kind is SpanKind.CONSUMER
    assert enqueue.context is not None
    assert run.context is not None
    assert run.context.trace_id == enqueue.context.trace_id
    assert run.parent is not None
    assert run.parent.span_id == enqueue.context.span_id
    assert dict(enqueue.attributes or {}) == {
        "masa_jobs.job.id": job_id,
        "masa_jobs.job.name": GREET,
        "masa_jobs.job.attempt": 0,
    }
    assert dict(run.attributes or {}) == {
        "masa_jobs.job.id": job_id,
        "masa_jobs.job.name": GREET,
        "masa_jobs.job.attempt": 1,
        "masa_jobs.job.outcome": "succeeded",
    }
    assert run.status.status_code is StatusCode.UNSET


async def test_the_stored_headers_carry_the_w3c_trace_context(
    store: MemoryJobStore, exporter: InMemorySpanExporter
) -> None:
    job_id = await make_manager(store).enqueue(Greet(key="a"), delay=60)

    record = await store.get(job_id)
    assert record is not None
    headers = decode_headers(record.headers)
    assert headers is not None
    enqueue = only(spans_named(exporter, f"enqueue {GREET}"))
    assert enqueue.context is not None
    version, trace_id, span_id, flags = headers["traceparent"].split("-")
    assert version == "00"
    assert int(flags, 16) & 1  # sampled
    assert int(trace_id, 16) == enqueue.context.trace_id
    assert int(span_id, 16) == enqueue.context.span_id


async def test_an_enqueue_inside_a_request_joins_the_request_trace(
    store: MemoryJobStore, exporter: InMemorySpanExporter
) -> None:
    manager = make_manager(store)
    tracer = trace.get_tracer("web")

    async with running(make_worker(store)):
        with tracer.start_as_current_span("POST /users") as request:
            job_id = await manager.enqueue(Greet(key="a"))
        await wait_for_record(store, job_id, lambda r: r.state is JobState.SUCCEEDED)

    trace_id = request.get_span_context().trace_id
    enqueue = only(spans_named(exporter, f"enqueue {GREET}"))
    run = only(spans_named(exporter, f"run {GREET}"))
    assert enqueue.parent is not None
    assert enqueue.parent.span_id == request.get_span_context().span_id
    assert run.context is not None
    assert run.context.trace_id == trace_id


def test_enqueue_sync_inside_a_request_joins_the_request_trace(
    exporter: InMemorySpanExporter, tmp_path: Path
) -> None:
    # The sync API enqueues on an event loop in another thread: the request's
    # span, a context variable of the calling thread, must travel with the call.
    container = BackgroundJobContainer()
    container.config.from_dict(
        {
            "store": {"backend": "sqlite", "path": str(tmp_path / "jobs.db")},
            "options": {"tracing": True, "metrics": False, "disable_background_job": True},
        }
    )
    MasaApp.build(container)
    tracer = trace.get_tracer("web")

    with tracer.start_as_current_span("POST /users") as request:
        job_id = BackgroundJobManager.enqueue_sync(Greet(key="a"))

    enqueue = only(spans_named(exporter, f"enqueue {GREET}"))
    assert enqueue.parent is not None
    assert enqueue.parent.span_id == request.get_span_context().span_id
    stored = BackgroundJobManager.get_sync(job_id)
    assert stored is not None
    assert stored.headers is not None
    assert format(request.get_span_context().trace_id, "032x") in stored.headers["traceparent"]


async def test_a_failed_attempt_records_the_exception_and_an_error_status(
    store: MemoryJobStore, exporter: InMemorySpanExporter
) -> None:
    manager = make_manager(store)

    async with running(make_worker(store, max_retry_times=1)):
        job_id = await manager.enqueue(Doomed(key="x"))
        await wait_for_record(store, job_id, lambda r: r.state is JobState.DEAD)

    runs = spans_named(exporter, f"run {DOOMED}")
    assert [dict(span.attributes or {})["masa_jobs.job.attempt"] for span in runs] == [1, 2]
    assert [dict(span.attributes or {})["masa_jobs.job.outcome"] for span in runs] == [
        "scheduled",
        "dead",
    ]
    for span in runs:
        assert span.status.status_code is StatusCode.ERROR
        assert "failed" in (span.status.description or "")
        [event] = span.events
        assert event.name == "exception"
        assert dict(event.attributes or {})["exception.message"] == "doomed x"
    # Both attempts continue the enqueue's trace.
    enqueue = only(spans_named(exporter, f"enqueue {DOOMED}"))
    assert enqueue.context is not None
    assert {span.context.trace_id for span in runs if span.context} == {enqueue.context.trace_id}


async def test_enqueue_many_is_one_span_whose_context_every_job_carries(
    store: MemoryJobStore, exporter: InMemorySpanExporter
) -> None:
    job_ids = await make_manager(store).enqueue_many(
        [(Greet(key="a"), 60), (Greet(key="b"), 60), (Doomed(key="c"), 60)]
    )

    span = only(spans_named(exporter, "enqueue many"))
    assert dict(span.attributes or {}) == {"masa_jobs.job.count": 3}
    parents = set()
    for job_id in job_ids:
        record = await store.get(job_id)
        assert record is not None
        parents.add((decode_headers(record.headers) or {}).get("traceparent"))
    assert len(parents) == 1
    assert None not in parents


async def test_enqueue_many_of_one_name_is_named_after_it(
    store: MemoryJobStore, exporter: InMemorySpanExporter
) -> None:
    await make_manager(store).enqueue_many([(Greet(key="a"), 60), (Greet(key="b"), 60)])

    span = only(spans_named(exporter, f"enqueue {GREET}"))
    assert dict(span.attributes or {}) == {"masa_jobs.job.count": 2, "masa_jobs.job.name": GREET}


async def test_a_job_without_stored_context_starts_its_own_trace(
    store: MemoryJobStore, exporter: InMemorySpanExporter
) -> None:
    # Enqueued by a process that did not trace.
    job_id = await make_manager(store, tracing=False).enqueue(Greet(key="a"))

    async with running(make_worker(store)):
        await wait_for_record(store, job_id, lambda r: r.state is JobState.SUCCEEDED)

    run = only(spans_named(exporter, f"run {GREET}"))
    assert run.parent is None
    assert not spans_named(exporter, f"enqueue {GREET}")


async def test_tracing_off_makes_no_spans_and_stores_no_headers(
    store: MemoryJobStore, exporter: InMemorySpanExporter
) -> None:
    manager = make_manager(store, tracing=False)

    async with running(make_worker(store, tracing=False)):
        job_id = await manager.enqueue(Greet(key="a"))
        record = await wait_for_record(store, job_id, lambda r: r.state is JobState.SUCCEEDED)

    assert record.headers is None
    assert exporter.get_finished_spans() == ()


async def test_without_a_tracer_provider_nothing_is_traced(store: MemoryJobStore) -> None:
    _reset_global_provider()
    manager = make_manager(store)

    async with running(make_worker(store)):
        job_id = await manager.enqueue(Greet(key="a"))
        record = await wait_for_record(store, job_id, lambda r: r.state is JobState.SUCCEEDED)

    assert record.headers is None


def test_without_opentelemetry_there_is_nothing_to_trace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("masa_jobs.tracing.AVAILABLE", False)

    assert observers_for(options()) is None
