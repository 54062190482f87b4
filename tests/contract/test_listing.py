"""The operator part of the contract: cursor pages, filters, history and headers.

Every store answers ``list_jobs`` in ``(created_at, id)`` order, newest first
unless asked otherwise, and pages by cursor: walking every page yields each
job once, whatever the page size, on every filter.
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from masa_jobs import InvalidQueryError, JobState, JobStore
from masa_jobs.queries import MAX_PAGE_SIZE, JobQuery, decode_cursor, encode_cursor
from masa_jobs.records import MAX_HISTORY_EVENTS, decode_headers, utcnow

from .test_job_store import (
    LEASE,
    MS,
    PENDING,
    SHORT_LEASE,
    add_one,
    added_in_turn,
    claim_one,
    finished_job,
    ids,
    make_record,
    outcome,
    seconds,
    store_time_after,
    stored,
)

pytestmark = pytest.mark.anyio


async def walk(store: JobStore, query: JobQuery) -> list[str]:
    """Every id a query lists, page after page."""
    seen: list[str] = []
    cursor = None
    for _ in range(10_000):
        page = await store.list_jobs(replace(query, cursor=cursor), await store.now())
        assert len(page.items) <= query.limit
        seen.extend(ids(page.items))
        if page.next_cursor is None:
            return seen
        assert page.items, "a page with a next cursor holds jobs"
        cursor = page.next_cursor
    raise AssertionError("paging did not end")


async def test_list_jobs_pages_newest_first_by_cursor(store: JobStore) -> None:
    records = [make_record(payload=json.dumps({"i": i})) for i in range(7)]
    await added_in_turn(store, records)
    newest_first = ids(reversed(records))

    first = await store.list_jobs(JobQuery(limit=3), await store.now())

    assert ids(first.items) == newest_first[:3]
    assert first.next_cursor is not None
    assert await walk(store, JobQuery(limit=3)) == newest_first
    assert await walk(store, JobQuery(limit=7)) == newest_first
    assert await walk(store, JobQuery(limit=100)) == newest_first
    assert await walk(store, JobQuery(limit=2, newest_first=False)) == newest_first[::-1]


async def test_the_last_page_has_no_cursor(store: JobStore) -> None:
    await added_in_turn(store, [make_record() for _ in range(3)])

    page = await store.list_jobs(JobQuery(limit=3), await store.now())

    assert len(page.items) == 3
    assert page.next_cursor is None


async def test_an_empty_store_lists_an_empty_page(store: JobStore) -> None:
    page = await store.list_jobs(JobQuery(), await store.now())
    assert page.items == ()
    assert page.next_cursor is None


async def test_jobs_created_in_one_batch_page_by_id(store: JobStore) -> None:
    # One batch may share one created_at (a network store rebases a batch on
    # one server time): the id breaks the tie, so no job is lost between pages.
    created = (await store.now()).replace(microsecond=0)
    batch = [
        make_record(f"job-{i:03d}", created_at=created, payload=json.dumps({"i": i}))
        for i in range(25)
    ]
    await store.add(batch)
    stamps = {(await stored(store, r.id)).created_at for r in batch}

    listed = await walk(store, JobQuery(limit=4))

    assert sorted(listed) == sorted(ids(batch))
    assert len(listed) == len(set(listed))
    if len(stamps) == 1:
        assert listed == sorted(ids(batch), reverse=True)


async def test_list_jobs_filters_by_state(store: JobStore) -> None:
    dead = await finished_job(store, JobState.DEAD)
    await store_time_after(store, dead.created_at + MS)
    succeeded = await finished_job(store, JobState.SUCCEEDED)
    waiting = make_record(state=JobState.SCHEDULED, delay=3600)
    due = make_record()
    running = make_record(delay=-7200)
    await added_in_turn(store, [waiting, due, running], after=succeeded.created_at)
    assert (await claim_one(store, "worker-1")).id == running.id

    async def listed(*states: JobState) -> list[str]:
        return await walk(store, JobQuery.of(states, limit=2))

    assert await listed(JobState.DEAD) == [dead.id]
    assert await listed(JobState.DEAD, JobState.SUCCEEDED) == [succeeded.id, dead.id]
    assert await listed(JobState.SCHEDULED) == [waiting.id]
    assert await listed(JobState.ENQUEUED) == [due.id]
    assert await listed(*PENDING) == [due.id, waiting.id]
    assert await listed(JobState.PROCESSING) == [running.id]
    assert await listed(JobState.CANCELLED) == []
    assert len(await walk(store, JobQuery(limit=2))) == 5


async def test_scheduled_and_enqueued_split_by_the_given_now(store: JobStore) -> None:
    soon = await add_one(store, delay=600)
    now = await store.now()

    later = now + seconds(3600)
    page_now = await store.list_jobs(JobQuery.of(JobState.SCHEDULED), now)
    page_later = await store.list_jobs(JobQuery.of(JobState.ENQUEUED), later)

    assert ids(page_now.items) == [soon.id]
    assert ids(page_later.items) == [soon.id]


async def test_a_page_of_one_pending_kind_skips_many_of_the_other(store: JobStore) -> None:
    # 120 scheduled jobs sit between the two due ones: paging enqueued jobs
    # still finds both, and nothing else.
    first_due = await add_one(store)
    await store_time_after(store, first_due.created_at + MS)
    await store.add([make_record(delay=3600) for _ in range(120)])
    await store_time_after(store, (await store.now()) + MS)
    second_due = await add_one(store)

    listed = await walk(store, JobQuery.of(JobState.ENQUEUED, limit=1))

    assert listed == [second_due.id, first_due.id]


async def test_list_jobs_filters_by_name(store: JobStore) -> None:
    mails = [make_record(name="mail.send") for _ in range(3)]
    others = [make_record(name="report.build") for _ in range(2)]
    await added_in_turn(store, [mails[0], others[0], mails[1], others[1], mails[2]])
    await claim_one(store, "worker-1")  # the oldest mail: processing now

    assert await walk(store, JobQuery(name="mail.send", limit=2)) == ids(reversed(mails))
    assert await walk(store, JobQuery.of(JobState.ENQUEUED, name="mail.send", limit=1)) == ids(
        reversed(mails[1:])
    )
    assert await walk(store, JobQuery.of(JobState.PROCESSING, name="mail.send")) == [mails[0].id]
    assert await walk(store, JobQuery(name="report.build")) == ids(reversed(others))
    assert await walk(store, JobQuery(name="nobody")) == []


async def test_list_jobs_filters_by_creation_time(store: JobStore) -> None:
    records = [make_record() for _ in range(5)]
    await added_in_turn(store, records)
    stamps = [(await stored(store, r.id)).created_at for r in records]

    middle = JobQuery(created_from=stamps[1], created_until=stamps[4], limit=2)

    assert await walk(store, middle) == ids(reversed(records[1:4]))
    assert await walk(store, replace(middle, newest_first=False)) == ids(records[1:4])
    assert await walk(store, JobQuery(created_from=stamps[4] + MS)) == []


async def test_a_cursor_survives_jobs_that_leave_the_list(store: JobStore) -> None:
    records = [make_record() for _ in range(6)]
    await added_in_turn(store, records)
    query = JobQuery.of(JobState.ENQUEUED, limit=2)
    first = await store.list_jobs(query, await store.now())
    assert ids(first.items) == ids(reversed(records[4:]))

    # The page's last job is cancelled: the next page still starts after it.
    assert await store.transition(records[4].id, PENDING, JobState.CANCELLED, utcnow())
    second = await store.list_jobs(replace(query, cursor=first.next_cursor), await store.now())

    assert ids(second.items) == ids(reversed(records[2:4]))


async def test_a_page_holds_at_most_the_largest_page_size() -> None:
    with pytest.raises(InvalidQueryError, match="page"):
        JobQuery(limit=MAX_PAGE_SIZE + 1)
    with pytest.raises(InvalidQueryError, match="cursor"):
        JobQuery(cursor="not a cursor")
    with pytest.raises(InvalidQueryError, match="timezone"):
        JobQuery(created_from=utcnow().replace(tzinfo=None))
    assert decode_cursor(encode_cursor(make_record("abc"))).job_id == "abc"


# -- history -----------------------------------------------------------------------


async def test_finish_appends_an_event_to_the_history(store: JobStore) -> None:
    record = await add_one(store, delay=-60)
    held = await claim_one(store, "worker-7")
    retry_at = (await store.now()) + seconds(3600)

    await store.finish(
        "worker-7",
        [outcome(held, JobState.SCHEDULED, next_try_at=retry_at, last_error="boom\nTraceback")],
    )
    after_retry = await stored(store, record.id)

    [event] = after_retry.history
    assert event.state is JobState.SCHEDULED
    assert event.attempt == 1
    assert event.error == "boom\nTraceback"
    assert event.worker == "worker-7"
    assert event.started_at == held.last_try_at
    assert abs(event.at - await store.now()) < seconds(60)


async def test_history_keeps_every_attempt_and_operator_move(store: JobStore) -> None:
    record = await add_one(store, delay=-60)
    for attempt in (1, 2):
        held = await claim_one(store, "worker-1")
        due = await store.now() - seconds(1)
        await store.finish(
            "worker-1",
            [outcome(held, JobState.SCHEDULED, next_try_at=due, last_error=f"error {attempt}")],
        )
    held = await claim_one(store, "worker-1")
    await store.finish("worker-1", [outcome(held, JobState.DEAD, last_error="error 3")])
    await store.transition(record.id, [JobState.DEAD], JobState.ENQUEUED, utcnow())

    history = (await stored(store, record.id)).history

    assert [e.state for e in history] == [
        JobState.SCHEDULED,
        JobState.SCHEDULED,
        JobState.DEAD,
        JobState.ENQUEUED,
    ]
    assert [e.error for e in history] == ["error 1", "error 2", "error 3", None]
    assert [e.attempt for e in history] == [1, 2, 3, 3]
    assert history[-1].worker is None
    assert history[0].at <= history[1].at <= history[2].at <= history[3].at


async def test_a_refused_outcome_adds_no_event(store: JobStore) -> None:
    record = await add_one(store)
    held = await claim_one(store, "worker-1", LEASE)

    applied = await store.finish(
        "worker-1", [outcome(held, JobState.SUCCEEDED, lease_token="not-the-token")]
    )

    assert applied == set()
    assert (await stored(store, record.id)).history == ()


async def test_history_keeps_the_newest_events(store: JobStore) -> None:
    record = await add_one(store, delay=-60)
    for attempt in range(MAX_HISTORY_EVENTS + 3):
        held = await claim_one(store, "worker-1")
        due = await store.now() - seconds(1)
        await store.finish(
            "worker-1",
            [outcome(held, JobState.SCHEDULED, next_try_at=due, last_error=f"e{attempt}")],
        )

    history = (await stored(store, record.id)).history

    assert len(history) == MAX_HISTORY_EVENTS
    assert history[-1].error == f"e{MAX_HISTORY_EVENTS + 2}"
    assert history[0].error == "e3"


# -- headers -----------------------------------------------------------------------


async def test_headers_round_trip(store: JobStore) -> None:
    headers = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}
    record = replace(make_record(), headers=json.dumps(headers))
    await store.add([record])

    got = await stored(store, record.id)
    listed = await store.list_jobs(JobQuery(), await store.now())
    claimed = await claim_one(store, "worker-1")

    assert decode_headers(got.headers) == headers
    assert decode_headers(listed.items[0].headers) == headers
    assert decode_headers(claimed.headers) == headers


async def test_a_job_without_headers_has_none(store: JobStore) -> None:
    record = await add_one(store)
    assert (await stored(store, record.id)).headers is None


async def test_count_by_state_is_exact_for_small_states(store: JobStore) -> None:
    await store.add([make_record(delay=3600) for _ in range(30)])
    await store.add([make_record() for _ in range(20)])
    await finished_job(store, JobState.DEAD)

    counts = await store.count_by_state(await store.now())

    assert counts[JobState.SCHEDULED] == 30
    assert counts[JobState.ENQUEUED] == 20
    assert counts[JobState.DEAD] == 1


# -- the overview's reads ------------------------------------------------------------


async def test_oldest_due_at_is_the_pending_job_due_first(store: JobStore) -> None:
    assert await store.oldest_due_at() is None
    later = await add_one(store, delay=3600)
    overdue = await add_one(store, delay=-60)

    first = await store.oldest_due_at()

    assert first == (await stored(store, overdue.id)).next_try_at
    await claim_one(store, "worker-1")  # the overdue job: no longer pending
    assert await store.oldest_due_at() == (await stored(store, later.id)).next_try_at


async def test_finished_per_minute_counts_finished_jobs_by_minute(store: JobStore) -> None:
    before = await store.now()
    await finished_job(store, JobState.SUCCEEDED)
    await finished_job(store, JobState.DEAD)
    await finished_job(store, JobState.CANCELLED)
    await add_one(store)  # pending: not counted

    minutes = await store.finished_per_minute(before - seconds(60))

    assert sum(n for _, n in minutes) == 3
    assert all(m.second == 0 and m.microsecond == 0 for m, _ in minutes)
    assert [m for m, _ in minutes] == sorted(m for m, _ in minutes)
    assert await store.finished_per_minute(await store.now() + seconds(120)) == []


# -- cancelling a running job ------------------------------------------------------


async def test_a_running_job_cancelled_is_no_longer_held(store: JobStore) -> None:
    record = await add_one(store)
    held = await claim_one(store, "worker-1", SHORT_LEASE)
    assert held.lease_token is not None

    moved = await store.transition(
        record.id, [JobState.PROCESSING], JobState.CANCELLED, await store.now()
    )

    assert moved is not None
    assert moved.state is JobState.CANCELLED
    assert moved.lease_owner is None
    assert moved.lease_token is None
    # The worker that ran it can neither renew nor finish it any more.
    assert await store.extend_leases("worker-1", {record.id: held.lease_token}, LEASE) == set()
    assert await store.finish("worker-1", [outcome(held, JobState.SUCCEEDED)]) == set()
    # Its lease running out does not make it due again.
    await store_time_after(store, held.lease_expires_at or held.created_at)
    assert await store.claim("worker-2", 10, LEASE) == []
    after = await stored(store, record.id)
    assert after.state is JobState.CANCELLED
    assert after.finished_at is not None
    assert (await store.count_by_state(await store.now()))[JobState.CANCELLED] == 1
    assert ids(
        (await store.list_jobs(JobQuery.of(JobState.CANCELLED), await store.now())).items
    ) == [record.id]
    assert (await store.list_jobs(JobQuery.of(JobState.PROCESSING), await store.now())).items == ()
