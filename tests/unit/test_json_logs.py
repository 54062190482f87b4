"""JSON log lines: one object a line, with the job a line was logged in."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel

from masa_jobs import (
    BackgroundJob,
    DefaultJobManager,
    JobRecord,
    JobRegistry,
    JobState,
    MemoryJobStore,
    Worker,
    current_job,
    job_name,
)
from masa_jobs.context import running as running_job
from masa_jobs.logs import TEXT_FORMAT, JsonFormatter, configure_logging
from masa_jobs.records import utcnow

from .support import fast_options, running, wait_for_record

pytestmark = pytest.mark.anyio

handler_logger = logging.getLogger("tests.json_logs.handler")


@job_name("json-logs.report")
class Report(BaseModel):
    fail: bool = False


class ReportJob(BackgroundJob[Report]):
    async def execute(self, args: Report) -> None:
        handler_logger.info("building report %s", current_job().id)
        if args.fail:
            raise ValueError("no data")


def format_line(record: logging.LogRecord) -> dict[str, Any]:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed: dict[str, Any] = json.loads(line)
    return parsed


def log_record(message: str = "hello %s", *args: object, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("app.mail", logging.WARNING, __file__, 1, message, args, None)
    record.__dict__.update(extra)
    return record


def test_a_line_has_time_level_logger_and_message() -> None:
    line = format_line(log_record("hello %s", "world"))

    assert line["level"] == "WARNING"
    assert line["logger"] == "app.mail"
    assert line["message"] == "hello world"
    assert line["time"].endswith("Z")
    assert datetime.fromisoformat(line["time"]).utcoffset() is not None
    assert "job_id" not in line
    assert "exc_info" not in line


def test_inside_a_job_the_line_names_the_job() -> None:
    now = utcnow()
    job = JobRecord(
        id="j42",
        name="mail.send",
        payload="{}",
        state=JobState.PROCESSING,
        created_at=now,
        next_try_at=now,
        attempts=3,
        lease_owner="host:1:abc",
    )

    with running_job(job):
        line = format_line(log_record())

    assert (line["job_id"], line["job_name"], line["attempt"], line["worker"]) == (
        "j42",
        "mail.send",
        3,
        "host:1:abc",
    )


def test_an_exception_is_one_text_field() -> None:
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        record = logging.LogRecord(
            "app", logging.ERROR, __file__, 1, "failed", None, exc_info=__import__("sys").exc_info()
        )

    line = format_line(record)

    assert line["message"] == "failed"
    assert line["exc_info"].startswith("Traceback (most recent call last)")
    assert "RuntimeError: boom\nsecond line" in line["exc_info"]


def test_extra_fields_are_kept_and_what_json_cannot_carry_is_text() -> None:
    line = format_line(log_record(order_id=7, when=datetime(2024, 1, 2), _private=1))

    assert line["order_id"] == 7
    assert line["when"] == "2024-01-02 00:00:00"
    assert "_private" not in line


@pytest.fixture
def root_logging() -> Iterator[None]:
    """Put the root logger's handlers and level back as they were."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers[:]:
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)


@pytest.mark.usefixtures("root_logging")
@pytest.mark.parametrize(("log_format", "formatter"), [("json", JsonFormatter)])
def test_configure_logging_installs_json_on_the_root_logger(
    log_format: Any, formatter: type[logging.Formatter]
) -> None:
    stream = io.StringIO()

    handler = configure_logging(log_format, level="debug", stream=stream)
    logging.getLogger("app").debug("configured")

    assert logging.getLogger().handlers == [handler]
    assert isinstance(handler.formatter, formatter)
    assert json.loads(stream.getvalue())["message"] == "configured"


@pytest.mark.usefixtures("root_logging")
def test_configure_logging_text() -> None:
    stream = io.StringIO()

    handler = configure_logging("text", level=logging.INFO, stream=stream)
    logging.getLogger("app").info("plain")

    assert handler.formatter is not None
    assert handler.formatter._fmt == TEXT_FORMAT
    assert stream.getvalue().rstrip().endswith("INFO    app: plain")


def test_configure_logging_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="'text' or 'json'"):
        configure_logging("xml")  # type: ignore[arg-type]


async def test_lines_logged_by_a_handler_and_the_worker_name_the_job() -> None:
    stream = io.StringIO()
    capture = logging.StreamHandler(stream)
    capture.setFormatter(JsonFormatter())
    watched = [handler_logger, logging.getLogger("masa_jobs.worker")]
    for logger in watched:
        logger.addHandler(capture)
    handler_logger.setLevel(logging.INFO)
    store = MemoryJobStore()
    registry = JobRegistry([ReportJob])
    options = fast_options(max_retry_times=0, metrics=False, tracing=False)
    manager = DefaultJobManager(store, registry, options)
    try:
        async with running(Worker(store, registry, options, worker_id="json-worker")):
            job_id = await manager.enqueue(Report(fail=True))
            await wait_for_record(store, job_id, lambda r: r.state is JobState.DEAD)
    finally:
        for logger in watched:
            logger.removeHandler(capture)
        handler_logger.setLevel(logging.NOTSET)

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    in_job = [line for line in lines if line.get("job_id") == job_id]
    messages = [line["message"] for line in in_job]
    assert f"building report {job_id}" in messages
    assert any("failed in" in message for message in messages)
    for line in in_job:
        assert (line["job_name"], line["attempt"], line["worker"]) == (
            "json-logs.report",
            1,
            "json-worker",
        )
