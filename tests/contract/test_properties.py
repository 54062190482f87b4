"""Property-based tests, on every store: hostile text and numbers are kept exactly or
refused cleanly.

Records go through each store's codec (SQLite and PostgreSQL rows, Redis script
arguments and hashes) and back; args go through ``enqueue``. Whatever comes in
(NUL characters, lone surrogates, control and bidi characters, very long
strings, deep nesting, big integers, non-finite floats), a record is either
read back equal or refused with ``StoreRejectedError``, and args either come
back equal or are refused with ``InvalidJobArgsError`` with nothing stored.
Any other exception, a raw driver error above all, fails the test.

The store is opened once per test and shared by its examples: each example
uses fresh ids, and opening a store per example (a schema, a key prefix, a
file) would cost seconds.
"""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest
from hypothesis import HealthCheck, event, example, given, reject, settings
from hypothesis import strategies as st
from pydantic import BaseModel, JsonValue, ValidationError

from masa_jobs import (
    BackgroundJob,
    BackgroundJobOptions,
    DefaultJobManager,
    InvalidJobArgsError,
    JobOutcome,
    JobRecord,
    JobRegistry,
    JobState,
    JobStore,
    StoreRejectedError,
)
from masa_jobs.records import utcnow
from masa_jobs.stores.base import Store

pytestmark = pytest.mark.anyio

PROPERTIES = settings(
    max_examples=50,
    deadline=None,
    # The function-scoped ``store`` fixture is shared by the examples of a test
    # on purpose (see the module docstring); long texts are slow to draw.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    # No example database: it would be a directory in the working tree.
    database=None,
)
LEASE = timedelta(seconds=30)
# Far above what the long texts below reach: size limits are tested elsewhere.
NO_SIZE_LIMIT = 256 * 1024 * 1024

# Characters that broke stores before, or could: NUL, lone surrogates, the
# replacement character, escapes of JSON, Lua and SQL, control and bidi characters.
HOSTILE = st.sampled_from(
    ["\x00", "\ud800", "\udfff", "\ufffd", "\u202e", "\x1b", "\r", "\n", "'", '"', "\\", "%", "{"]
)
CHARACTERS = st.one_of(st.characters(), HOSTILE, st.sampled_from(["é", "🚀", "\u3042"]))
SHORT_TEXT = st.text(CHARACTERS, max_size=30)
# Long texts are a short pattern repeated: quick to draw, and as long as needed.
LONG_TEXT = st.builds(
    lambda pattern, times: pattern * times,
    st.text(CHARACTERS, min_size=1, max_size=8),
    st.integers(min_value=500, max_value=40_000),
)
TEXT = st.one_of(SHORT_TEXT, SHORT_TEXT, SHORT_TEXT, LONG_TEXT)
BIG_INTEGERS = st.one_of(st.integers(), st.integers(min_value=-(2**256), max_value=2**256))
JSON_LEAVES = st.one_of(st.none(), st.booleans(), BIG_INTEGERS, st.floats(), TEXT)
JSON_TREES = st.recursive(
    JSON_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(SHORT_TEXT, children, max_size=4)
    ),
    max_leaves=20,
)


def nested_lists(depth: int) -> JsonValue:
    value: JsonValue = "leaf"
    for _ in range(depth):
        value = [value]
    return value


# Deeper than pydantic parses JSON (about 200 levels) too, but mostly not.
DEEP_TREES = st.integers(min_value=1, max_value=240).map(nested_lists)


class Everything(BaseModel):
    text: str
    number: int
    ratio: float
    blob: bytes
    tree: JsonValue


class EverythingJob(BackgroundJob[Everything]):
    async def execute(self, args: Everything) -> None:
        return None


def a_record(job_id: str, name: str, payload: str, last_error: str | None) -> JobRecord:
    now = utcnow().replace(microsecond=0)
    return JobRecord(
        id=job_id,
        name=name,
        payload=payload,
        state=JobState.ENQUEUED,
        created_at=now,
        next_try_at=now,
        last_error=last_error,
    )


async def total(store: JobStore) -> int:
    return sum((await store.count_by_state(utcnow())).values())


async def absent(store: JobStore, job_id: str) -> bool:
    """Whether no job has ``job_id``; a store may refuse the id itself on reading too."""
    try:
        return await store.get(job_id) is None
    except StoreRejectedError:
        return True


