"""BackgroundJobOptions: MASA's defaults and rules, plus what masa-jobs adds."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from masa_jobs import BackgroundJobOptions
from masa_jobs._redact import redact

DEFAULTS: dict[str, Any] = {
    "poll_interval": 5,
    "batch_size": 30,
    "max_retry_times": 10,
    "first_wait_duration": 60,
    "wait_duration": 2,
    "disable_background_job": False,
    "concurrency": 10,
    "prefetch": None,
    "lease_timeout": 30,
    "shutdown_timeout": 10,
    "max_payload_bytes": 1024 * 1024,
    "retention": 7 * 24 * 3600,
    "missed_ticks": "coalesce",
    "misfire_grace": 60.0,
    "unknown_job_timeout": 24 * 3600,
    "job_timeout": None,
    "max_error_length": 16 * 1024,
    "metrics": True,
    "tracing": True,
    "health_max_due_age": 300.0,
    "queues": ("default",),
    "log_format": "text",
    "job_packages": (),
    "redact_error": redact,
}


@pytest.mark.parametrize(("field", "expected"), DEFAULTS.items())
def test_default(field: str, expected: Any) -> None:
    assert getattr(BackgroundJobOptions(), field) == expected


def test_every_field_has_a_pinned_default() -> None:
    assert set(BackgroundJobOptions.model_fields) == set(DEFAULTS)


# Each rule: the field, the smallest valid value, and the largest invalid one.
RULES = [
    ("poll_interval", 0.001, 0),
    ("batch_size", 1, 0),
    ("max_retry_times", 0, -1),
    ("first_wait_duration", 0.001, 0),
    ("wait_duration", 0.001, 0),
    ("concurrency", 1, 0),
    ("prefetch", 0, -1),
    ("lease_timeout", 0.001, 0),
    ("shutdown_timeout", 0, -0.001),
    ("max_payload_bytes", 1, 0),
    ("retention", 0.001, 0),
    ("misfire_grace", 0.001, 0),
    ("health_max_due_age", 0.001, 0),
]


@pytest.mark.parametrize(("field", "valid", "invalid"), RULES)
def test_validation_rule(field: str, valid: float, invalid: float) -> None:
    assert getattr(BackgroundJobOptions(**{field: valid}), field) == valid

    with pytest.raises(ValidationError, match=field):
        BackgroundJobOptions(**{field: invalid})


@pytest.mark.parametrize("value", ["coalesce", "skip"])
def test_missed_ticks_values(value: str) -> None:
    assert BackgroundJobOptions(missed_ticks=value).missed_ticks == value


@pytest.mark.parametrize("value", ["run-all", "Skip", "", None, 1])
def test_missed_ticks_is_coalesce_or_skip(value: Any) -> None:
    with pytest.raises(ValidationError, match=r"missed_ticks[\s\S]*'coalesce' or 'skip'"):
        BackgroundJobOptions(missed_ticks=value)


@pytest.mark.parametrize("field", ["poll_interval", "batch_size", "concurrency"])
def test_negative_values_are_refused(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        BackgroundJobOptions(**{field: -5})


@pytest.mark.parametrize(
    "field",
    [
        "poll_interval",
        "first_wait_duration",
        "wait_duration",
        "lease_timeout",
        "retention",
        "misfire_grace",
    ],
)
def test_durations_accept_fractions_of_seconds(field: str) -> None:
    assert getattr(BackgroundJobOptions(**{field: 0.25}), field) == 0.25


@pytest.mark.parametrize(
    "field", ["batch_size", "max_retry_times", "concurrency", "max_payload_bytes"]
)
def test_counts_refuse_fractions(field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        BackgroundJobOptions(**{field: 2.5})


def test_validation_error_names_every_bad_field() -> None:
    with pytest.raises(ValidationError) as caught:
        BackgroundJobOptions(batch_size=0, poll_interval=-1)

    fields = {error["loc"][0] for error in caught.value.errors()}
    assert fields == {"batch_size", "poll_interval"}


def test_unknown_keys_are_refused() -> None:
    with pytest.raises(ValidationError, match="batchsize"):
        BackgroundJobOptions.model_validate({"batchsize": 50})


def test_options_are_frozen() -> None:
    options = BackgroundJobOptions()

    with pytest.raises(ValidationError, match="frozen"):
        options.batch_size = 5  # type: ignore[misc]

    assert options.batch_size == 30


def test_environment_style_strings_are_coerced() -> None:
    options = BackgroundJobOptions.from_config(
        {
            "batch_size": "50",
            "poll_interval": "0.5",
            "max_retry_times": "0",
            "disable_background_job": "false",
            "job_packages": "pkg.a, pkg.b,,",
        }
    )

    assert options.batch_size == 50
    assert options.poll_interval == 0.5
    assert options.max_retry_times == 0
    assert options.disable_background_job is False
    assert options.job_packages == ("pkg.a", "pkg.b")
    assert BackgroundJobOptions.from_config(
        {"disable_background_job": "true"}
    ).disable_background_job


def test_job_packages_accept_a_list() -> None:
    assert BackgroundJobOptions(job_packages=["pkg.a", "pkg.b"]).job_packages == ("pkg.a", "pkg.b")


@pytest.mark.parametrize("raw", ["many", "1e400x", ""])
def test_strings_that_are_not_numbers_are_refused(raw: str) -> None:
    with pytest.raises(ValidationError, match="batch_size"):
        BackgroundJobOptions.from_config({"batch_size": raw})


@pytest.mark.parametrize("values", [None, {}])
def test_from_config_of_nothing_is_the_defaults(values: dict[str, Any] | None) -> None:
    assert BackgroundJobOptions.from_config(values) == BackgroundJobOptions()


def test_schedule_options_from_environment_style_strings() -> None:
    options = BackgroundJobOptions.from_config({"missed_ticks": "skip", "misfire_grace": "2.5"})

    assert (options.missed_ticks, options.misfire_grace) == ("skip", 2.5)


@pytest.mark.parametrize("value", ["text", "json"])
def test_log_format_values(value: str) -> None:
    assert BackgroundJobOptions(log_format=value).log_format == value


@pytest.mark.parametrize("value", ["JSON", "logfmt", "", None])
def test_log_format_is_text_or_json(value: Any) -> None:
    with pytest.raises(ValidationError, match=r"log_format[\s\S]*'text' or 'json'"):
        BackgroundJobOptions(log_format=value)


def test_observability_switches_from_environment_style_strings() -> None:
    options = BackgroundJobOptions.from_config(
        {"metrics": "false", "tracing": "0", "health_max_due_age": "90", "log_format": "json"}
    )

    assert (options.metrics, options.tracing) == (False, False)
    assert (options.health_max_due_age, options.log_format) == (90.0, "json")
