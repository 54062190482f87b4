"""``BackgroundJobOptions``: MASA's options, same defaults and rules, Python names.

Durations are seconds and accept fractions. Unknown keys are refused so that
a misspelt setting is an error instead of a silently ignored default.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._job_control import QueuePlan, parse_queues
from ._redact import GuardedRedactor, import_redactor, redact

__all__ = ["BackgroundJobOptions"]

from .records import DEFAULT_QUEUE

# One MiB: large enough for any sane args object, small enough that a
# mistaken enqueue of a whole file is caught before it reaches the store.
DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
# A week: long enough to look at last week's failures, short enough that the
# memory store and tables do not grow without bound.
DEFAULT_RETENTION_SECONDS = 7 * 24 * 3600.0
# A day: a rolling deploy takes minutes; a job no worker has learnt to run
# after a day is a mistake someone must see, not a deploy in progress.
DEFAULT_UNKNOWN_JOB_TIMEOUT_SECONDS = 24 * 3600.0
# 16 KiB of error text: the exception and the useful ends of its traceback,
# small enough that a runaway message cannot bloat the store or be refused.
DEFAULT_MAX_ERROR_LENGTH = 16 * 1024
# Passwords out of URLs, DSNs and key=value secrets: see docs/security.md.
# An import path, so that configuration files and environment variables can
# name another one the same way.
DEFAULT_REDACT_ERROR = "masa_jobs:redact"
# Five minutes: a burst that the workers absorb drains well within it, while a
# queue that nobody drains (no worker claims, or every slot hangs) shows within
# one alerting window; raise it where a backlog of hours is normal.
DEFAULT_HEALTH_MAX_DUE_AGE_SECONDS = 300.0


class BackgroundJobOptions(BaseModel):
    """Settings of the job manager, the worker and the retry policy."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    poll_interval: float = Field(
        default=5.0,
        gt=0,
        description="Seconds between polls when the store cannot signal new jobs.",
    )
    batch_size: int = Field(default=30, gt=0, description="Jobs claimed from the store at once.")
    max_retry_times: int = Field(
        default=10, ge=0, description="Retries after the first attempt before a job is dead."
    )
    first_wait_duration: float = Field(
        default=60.0, gt=0, description="Seconds before the first retry."
    )
    wait_duration: float = Field(
        default=2.0, gt=0, description="Factor applied to the wait before each further retry."
    )
    disable_background_job: bool = Field(
        default=False, description="Enqueue only: run no worker in this process."
    )
    concurrency: int = Field(default=10, gt=0, description="Jobs one worker runs at once.")
    prefetch: int | None = Field(
        default=None,
        ge=0,
        description=(
            "Jobs claimed ahead of free slots (default: automatic, as many as "
            "concurrency, or two batches once runs average under 10 ms); more helps many "
            "tiny jobs, fewer spreads long jobs across workers."
        ),
    )
    lease_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a claimed job stays reserved without renewal."
    )
    shutdown_timeout: float = Field(
        default=10.0, ge=0, description="Seconds a stopping worker waits for running jobs."
    )
    max_payload_bytes: int = Field(
        default=DEFAULT_MAX_PAYLOAD_BYTES, gt=0, description="Largest serialised args accepted."
    )
    retention: float = Field(
        default=DEFAULT_RETENTION_SECONDS,
        gt=0,
        description="Seconds succeeded, dead and cancelled jobs are kept.",
    )
    missed_ticks: Literal["coalesce", "skip"] = Field(
        default="coalesce",
        description="Ticks missed while no worker ran: one catch-up run, or none.",
    )
    misfire_grace: float = Field(
        default=60.0,
        gt=0,
        description="Seconds a tick may be late and still fire as itself.",
    )
    unknown_job_timeout: float = Field(
        default=DEFAULT_UNKNOWN_JOB_TIMEOUT_SECONDS,
        gt=0,
        description=(
            "Seconds a job whose name no worker has a handler for waits (a rolling "
            "deploy) before it is dead."
        ),
    )
    job_timeout: float | None = Field(
        default=None,
        gt=0,
        description=(
            "Seconds a job may run before it is cancelled and retried (None: no limit); "
            "@job_options(timeout=...) and enqueue(..., timeout=...) override it."
        ),
    )
    max_error_length: int = Field(
        default=DEFAULT_MAX_ERROR_LENGTH,
        ge=256,
        description="Characters of last_error kept: the head and the tail of a long traceback.",
    )
    metrics: bool = Field(
        default=True,
        description=(
            "Count jobs in Prometheus metrics when prometheus-client is installed "
            "(the `metrics` extra)."
        ),
    )
    tracing: bool = Field(
        default=True,
        description=(
            "Trace enqueues and runs with OpenTelemetry when opentelemetry-api is installed "
            "(the `tracing` extra) and a tracer provider is configured."
        ),
    )
    health_max_due_age: float = Field(
        default=DEFAULT_HEALTH_MAX_DUE_AGE_SECONDS,
        gt=0,
        description="Seconds the oldest due job may wait before the health check fails.",
    )
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="How `masa-jobs worker` writes its log: text lines or one JSON object a line.",
    )
    queues: tuple[str, ...] = Field(
        default=(DEFAULT_QUEUE,),
        description=(
            "Queues the worker serves, in the order it claims from them; 'name:N' holds "
            "at most N jobs of that queue at once; '*' serves every queue."
        ),
    )
    job_packages: tuple[str, ...] = Field(
        default=(), description="Packages imported at start-up to find job handlers."
    )
    redact_error: Callable[[str], str] = Field(
        default=DEFAULT_REDACT_ERROR,
        validate_default=True,
        # A function: nothing to show in a dump or a JSON schema.
        exclude=True,
        description=(
            "Applied to every error text before it is stored as last_error or logged: "
            "a function str -> str, or its import path 'package.module:function'."
        ),
    )

    @field_validator("job_packages", "queues", mode="before")
    @classmethod
    def _split_list(cls, value: Any) -> Any:
        # Environment variables and the CLI carry lists as "a,b".
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("queues")
    @classmethod
    def _check_queues(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        parse_queues(value)
        return value

    @property
    def queue_plan(self) -> QueuePlan:
        """The ``queues`` option parsed: names in order, and each one's cap."""
        return parse_queues(self.queues)

    @field_validator("redact_error", mode="before")
    @classmethod
    def _import_redactor(cls, value: Any) -> Any:
        # Configuration files and environment variables name the function.
        if isinstance(value, str):
            return import_redactor(value.strip())
        return value

    @field_validator("redact_error")
    @classmethod
    def _guard_redactor(cls, value: Callable[[str], str]) -> Callable[[str], str]:
        # An application's function must not stop a worker if it raises.
        if value is redact or isinstance(value, GuardedRedactor):
            return value
        return GuardedRedactor(value)

    @classmethod
    def from_config(cls, values: Mapping[str, Any] | None) -> BackgroundJobOptions:
        """Build from the ``options`` section of the container's configuration."""
        return cls.model_validate(dict(values or {}))
