"""The refresh-deadline verdict: pure, so every boundary is checked without Airflow."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import pytest

from airflow_provider_aac.core.errors import AACConfigError
from airflow_provider_aac.core.token_health import (
    DAY,
    FROM_EXTRA,
    FROM_FAMILY_CAP,
    HealthLevel,
    assess_refresh_deadline,
    check_thresholds,
    parse_refresh_deadline,
    refresh_deadline,
)

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc).timestamp()
RENEW = "Generate a new token pair in AAC under Preferences > OAuth 2.0 API Tokens"


def _assess(days_left: float | None, warn: float = 14, fail: float = 3) -> Any:
    deadline = None if days_left is None else NOW + days_left * DAY
    return assess_refresh_deadline(deadline, NOW, warn, fail, conn_id="aac_prod")


@pytest.mark.parametrize(
    ("days_left", "level"),
    [
        (30, HealthLevel.OK),
        (14.01, HealthLevel.OK),
        (14, HealthLevel.WARN),  # the boundary day already warns
        (3.01, HealthLevel.WARN),
        (3, HealthLevel.FAIL),
        (0.01, HealthLevel.FAIL),
        (0, HealthLevel.FAIL),
        (-5, HealthLevel.FAIL),  # already expired
        (None, HealthLevel.UNKNOWN),
    ],
)
def test_levels_and_boundaries(days_left: float | None, level: HealthLevel) -> None:
    health = _assess(days_left)
    assert health.level is level
    if days_left is not None:
        assert health.days_left == pytest.approx(days_left)


@pytest.mark.parametrize("days_left", [14, 2, -1])
def test_warn_and_fail_say_what_to_do(days_left: float) -> None:
    message = _assess(days_left).message
    assert RENEW in message
    assert "connection 'aac_prod'" in message and "refresh_expires_at" in message


def test_expired_says_so() -> None:
    message = _assess(-1).message
    assert "expired at 2026-02-28T12:00:00.000+00:00" in message and "every refresh will now fail" in message


def test_ok_names_the_date_and_when_warnings_start() -> None:
    health = _assess(30)
    assert "expires at 2026-03-31T12:00:00.000+00:00, in 30 days" in health.message
    assert "a warning starts 14 days before" in health.message
    assert RENEW not in health.message


def test_unknown_says_how_to_record_the_deadline() -> None:
    health = _assess(None)
    assert "records no refresh-token deadline" in health.message
    assert "Add the key refresh_expires_at" in health.message and "2026-03-31" in health.message
    assert health.as_dict() == {
        "level": "unknown",
        "message": health.message,
        "refresh_expires_at": None,
        "days_left": None,
    }


def test_short_remaining_times_read_in_hours_and_minutes() -> None:
    assert "in 36.0 hours" in _assess(1.5).message
    assert "in 30 minutes" in _assess(30 / 1440).message


def test_zero_fail_days_fails_only_when_expired() -> None:
    assert _assess(0.5, warn=7, fail=0).level is HealthLevel.WARN
    assert _assess(-0.1, warn=7, fail=0).level is HealthLevel.FAIL


def test_as_dict_is_plain_data() -> None:
    data = _assess(10).as_dict()
    assert data["level"] == "warn" and data["days_left"] == 10.0
    assert data["refresh_expires_at"] == "2026-03-11T12:00:00.000+00:00"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("2026-03-31", datetime(2026, 3, 31, tzinfo=timezone.utc)),  # a date: the start of that day, UTC
        ("2026-03-31T09:30:00Z", datetime(2026, 3, 31, 9, 30, tzinfo=timezone.utc)),
        ("2026-03-31T09:30:00+02:00", datetime(2026, 3, 31, 7, 30, tzinfo=timezone.utc)),
        (" 2026-03-31T09:30:00 ", datetime(2026, 3, 31, 9, 30, tzinfo=timezone.utc)),  # naive: UTC
    ],
)
def test_deadline_formats(raw: str, expected: datetime) -> None:
    assert parse_refresh_deadline(raw) == expected.timestamp()


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_missing_deadline_is_none(raw: Any) -> None:
    assert parse_refresh_deadline(raw) is None


@pytest.mark.parametrize("raw", ["31/03/2026", "next year", 20260331, ["2026-03-31"]])
def test_unreadable_deadline_is_an_error_not_silence(raw: Any) -> None:
    with pytest.raises(AACConfigError, match=r"Connection 'c' has refresh_expires_at .* not an ISO 8601"):
        parse_refresh_deadline(raw, conn_id="c")


@pytest.mark.parametrize(
    ("warn", "fail", "message"),
    [
        (2, 3, "warn_days (2) must be at least fail_days (3)"),
        (-1, 0, "warn_days must be a number of days >= 0"),
        (14, float("nan"), "fail_days must be a number of days >= 0"),
        ("14", 3, "warn_days must be a number"),
        (True, 0, "warn_days must be a number"),
    ],
)
def test_bad_thresholds(warn: Any, fail: Any, message: str) -> None:
    with pytest.raises(AACConfigError) as caught:
        check_thresholds(warn, fail)
    assert message in str(caught.value)
    with pytest.raises(AACConfigError):
        assess_refresh_deadline(NOW, NOW, warn, fail)


def test_equal_thresholds_are_allowed() -> None:
    assert check_thresholds(3, 3) == (3.0, 3.0)
    assert _assess(2, warn=3, fail=3).level is HealthLevel.FAIL


# --------------------------------------------------------------------------- the family's cap


def test_the_cap_is_the_deadline_when_it_comes_first() -> None:
    extra = {"refresh_expires_at": "2026-04-30", "refresh_family_expires_at": "2026-03-10"}
    deadline, source = refresh_deadline(extra, "aac_prod")
    assert (deadline, source) == (datetime(2026, 3, 10, tzinfo=timezone.utc).timestamp(), FROM_FAMILY_CAP)

    health = assess_refresh_deadline(deadline, NOW, 14, 3, conn_id="aac_prod", source=source)
    assert health.level is HealthLevel.WARN
    assert "The token family of connection 'aac_prod' (its absolute cap, refresh_family_expires_at)" in (
        health.message
    )
    assert "no refresh succeeds however recently the token rotated" in health.message
    assert RENEW in health.message


def test_the_refresh_tokens_deadline_wins_when_it_comes_first() -> None:
    extra = {"refresh_expires_at": "2026-03-10", "refresh_family_expires_at": "2026-08-30"}
    deadline, source = refresh_deadline(extra, "aac_prod")
    assert source == FROM_EXTRA
    assert deadline == datetime(2026, 3, 10, tzinfo=timezone.utc).timestamp()


def test_a_cap_alone_is_a_deadline_and_an_unreadable_one_is_an_error() -> None:
    assert refresh_deadline({"refresh_family_expires_at": "2026-08-30"}, "c")[1] == FROM_FAMILY_CAP
    assert refresh_deadline({}, "c") == (None, None)
    with pytest.raises(AACConfigError, match="refresh_family_expires_at 'soon'"):
        refresh_deadline({"refresh_family_expires_at": "soon"}, "c")
