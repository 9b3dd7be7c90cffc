"""AACTokenHealthOperator in-process: levels, what it logs, what it returns, and what it never shows.

The connection comes from an ``AIRFLOW_CONN_*`` variable: the operator only reads. The
task's log is Airflow's structlog output on the captured streams, read as text.
"""

from __future__ import annotations

import json
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any

import jwt
import pytest

from airflow_provider_aac.errors import AACConfigError, AACTokenDeadlineError
from airflow_provider_aac.operators.token_health import AACTokenHealthOperator
from tests.operators.aac_env import context_for

try:
    from airflow.sdk.exceptions import AirflowFailException
except ImportError:  # pragma: no cover - Airflow 3.0
    from airflow.exceptions import AirflowFailException

CONN_ID = "aac_health"
# Made at run time, never committed: the health check must not show either of them.
ACCESS = jwt.encode({"secret": "access"}, secrets.token_hex(16), algorithm="HS256")
REFRESH = secrets.token_urlsafe(36)
RENEW = "Generate a new token pair in AAC under Preferences > OAuth 2.0 API Tokens"


def _iso(delta: timedelta) -> str:
    return (datetime.now(timezone.utc) + delta).isoformat()


@pytest.fixture
def connection(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Define the connection ``aac_health`` with the given extra (tokens added), or another type."""

    def define(conn_type: str = "aac", **extra: Any) -> None:
        body = {
            "conn_type": conn_type,
            "host": "https://us1.alteryxcloud.com",
            "extra": {"access_token": ACCESS, "refresh_token": REFRESH, **extra},
        }
        monkeypatch.setenv(f"AIRFLOW_CONN_{CONN_ID.upper()}", json.dumps(body))

    return define


def _run(capsys: pytest.CaptureFixture[str], **kwargs: Any) -> tuple[dict[str, Any], str]:
    op = AACTokenHealthOperator(task_id="check_token_health", aac_conn_id=CONN_ID, **kwargs)
    capsys.readouterr()
    report = op.execute(context_for())
    captured = capsys.readouterr()
    return report, captured.out + captured.err


def _lines(output: str, level: str) -> list[str]:
    """The operator's own log lines at ``level`` (not the SDK's note about running outside a task)."""
    return [
        line
        for line in output.splitlines()
        if f"[{level}" in line
        and "AACTokenHealthOperator" in line
        and "outside of the Task Runner" not in line
    ]


def test_ok_logs_info_and_succeeds(connection: Any, capsys: pytest.CaptureFixture[str]) -> None:
    connection(refresh_expires_at=_iso(timedelta(days=60)))
    report, output = _run(capsys)
    assert report["level"] == "ok" and 59.9 < report["days_left"] <= 60
    assert not _lines(output, "warning") and not _lines(output, "error")
    assert any("expires at" in line for line in _lines(output, "info"))


def test_warn_logs_a_warning_and_succeeds(connection: Any, capsys: pytest.CaptureFixture[str]) -> None:
    connection(refresh_expires_at=_iso(timedelta(days=10)))
    report, output = _run(capsys, warn_days=14, fail_days=3)
    assert report["level"] == "warn"
    (warning,) = _lines(output, "warning")
    assert f"The refresh token of connection {CONN_ID!r} expires at" in warning and RENEW in warning


def test_fail_fails_the_task_without_retries(connection: Any, capsys: pytest.CaptureFixture[str]) -> None:
    connection(refresh_expires_at=_iso(timedelta(days=2)))
    with pytest.raises(AACTokenDeadlineError) as caught:
        _run(capsys, warn_days=14, fail_days=3)
    assert isinstance(caught.value, AirflowFailException)  # Airflow does not retry it into silence
    assert RENEW in str(caught.value) and "in 48.0 hours" in str(caught.value)
    output = capsys.readouterr()
    assert any(RENEW in line for line in _lines(output.out + output.err, "error"))


def test_expired_fails(connection: Any, capsys: pytest.CaptureFixture[str]) -> None:
    connection(refresh_expires_at="2020-01-01")
    with pytest.raises(AACTokenDeadlineError, match=r"expired at 2020-01-01T00:00:00\.000"):
        _run(capsys)


def test_unknown_succeeds_with_an_info_message(connection: Any, capsys: pytest.CaptureFixture[str]) -> None:
    connection()
    report, output = _run(capsys)
    assert report["level"] == "unknown" and report["refresh_expires_at"] is None
    assert not _lines(output, "warning") and not _lines(output, "error")
    assert any("records no refresh-token deadline" in line for line in _lines(output, "info"))


def test_reports_the_chain_bookkeeping_and_never_a_token(
    connection: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    long_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    marker = {
        "attempt_id": "a1",
        "by": "worker-7:4242",
        "started_at": long_ago.isoformat(),
        "lease_until": (long_ago + timedelta(minutes=2)).isoformat(),
        "generation": 41,
    }
    connection(
        refresh_expires_at=_iso(timedelta(days=100)),
        generation=42,
        refreshed_at="2026-01-02T03:04:05.000+00:00",
        refreshed_by="worker-3:1234",
        refreshed_mode="lock",
        refresh_in_flight=marker,
        last_interrupted_refresh={**marker, "by": "worker-1:99"},
    )
    report, output = _run(capsys)
    assert report["generation"] == 42
    assert report["refreshed_at"] == "2026-01-02T03:04:05.000+00:00"
    assert report["refreshed_by"] == "worker-3:1234" and report["refreshed_mode"] == "lock"
    assert report["refresh_in_flight"].endswith("by worker-7:4242")
    assert report["last_interrupted_refresh"].endswith("by worker-1:99")
    assert any(
        "token generation 42, last refreshed at 2026-01-02" in line
        and "by worker-3:1234 in lock mode" in line
        for line in _lines(output, "info")
    )
    warnings = _lines(output, "warning")
    assert any("by worker-7:4242 was interrupted" in line for line in warnings)
    assert any("an earlier refresh was interrupted" in line for line in warnings)
    for secret in (ACCESS, REFRESH):
        assert secret not in output and secret not in json.dumps(report)


def test_a_refresh_that_recorded_no_mode_reports_it_as_unknown(
    connection: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(generation=3, refreshed_at="2026-01-02T03:04:05.000+00:00", refreshed_by="worker-3:1234")
    report, output = _run(capsys)
    assert report["refreshed_by"] == "worker-3:1234" and report["refreshed_mode"] is None
    assert any("by worker-3:1234 in an unrecorded mode" in line for line in _lines(output, "info"))
    assert not _lines(output, "error")


def test_a_refresh_under_way_is_not_called_interrupted(
    connection: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    now = datetime.now(timezone.utc)
    connection(
        refresh_in_flight={
            "attempt_id": "a2",
            "by": "worker-2:1",
            "started_at": now.isoformat(),
            "lease_until": (now + timedelta(minutes=2)).isoformat(),
            "generation": 0,
        }
    )
    _, output = _run(capsys)
    assert any("is still under way" in line for line in _lines(output, "info"))
    assert not _lines(output, "warning")


def test_wrong_connection_type_fails_with_the_fix(
    connection: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(conn_type="http")
    with pytest.raises(
        AACConfigError, match=r"has type 'http', not 'aac'\. Recreate it with --conn-type aac"
    ):
        _run(capsys)


def test_unreadable_deadline_fails_instead_of_switching_the_alarm_off(
    connection: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(refresh_expires_at="31.03.2026")
    with pytest.raises(AACConfigError, match="not an ISO 8601 date"):
        _run(capsys)


@pytest.mark.parametrize(
    ("extra", "warned"),
    [
        ({"refresh_mode": "single_writer"}, True),
        ({}, True),  # auto without a lock: single-writer on workers
        ({"lock_conn_id": "redis_lock"}, False),  # auto with a lock: workers refresh themselves
        ({"refresh_mode": "metadata_db"}, False),
        ({"refresh_mode": "single_writer", "refresh_dag_id": "my_refresh"}, False),  # names this DAG
    ],
)
def test_a_connection_naming_another_refresh_dag_is_reported(
    connection: Any, capsys: pytest.CaptureFixture[str], extra: dict[str, Any], warned: bool
) -> None:
    connection(**extra)
    _, output = _run(capsys, refresh_dag_id="my_refresh")
    hits = [line for line in _lines(output, "warning") if "set refresh_dag_id to 'my_refresh'" in line]
    assert bool(hits) is warned


def test_thresholds_are_checked_when_the_dag_is_defined() -> None:
    with pytest.raises(AACConfigError, match=r"warn_days \(1\) must be at least fail_days \(3\)"):
        AACTokenHealthOperator(task_id="h", warn_days=1, fail_days=3)


def _jwt_refresh_token(expires_in: timedelta) -> str:
    exp = int((datetime.now(timezone.utc) + expires_in).timestamp())
    return jwt.encode({"exp": exp, "jti": secrets.token_hex(8)}, secrets.token_hex(16), algorithm="HS256")


def test_the_refresh_tokens_own_exp_claim_is_the_deadline_when_none_is_recorded(
    connection: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(refresh_token=_jwt_refresh_token(timedelta(days=10)))
    report, output = _run(capsys, warn_days=14, fail_days=3)
    assert report["level"] == "warn" and report["refresh_expires_at_source"] == "refresh_token"
    assert 9.9 < report["days_left"] <= 10
    assert "eyJ" not in output + json.dumps(report)


def test_the_recorded_deadline_wins_over_the_tokens_claim(
    connection: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(
        refresh_token=_jwt_refresh_token(timedelta(days=2)), refresh_expires_at=_iso(timedelta(days=60))
    )
    report, _ = _run(capsys)
    assert report["level"] == "ok" and report["refresh_expires_at_source"] == "extra"
    assert 59.9 < report["days_left"] <= 60


def test_an_opaque_refresh_token_without_a_record_is_unknown(
    connection: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    connection()
    report, _ = _run(capsys)
    assert report["level"] == "unknown" and report["refresh_expires_at_source"] is None


def test_a_warning_calls_every_callback_even_after_one_fails(
    connection: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(refresh_expires_at=_iso(timedelta(days=10)))
    heard: list[dict[str, Any]] = []

    def broken(context: Any) -> None:
        raise RuntimeError("Slack is down")

    report, output = _run(capsys, on_warning_callback=[broken, lambda context: heard.append(context)])
    assert report["level"] == "warn"
    assert [context["aac_token_health"] for context in heard] == [report]
    assert "The token health warning callback" in output and "Slack is down" in output


def test_no_callback_runs_when_the_check_is_ok(connection: Any, capsys: pytest.CaptureFixture[str]) -> None:
    connection(refresh_expires_at=_iso(timedelta(days=60)))
    heard: list[Any] = []
    _run(capsys, on_warning_callback=heard.append)
    assert heard == []


def test_a_callback_that_is_not_callable_is_refused_where_the_dag_is_defined() -> None:
    with pytest.raises(AACConfigError, match="on_warning_callback must be a callable or a notifier"):
        AACTokenHealthOperator(task_id="check", on_warning_callback=["slack"])


def test_the_family_cap_warns_before_a_later_sliding_deadline(
    connection: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    connection(
        refresh_expires_at=_iso(timedelta(days=30)), refresh_family_expires_at=_iso(timedelta(days=10))
    )
    report, output = _run(capsys, warn_days=14, fail_days=3)
    assert report["level"] == "warn" and report["refresh_expires_at_source"] == "refresh_family_expires_at"
    assert 9.9 < report["days_left"] <= 10
    warnings = _lines(output, "warning")
    assert any("absolute cap" in line and "no refresh succeeds" in line for line in warnings), output
