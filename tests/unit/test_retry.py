"""The retry policy: MASA's exponential back-off and when a job is dead."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from masa_jobs import BackgroundJobOptions, RetryPolicy
from masa_jobs.retry import MAX_RETRY_DELAY_SECONDS

LAST_TRY = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("attempt", range(1, 11))
def test_masa_defaults_double_the_wait_from_sixty_seconds(attempt: int) -> None:
    expected = timedelta(seconds=60 * 2 ** (attempt - 1))

    assert RetryPolicy().delay_after(attempt) == expected
    assert RetryPolicy().next_try_at(attempt, LAST_TRY) == LAST_TRY + expected


def test_masa_default_waits_in_full() -> None:
    waits = [RetryPolicy().delay_after(n) for n in range(1, 11)]

    assert [w.total_seconds() for w in waits if w is not None] == [
        60, 120, 240, 480, 960, 1920, 3840, 7680, 15360, 30720,
    ]  # fmt: skip


def test_the_eleventh_failed_attempt_is_dead() -> None:
    assert RetryPolicy().delay_after(11) is None
    assert RetryPolicy().next_try_at(11, LAST_TRY) is None
    assert RetryPolicy().delay_after(12) is None


def test_defaults_match_the_options() -> None:
    assert RetryPolicy.from_options(BackgroundJobOptions()) == RetryPolicy()


def test_custom_values_from_options() -> None:
    options = BackgroundJobOptions(max_retry_times=3, first_wait_duration=0.5, wait_duration=3)
    policy = RetryPolicy.from_options(options)

    assert [policy.delay_after(n) for n in range(1, 5)] == [
        timedelta(seconds=0.5),
        timedelta(seconds=1.5),
        timedelta(seconds=4.5),
        None,
    ]


def test_a_constant_wait() -> None:
    policy = RetryPolicy(max_retry_times=5, first_wait_duration=2, wait_duration=1)

    assert {policy.delay_after(n) for n in range(1, 6)} == {timedelta(seconds=2)}


def test_no_retries_means_dead_after_the_first_attempt() -> None:
    assert RetryPolicy(max_retry_times=0).delay_after(1) is None


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_start_at_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="start at 1"):
        RetryPolicy().delay_after(attempt)


@pytest.mark.parametrize("wait_duration", [2, 2.0, 1.5])
@pytest.mark.parametrize("attempt", [60, 1_100, 10_000, 10**9])
def test_huge_attempts_do_not_overflow(wait_duration: float, attempt: int) -> None:
    policy = RetryPolicy(max_retry_times=10**10, wait_duration=wait_duration)

    delay = policy.delay_after(attempt)

    assert delay == timedelta(seconds=MAX_RETRY_DELAY_SECONDS)
    assert policy.next_try_at(attempt, LAST_TRY) == LAST_TRY + delay


def test_the_wait_is_capped() -> None:
    policy = RetryPolicy(max_retry_times=100)

    assert policy.delay_after(30) == timedelta(seconds=MAX_RETRY_DELAY_SECONDS)
    assert policy.delay_after(10) == timedelta(seconds=60 * 2**9)
