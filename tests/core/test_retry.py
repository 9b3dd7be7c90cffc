"""Backoff: bounded delays, honoured Retry-After, and when to stop."""

from __future__ import annotations

import random
from datetime import datetime, timezone
from email.utils import format_datetime

import pytest

from airflow_provider_aac.core.retry import Backoff, parse_retry_after

NOW = 1_800_000_000.0


def fixed_now() -> float:
    return NOW


def test_no_retry_left_after_the_last_attempt() -> None:
    backoff = Backoff(attempts=4)
    assert [backoff.delay(a, rand=lambda: 0.5) is not None for a in (1, 2, 3, 4, 5)] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert Backoff(attempts=1).delay(1) is None


def test_delay_grows_exponentially_up_to_the_cap() -> None:
    backoff = Backoff(attempts=10, base=0.5, cap=3.0)
    top = [backoff.delay(a, rand=lambda: 1.0) for a in range(1, 10)]
    assert top == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0]
    assert all(backoff.delay(a, rand=lambda: 0.0) == 0.0 for a in range(1, 10))


def test_random_delays_stay_within_bounds() -> None:
    backoff = Backoff(attempts=50, base=0.5, cap=10.0)
    rng = random.Random(1234)
    for attempt in range(1, 50):
        for _ in range(20):
            delay = backoff.delay(attempt, rand=rng.random)
            assert delay is not None
            assert 0.0 <= delay <= min(10.0, 0.5 * 2 ** (attempt - 1))


def test_retry_after_is_honoured_with_a_little_jitter() -> None:
    backoff = Backoff(attempts=4, base=0.5, cap=10.0, max_retry_after=60.0)
    assert backoff.delay(1, retry_after=7.0, rand=lambda: 0.0) == 7.0
    assert backoff.delay(3, retry_after=7.0, rand=lambda: 1.0) == 7.0 + 2.0 / 4
    rng = random.Random(7)
    for attempt in (1, 2, 3):
        delay = backoff.delay(attempt, retry_after=12.5, rand=rng.random)
        assert delay is not None and 12.5 <= delay <= 12.5 + 10.0 / 4


def test_retry_after_zero_still_waits_no_less_than_zero() -> None:
    delay = Backoff().delay(1, retry_after=0.0, rand=lambda: 0.5)
    assert delay is not None and delay >= 0.0


def test_too_long_retry_after_ends_the_retries() -> None:
    backoff = Backoff(attempts=4, max_retry_after=60.0)
    assert backoff.delay(1, retry_after=60.0, rand=lambda: 0.0) == 60.0
    assert backoff.delay(1, retry_after=60.5) is None
    assert backoff.delay(1, retry_after=float("inf")) is None


def test_retry_after_does_not_extend_the_attempts() -> None:
    assert Backoff(attempts=2).delay(2, retry_after=1.0) is None


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"x-retry-after": "3"}, 3.0),
        ({"X-Retry-After": "2.5"}, 2.5),
        ({"Retry-After": "120"}, 120.0),
        ({"retry-after": "-4"}, 0.0),
        ({"x-retry-after": "5", "Retry-After": "99"}, 5.0),  # AAC's own header wins
        ({"x-retry-after": "soon", "Retry-After": "9"}, 9.0),  # an unreadable one is skipped
        ({"Retry-After": "whenever"}, None),
        ({}, None),
        ({"x-rate-limit-user-reset": "1800000060"}, None),
    ],
)
def test_parse_retry_after_seconds(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=fixed_now) == expected


def test_parse_retry_after_http_date() -> None:
    later = format_datetime(datetime.fromtimestamp(NOW + 42, tz=timezone.utc), usegmt=True)
    assert later.endswith("GMT")
    assert parse_retry_after({"Retry-After": later}, now=fixed_now) == pytest.approx(42.0)


def test_parse_retry_after_http_date_in_the_past_is_zero() -> None:
    earlier = format_datetime(datetime.fromtimestamp(NOW - 42, tz=timezone.utc), usegmt=True)
    assert parse_retry_after({"Retry-After": earlier}, now=fixed_now) == 0.0


def test_parsed_http_date_feeds_the_backoff() -> None:
    far = format_datetime(datetime.fromtimestamp(NOW + 3600, tz=timezone.utc), usegmt=True)
    near = format_datetime(datetime.fromtimestamp(NOW + 4, tz=timezone.utc), usegmt=True)
    backoff = Backoff(attempts=4, max_retry_after=60.0)
    assert backoff.delay(1, parse_retry_after({"Retry-After": far}, now=fixed_now)) is None
    delay = backoff.delay(1, parse_retry_after({"Retry-After": near}, now=fixed_now))
    assert delay is not None and delay >= 4.0
