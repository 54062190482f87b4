"""Bad input gets a clear error naming the problem and the fix, and stores nothing."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from masa_jobs.containers import BackgroundJobContainer
from pydantic import BaseModel, ConfigDict, JsonValue, ValidationError

from masa_jobs import (
    BackgroundJob,
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
    get_job_name,
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


# -- args that cannot make the trip through JSON -------------------------------------


class Opaque:
    """A type pydantic takes as is, and cannot dump as JSON."""


class Awkward(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str = ""
    blob: bytes = b""
    ratio: float = 0.0
    maybe: float | None = None
    tree: JsonValue = None
    items: list[Greet] = []
    thing: Opaque | None = None


class AwkwardJob(BackgroundJob[Awkward]):
    async def execute(self, args: Awkward) -> None:
        return None


class Lenient(BaseModel):
    """A model that stores non-finite floats as JSON's NaN and Infinity."""

    model_config = ConfigDict(ser_json_inf_nan="constants")

    ratio: float


class LenientJob(BackgroundJob[Lenient]):
    async def execute(self, args: Lenient) -> None:
        return None


def make_awkward_manager() -> DefaultJobManager:
    return DefaultJobManager(
        MemoryJobStore(),
        JobRegistry([*ALL_HANDLERS, AwkwardJob, LenientJob]),
        BackgroundJobOptions(),
    )


def nested_lists(depth: int) -> JsonValue:
    value: JsonValue = "leaf"
    for _ in range(depth):
        value = [value]
    return value


def assert_printable(message: str) -> None:
    """A message a log line or a terminal can show: no lone surrogate in it."""
    message.encode()


@pytest.mark.parametrize(
    ("args", "field", "problem", "fix"),
    [
        (Awkward(text="ok\ud800"), "field text", "a lone surrogate", "errors='replace'"),
        (Awkward(blob=b"\xff\xfe"), "field blob", "not UTF-8", "Base64Bytes"),
        (Awkward(ratio=math.nan), "field ratio", "non-finite float (nan)", "ser_json_inf_nan"),
        (Awkward(maybe=math.inf), "field maybe", "non-finite float (inf)", "finite number"),
        (Awkward(tree={"a": [1, -math.inf]}), "field tree.a.1", "non-finite", "finite number"),
        (
            Awkward(tree={"a": [{"b": "\udcff"}]}),
            "field tree.a.0.b",
            "a lone surrogate",
            "remove it",
        ),
        (
            Awkward(tree={"a": {"key\ud800": 1}}),
            "field tree.a.'key\\ud800'",
            "a lone surrogate",
            "remove it",
        ),
        (
            Awkward(items=[Greet(key="a"), Greet(key="\udfff")]),
            "field items.1.key",
            "a lone surrogate",
            "remove it",
        ),
        (Awkward(thing=Opaque()), "field thing", "cannot dump as JSON", "Opaque"),
        (
            Awkward.model_construct(ratio="garbage"),
            "field ratio",
            "cannot validate back (Input should be a valid number",
            "not Awkward.model_construct(...)",
        ),
        (
            Awkward.model_construct(items=[{"key": 1}]),
            "field items.0",
            "cannot validate back",
            "build the args with Awkward(...)",
        ),
        (Awkward(tree=nested_lists(250)), "the args contain", "recursion limit", "less deeply"),
    ],
    ids=[
        "surrogate",
        "bytes",
        "nan",
        "inf-in-optional",
        "nested-inf",
        "nested-surrogate",
        "surrogate-key",
        "nested-model",
        "unknown-type",
        "model_construct",
        "model_construct-nested",
        "too-deep",
    ],
)
async def test_args_that_cannot_be_stored_as_json(
    args: Awkward, field: str, problem: str, fix: str
) -> None:
    manager = make_awkward_manager()

    with pytest.raises(InvalidJobArgsError) as caught:
        await manager.enqueue(args)

    message = str(caught.value)
    assert message.startswith(f"the args of job {get_job_name(Awkward)!r} (Awkward) cannot be")
    assert field in message
    assert problem in message
    assert fix in message
    assert message.endswith("nothing was stored")
    assert_printable(message)
    assert isinstance(caught.value, EnqueueError)
    assert isinstance(caught.value, TypeError)
    await assert_nothing_stored(manager)


async def test_a_refused_args_value_refuses_the_whole_batch() -> None:
    manager = make_awkward_manager()

    with pytest.raises(InvalidJobArgsError, match="field text"):
        await manager.enqueue_many([(Greet(key="fine"), None), (Awkward(text="\ud800"), None)])

    await assert_nothing_stored(manager)


async def test_the_driver_error_stays_attached_to_a_refusal() -> None:
    manager = make_awkward_manager()

    with pytest.raises(InvalidJobArgsError) as dumped:
        await manager.enqueue(Awkward(text="\ud800"))
    with pytest.raises(InvalidJobArgsError) as validated:
        await manager.enqueue(Awkward.model_construct(ratio="garbage"))

    assert isinstance(dumped.value.__cause__, ValueError)  # PydanticSerializationError
    assert isinstance(validated.value.__cause__, ValidationError)


@pytest.mark.parametrize(
    "args",
    [
        Awkward(text="nul \x00, replacement \ufffd, emoji 🚀, bidi \u202e"),
        Awkward(maybe=None, tree={"none": None, "list": [None, 1.5, -0.0]}),
        Awkward(tree={"big": 2**200, "small": -(2**200), "float": 1e308}),
        Awkward(blob="é🚀".encode(), items=[Greet(key="x" * 10_000)]),
        Awkward(tree=nested_lists(100)),
    ],
    ids=["odd-text", "nulls", "big-numbers", "bytes-and-long", "nested"],
)
async def test_args_that_survive_json_are_stored_as_they_are(args: Awkward) -> None:
    manager = make_awkward_manager()

    job_id = await manager.enqueue(args)

    stored = await manager.store.get(job_id)
    assert stored is not None
    assert Awkward.model_validate_json(stored.payload) == args


async def test_a_model_that_allows_non_finite_floats_stores_them() -> None:
    manager = make_awkward_manager()

    job_id = await manager.enqueue(Lenient(ratio=math.inf))

    stored = await manager.store.get(job_id)
    assert stored is not None
    assert Lenient.model_validate_json(stored.payload).ratio == math.inf