@PROPERTIES
@given(suffix=TEXT, name=TEXT, payload=TEXT, last_error=st.none() | TEXT)
# Every run tries these, whatever it draws: lone surrogates, NUL characters,
# an id beyond an index entry's size, a megabyte of payload.
@example(suffix="\ud800", name="job", payload="{}", last_error=None)
@example(suffix="", name="\udfff", payload="\ud800", last_error="\udc00")
@example(suffix="\x00", name="nul\x00name", payload="\x00", last_error="\x00")
@example(suffix="x" * 10_000, name="job", payload="p" * 1_000_000, last_error=None)
async def test_a_new_record_is_kept_as_given_or_refused(
    store: JobStore, suffix: str, name: str, payload: str, last_error: str | None
) -> None:
    # Fresh ids: the examples share the store. The hostile part is the suffix.
    record = a_record(uuid4().hex + suffix, name, payload, last_error)
    before = await total(store)

    try:
        await store.add([record])
    except StoreRejectedError:
        event("refused by the store")
        assert await absent(store, record.id)
        assert await total(store) == before
        return

    event("kept")
    kept = await store.get(record.id)
    assert kept is not None
    assert (kept.id, kept.name, kept.payload, kept.last_error) == (
        record.id,
        record.name,
        record.payload,
        record.last_error,
    )
    assert (kept.state, kept.attempts, kept.done_handlers) == (JobState.ENQUEUED, 0, ())


@PROPERTIES
@given(last_error=st.none() | TEXT, done=st.lists(TEXT, max_size=3))
@example(last_error="nul \x00", done=["nul \x00"])
@example(last_error="lone \ud800", done=[])
@example(last_error=None, done=["lone \udfff"])
@example(last_error="e" * 1_000_000, done=["a", "", "c" * 10_000])
async def test_an_outcome_is_kept_as_given_or_refused(
    store: JobStore, last_error: str | None, done: list[str]
) -> None:
    job = a_record(uuid4().hex, "contract.job", "{}", None)
    await store.add([job])
    # Every earlier example's job is finished (or held, if its outcome was refused).
    claimed = await store.claim("worker-1", 10, LEASE)
    assert [held.id for held in claimed] == [job.id]
    outcome = JobOutcome(
        job_id=job.id,
        state=JobState.DEAD,
        attempts=1,
        next_try_at=claimed[0].last_try_at or utcnow(),
        last_error=last_error,
        done_handlers=tuple(done),
        finished_at=utcnow(),
        lease_token=claimed[0].lease_token,
    )

    try:
        applied = await store.finish("worker-1", [outcome])
    except StoreRejectedError:
        event("refused by the store")
        still = await store.get(job.id)
        assert still is not None
        assert still.state is JobState.PROCESSING  # nothing of the outcome was written
        return

    event("kept")
    assert applied == {job.id}
    kept = await store.get(job.id)
    assert kept is not None
    assert (kept.state, kept.last_error, kept.done_handlers) == (
        JobState.DEAD,
        last_error,
        tuple(done),
    )


@PROPERTIES
@given(
    text=TEXT,
    number=BIG_INTEGERS,
    ratio=st.floats(),
    blob=st.one_of(st.binary(max_size=30), TEXT.map(lambda t: t.encode(errors="ignore"))),
    tree=st.one_of(JSON_TREES, JSON_TREES, DEEP_TREES),
)
@example(text="\ud800", number=0, ratio=0.0, blob=b"", tree=None)
@example(text="nul \x00", number=2**1000, ratio=-0.0, blob="é".encode(), tree=[None, 1e308])
@example(text="", number=0, ratio=float("nan"), blob=b"", tree=None)
@example(text="", number=0, ratio=0.0, blob=b"\xff", tree=None)
@example(text="", number=0, ratio=0.0, blob=b"", tree={"\ud800": 1})
@example(text="", number=0, ratio=0.0, blob=b"", tree={"a": [float("-inf")]})
@example(text="", number=0, ratio=0.0, blob=b"", tree=nested_lists(240))
@example(text="\ufffd" * 100_000, number=-(2**300), ratio=5e-324, blob=b"", tree="\x00")
async def test_enqueued_args_come_back_equal_or_are_refused(
    store: JobStore, text: str, number: int, ratio: float, blob: bytes, tree: JsonValue
) -> None:
    try:
        args = Everything(text=text, number=number, ratio=ratio, blob=blob, tree=tree)
    except ValidationError:
        reject()  # pydantic refused to build them: not enqueue's business
    assert isinstance(store, Store)
    manager = DefaultJobManager(
        store,
        JobRegistry([EverythingJob]),
        BackgroundJobOptions(max_payload_bytes=NO_SIZE_LIMIT),
    )
    before = await total(store)

    try:
        job_id = await manager.enqueue(args)
    except InvalidJobArgsError as exc:
        event("refused by enqueue")
        str(exc).encode()  # printable: the message quotes no lone surrogate
        assert await total(store) == before
        return

    event("kept")
    kept = await store.get(job_id)
    assert kept is not None
    assert Everything.model_validate_json(kept.payload) == args
