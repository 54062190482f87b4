"""Bad input gets a clear error naming the problem and the fix, and stores nothing."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from containers import BackgroundJobContainer
from masa_jobs import (
    BackgroundJobOptions,
    ConfigurationError,
    DefaultJobManager,
    EnqueueError,
    InvalidDelayError,
    InvalidJobArgsError,
    JobRegistry,
    MasaApp,
    MasaNotBuiltError,
    MemoryJobStore,
    PayloadTooLargeError,
    UnknownJobError,
)

from .support import ALL_HANDLERS, Greet

pytestmark = pytest.mark.anyio


class NotRegistered(BaseModel):
    key: str


@dataclass
class LooksLikeArgs:
    key: str


def make_manager(**options: Any) -> DefaultJobManager:
    return DefaultJobManager(
        MemoryJobStore(), JobRegistry(ALL_HANDLERS), BackgroundJobOptions(**options)
    )


async def assert_nothing_stored(manager: DefaultJobManager) -> None:
    assert sum((await manager.count()).values()) == 0
    assert await manager.list() == []


@pytest.mark.parametrize("args", [{"key": "a"}, LooksLikeArgs(key="a"), None, "a", 42], ids=type)
async def test_args_that_are_not_a_pydantic_model(args: object) -> None:
    manager = make_manager()

    with pytest.raises(InvalidJobArgsError) as caught:
        await manager.enqueue(args)  # type: ignore[arg-type]

    message = str(caught.value)
    assert "must be an instance of a pydantic model" in message
    assert f"got {type(args).__qualname__}" in message
    assert "class MyArgs(BaseModel)" in message
    assert isinstance(caught.value, TypeError)
    assert isinstance(caught.value, EnqueueError)
    await assert_nothing_stored(manager)


async def test_a_model_class_instead_of_an_instance() -> None:
    manager = make_manager()

    with pytest.raises(InvalidJobArgsError) as caught:
        await manager.enqueue(Greet)  # type: ignore[arg-type]

    assert str(caught.value) == ("enqueue got the class Greet, not an instance: pass Greet(...)")
    await assert_nothing_stored(manager)


async def test_an_unregistered_args_type() -> None:
    manager = make_manager()

    with pytest.raises(UnknownJobError) as caught:
        await manager.enqueue(NotRegistered(key="a"))

    message = str(caught.value)
    assert f"no handler is registered for {__name__}.NotRegistered" in message
    assert "BackgroundJob[NotRegistered]" in message
    assert "options.job_packages" in message
    await assert_nothing_stored(manager)


@pytest.mark.parametrize("key", ["x" * 200, "é" * 60, "🚀" * 30], ids=["ascii", "2-byte", "4-byte"])
async def test_a_payload_over_the_limit(key: str) -> None:
    manager = make_manager(max_payload_bytes=100)

    with pytest.raises(PayloadTooLargeError) as caught:
        await manager.enqueue(Greet(key=key))

    size = len(Greet(key=key).model_dump_json().encode())
    message = str(caught.value)
    assert f"are {size} bytes as JSON, over the 100-byte limit" in message
    assert "pass a reference" in message
    assert "max_payload_bytes" in message
    assert isinstance(caught.value, ValueError)
    await assert_nothing_stored(manager)


async def test_a_payload_at_the_limit_is_accepted() -> None:
    args = Greet(key="é" * 20)
    manager = make_manager(max_payload_bytes=len(args.model_dump_json().encode()))

    await manager.enqueue(args)

    assert sum((await manager.count()).values()) == 1


@pytest.mark.parametrize(
    "delay",
    [-1, -0.001, timedelta(seconds=-1), math.nan, math.inf, -math.inf, timedelta.min],
    ids=repr,
)
async def test_a_negative_or_not_finite_delay(delay: object) -> None:
    manager = make_manager()

    with pytest.raises(InvalidDelayError) as caught:
        await manager.enqueue(Greet(key="a"), delay=delay)  # type: ignore[arg-type]

    message = str(caught.value)
    assert "delay must be zero or more seconds" in message
    assert "pass None to run now" in message
    assert isinstance(caught.value, ValueError)
    await assert_nothing_stored(manager)


@pytest.mark.parametrize("delay", [timedelta.max, 1e12, 1e300], ids=repr)
async def test_a_delay_past_the_last_representable_date(delay: object) -> None:
    manager = make_manager()

    with pytest.raises(InvalidDelayError) as caught:
        await manager.enqueue(Greet(key="a"), delay=delay)  # type: ignore[arg-type]

    message = str(caught.value)
    assert "ends past the last date a timestamp can hold" in message
    assert "pass a shorter delay" in message
    await assert_nothing_stored(manager)


@pytest.mark.parametrize(
    "delay", ["5", b"5", True, [1], object()], ids=["str", "bytes", "bool", "list", "object"]
)
async def test_a_delay_of_the_wrong_type(delay: object) -> None:
    manager = make_manager()

    with pytest.raises(InvalidDelayError) as caught:
        await manager.enqueue(Greet(key="a"), delay=delay)  # type: ignore[arg-type]

    assert str(caught.value) == (
        f"delay must be a timedelta or a number of seconds, got {type(delay).__qualname__}"
    )
    await assert_nothing_stored(manager)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("poll_interval", 0),
        ("batch_size", -1),
        ("max_retry_times", -1),
        ("first_wait_duration", 0),
        ("wait_duration", -2),
        ("concurrency", 0),
        ("max_payload_bytes", 0),
        ("batch_size", "lots"),
        ("disable_background_job", "perhaps"),
    ],
)
def test_invalid_option_values(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as caught:
        BackgroundJobOptions.from_config({field: value})

    assert [error["loc"] for error in caught.value.errors()] == [(field,)]
    assert field in str(caught.value)


def test_invalid_option_values_in_the_container_fail_the_build() -> None:
    container = BackgroundJobContainer()
    container.config.from_dict({"options": {"batch_size": 0}})

    with pytest.raises(ValidationError, match="batch_size"):
        MasaApp.build(container)

    assert not MasaApp.is_built()


def test_an_unknown_store_backend_fails_the_build() -> None:
    container = BackgroundJobContainer()
    container.config.from_dict({"store": {"backend": "mongodb"}})

    with pytest.raises(ConfigurationError) as caught:
        MasaApp.build(container)

    message = str(caught.value)
    assert "unknown store backend 'mongodb'" in message
    assert "memory" in message
    assert "MASA_JOBS_STORE__BACKEND" in message
    assert not MasaApp.is_built()
    with pytest.raises(MasaNotBuiltError):
        MasaApp.root()


def test_a_durable_store_setting_without_its_backend_fails_the_build() -> None:
    # MASA_JOBS_STORE__PATH set, MASA_JOBS_STORE__BACKEND forgotten: not a silent memory store.
    container = BackgroundJobContainer()
    container.config.from_dict({"store": {"path": "jobs.sqlite3"}})

    with pytest.raises(ConfigurationError) as caught:
        MasaApp.build(container)

    message = str(caught.value)
    assert "store.path set, but store.backend is memory" in message
    assert "MASA_JOBS_STORE__BACKEND" in message
    assert not MasaApp.is_built()
