"""Log lines as JSON objects, one a line, with the job they were logged in.

``JsonFormatter`` writes each record as one JSON object: ``time`` (UTC, ISO
8601), ``level``, ``logger``, ``message``; inside a running job also
``job_id``, ``job_name``, ``attempt`` and ``worker`` (from ``current_job()``);
``exc_info`` (the formatted traceback) when an exception is logged; and the
record's ``extra=`` fields. Log collectors (Loki, Elasticsearch, Cloud
Logging) index the fields as they are; a traceback stays in one line.

``configure_logging("json")`` installs it on the root logger; ``masa-jobs
worker`` does so for ``--log-format json`` or ``options.log_format``. In an
application that configures its own logging, give its handler the
formatter: ``handler.setFormatter(JsonFormatter())``.

The job is read when the record is formatted, in the thread that logs: with
a ``QueueHandler`` (formatting in another thread) the job fields are absent.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

from .context import current_job
from .exceptions import MasaJobsError

__all__ = ["TEXT_FORMAT", "JsonFormatter", "LogFormat", "configure_logging"]

LogFormat = Literal["text", "json"]

# The text format of `masa-jobs worker`'s log.
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# What every LogRecord has: the rest of its attributes came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(
    logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
) | {"message", "asctime", "taskName"}


class JsonFormatter(logging.Formatter):
    """Formats a record as one line of JSON; see the module docstring for the fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": _iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(_job_fields())
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_") and key not in line:
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc_info"] = record.exc_text
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        # default=str: an extra field JSON cannot carry is written as its text.
        return json.dumps(line, ensure_ascii=False, default=str)


def _job_fields() -> dict[str, Any]:
    try:
        job = current_job()
    except MasaJobsError:
        return {}
    return {
        "job_id": job.id,
        "job_name": job.name,
        "attempt": job.attempt,
        "worker": job.worker_id,
    }


def _iso_time(created: float) -> str:
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def configure_logging(
    log_format: LogFormat = "json",
    *,
    level: int | str = logging.INFO,
    stream: TextIO | None = None,
) -> logging.Handler:
    """Send the root logger's records to ``stream`` (stderr by default) as JSON
    lines or text lines, replacing its handlers; returns the new handler."""
    if log_format not in ("text", "json"):
        raise ValueError(f"log_format must be 'text' or 'json', not {log_format!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    formatter = JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler
