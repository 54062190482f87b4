"""The shop app end to end: enqueue through its services, run in its worker."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import anyio
import pytest

from masa_jobs import JobState, MasaApp, MasaNotBuiltError

from .conftest import WAIT_TIMEOUT, wait_for_count, wait_for_state
from .shop.container import AppContainer
from .shop.embedded import RefundService, ShopPlatform, refund_via_facade
from .shop.jobs import ALWAYS
from .shop.services import OrderService, place_order_via_facade

pytestmark = [pytest.mark.anyio, pytest.mark.acceptance]

BuildShop = Callable[..., AppContainer]
FINAL = (JobState.SUCCEEDED, JobState.DEAD, JobState.CANCELLED)


async def test_injected_manager_and_static_facade_are_one_singleton(
    build_shop: BuildShop,
) -> None:
    shop = build_shop()
    service = OrderService()
    assert service._jobs is shop.job_manager()
    assert MasaApp.job_manager() is shop.job_manager()


async def test_a_thousand_orders_run_exactly_once_per_handler(build_shop: BuildShop) -> None:
    shop = build_shop()
    manager, mailer, ledger = shop.job_manager(), shop.mailer(), shop.ledger()
    job_ids: dict[int, str] = {}
    async with MasaApp.lifespan():
        service = OrderService()
        for order_id in range(500):
            job_ids[order_id] = await service.place_order(order_id, f"c{order_id}@example.com")
        for order_id in range(500, 1000):
            job_ids[order_id] = await place_order_via_facade(order_id, f"c{order_id}@example.com")
        await wait_for_count(manager, JobState.SUCCEEDED, 1000)

    once_each = Counter(range(1000))
    assert mailer.calls == once_each
    assert ledger.calls == once_each
    assert len(set(job_ids.values())) == 1000
    counts = await manager.count()
    assert counts[JobState.SUCCEEDED] == 1000
    assert sum(counts.values()) == 1000
    for job_id in (job_ids[0], job_ids[999]):
        info = await manager.get(job_id)
        assert info is not None
        assert (info.state, info.attempts, info.last_error) == (JobState.SUCCEEDED, 1, None)


async def test_a_delayed_job_runs_on_time_on_the_stores_wake_up(build_shop: BuildShop) -> None:
    delay = 0.3
    shop = build_shop(poll_interval=5)  # polling alone would pick the job up seconds late
    manager, mailer, ledger = shop.job_manager(), shop.mailer(), shop.ledger()
    async with MasaApp.lifespan():
        enqueued_at = time.monotonic()
        job_id = await OrderService().place_order(
            1, "a@example.com", delay=timedelta(seconds=delay)
        )
        info = await manager.get(job_id)
        assert info is not None
        assert info.state is JobState.SCHEDULED
        with anyio.fail_after(WAIT_TIMEOUT):
            await mailer.wait_until(lambda: mailer.calls[1] == 1 and ledger.calls[1] == 1)
        await wait_for_state(manager, job_id, *FINAL)

    waited = mailer.times[1][0] - enqueued_at
    assert waited >= delay, f"ran {delay - waited:.3f} s before its delay"
    assert waited < delay + 0.1, f"ran {waited - delay:.3f} s after its delay"
    info = await manager.get(job_id)
    assert info is not None
    assert info.state is JobState.SUCCEEDED


async def test_a_handler_failing_twice_succeeds_on_the_third_attempt(
    build_shop: BuildShop,
) -> None:
    shop = build_shop()
    manager, mailer, ledger = shop.job_manager(), shop.mailer(), shop.ledger()
    async with MasaApp.lifespan():
        job_id = await OrderService().place_order(7, "g@example.com", mail_failures=2)
        info = await wait_for_state(manager, job_id, *FINAL)

    assert info.state is JobState.SUCCEEDED
    assert info.attempts == 3
    assert info.last_error is None
    assert mailer.calls[7] == 3
    assert ledger.calls[7] == 1, "a retry must run only the handler that failed"


async def test_a_handler_failing_always_ends_dead_with_its_error(build_shop: BuildShop) -> None:
    shop = build_shop(max_retry_times=2, first_wait_duration=0.01)
    manager, mailer, ledger = shop.job_manager(), shop.mailer(), shop.ledger()
    async with MasaApp.lifespan():
        job_id = await place_order_via_facade(8, "h@example.com", mail_failures=ALWAYS)
        info = await wait_for_state(manager, job_id, *FINAL)

    max_retry_times = shop.options().max_retry_times
    assert info.state is JobState.DEAD
    assert info.attempts == max_retry_times + 1
    assert mailer.calls[8] == max_retry_times + 1
    assert ledger.calls[8] == 1
    assert info.last_error is not None
    assert "SendOrderConfirmation" in info.last_error
    assert "MailServerDown: could not mail order 8 (call 3)" in info.last_error
    assert "Traceback" in info.last_error


async def test_the_static_facade_before_build_raises_and_stores_nothing(
    build_shop: BuildShop,
) -> None:
    assert not MasaApp.is_built()
    with pytest.raises(MasaNotBuiltError, match=r"call MasaApp\.build\(container\)"):
        await place_order_via_facade(1, "a@example.com")

    shop = build_shop()
    assert sum((await shop.job_manager().count()).values()) == 0


async def test_a_job_running_when_the_worker_stops_is_put_back_as_due(
    build_shop: BuildShop,
) -> None:
    shop = build_shop(shutdown_timeout=0.1)
    manager, archive = shop.job_manager(), shop.archive()
    with anyio.fail_after(WAIT_TIMEOUT):
        async with MasaApp.lifespan():
            job_id = await OrderService().export_report(1, hang_first_run=True)
            await archive.wait_until(lambda: archive.calls[1] == 1)
            stopping_at = time.monotonic()
        # Leaving the lifespan stopped the worker: the hanging job was cancelled
        # after shutdown_timeout and handed back, not lost.
        stopped_after = time.monotonic() - stopping_at

    assert 0.09 <= stopped_after < 2, "the stop waits shutdown_timeout (0.1 s), then cancels"
    info = await manager.get(job_id)
    assert info is not None
    assert info.state is JobState.ENQUEUED
    assert info.attempts == 1
    assert archive.finished == []

    async with MasaApp.lifespan():
        info = await wait_for_state(manager, job_id, *FINAL)
    assert info.state is JobState.SUCCEEDED
    assert info.attempts == 2
    assert archive.calls[1] == 2
    assert archive.finished == [1]


async def test_a_container_embedding_the_job_container_works_end_to_end() -> None:
    platform = ShopPlatform()
    # The embedded container reads the "jobs" section; "store" may be left out.
    platform.config.from_dict({"jobs": {"options": {"poll_interval": 5}}})
    MasaApp.build(platform)
    manager, refunds = platform.jobs.job_manager(), platform.refunds()
    assert MasaApp.job_manager() is manager
    assert RefundService()._jobs is manager

    async with MasaApp.lifespan():
        injected = await RefundService().refund(1, 500)
        static = await refund_via_facade(2, 700)
        infos = [await wait_for_state(manager, job_id, *FINAL) for job_id in (injected, static)]

    assert [info.state for info in infos] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    assert refunds.amounts == {1: -500, 2: -700}
    assert refunds.calls == Counter({1: 1, 2: 1})
