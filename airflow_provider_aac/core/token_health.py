"""How close the refresh token is to its own deadline, and what the user should do about it.

AAC lets the user choose a refresh-token lifetime of 1 to 365 days when they generate a
pair, and never tells a client what they chose. Once that deadline passes no refresh can
succeed, the chain is dead, and only a person in the AAC UI can start a new one. The
deadline is therefore the one failure the provider cannot prevent, only announce: the
user records it in the connection (extra key ``refresh_expires_at``) and the health check
turns it into a warning, then a task failure, early enough to act.

Whether AAC's deadline slides with each rotation or stays fixed from "Generate" is
unconfirmed, so the recorded date is read as fixed: the earliest it can be.

No Airflow imports: this is pure decision logic, tested without Airflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from airflow_provider_aac.core.errors import AACConfigError
from airflow_provider_aac.core.token_state import parse_utc_iso, utc_iso

REFRESH_EXPIRES_AT = "refresh_expires_at"
DAY = 86400.0

RENEW_STEPS = (
    "Generate a new token pair in AAC under Preferences > OAuth 2.0 API Tokens, then update the "
    "connection {conn_id!r} with it (access_token, refresh_token) and set refresh_expires_at to the "
    "new pair's expiry date."
)
RECORD_STEPS = (
    "Connection {conn_id!r} records no refresh-token deadline, so nobody will be warned before the "
    "token chain expires. Add the key refresh_expires_at to its extra: the date the pair you generated "
    'in AAC expires, in ISO 8601 (e.g. "2026-03-31" or "2026-03-31T09:00:00Z").'
)


class HealthLevel(str, Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class TokenHealth:
    """A verdict that is safe to log and to return as XCom: dates and words, never tokens."""

    level: HealthLevel
    message: str
    deadline: float | None = None
    seconds_left: float | None = None

    @property
    def days_left(self) -> float | None:
        return None if self.seconds_left is None else self.seconds_left / DAY

    def as_dict(self) -> dict[str, Any]:
        return {
            "level": self.level.value,
            "message": self.message,
            "refresh_expires_at": None if self.deadline is None else utc_iso(self.deadline),
            "days_left": None if self.days_left is None else round(self.days_left, 2),
        }


def check_thresholds(warn_days: Any, fail_days: Any) -> tuple[float, float]:
    """Validate the two thresholds once, where the DAG is defined, not at 3 a.m. in a task."""
    values = []
    for name, value in (("warn_days", warn_days), ("fail_days", fail_days)):
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
            or value < 0
        ):
            raise AACConfigError(f"{name} must be a number of days >= 0, not {value!r}.")
        values.append(float(value))
    warn, fail = values
    if warn < fail:
        raise AACConfigError(
            f"warn_days ({warn_days}) must be at least fail_days ({fail_days}): the warning comes first, "
            "then the failure."
        )
    return warn, fail


def parse_refresh_deadline(value: Any, *, conn_id: str = "aac_default") -> float | None:
    """The recorded deadline as epoch seconds; None when not recorded.

    A value that is present but unreadable is an error, not "unknown": a typo would
    otherwise switch the alarm off silently. A date without a time counts from the start
    of that day in UTC, the earliest moment it can mean.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    parsed = parse_utc_iso(value.strip()) if isinstance(value, str) else None
    if parsed is None:
        raise AACConfigError(
            f"Connection {conn_id!r} has refresh_expires_at {value!r}, which is not an ISO 8601 date or "
            'date and time. Use a value such as "2026-03-31" or "2026-03-31T09:00:00Z".'
        )
    return parsed


def assess_refresh_deadline(
    deadline_epoch: float | None,
    now: float,
    warn_days: float,
    fail_days: float,
    *,
    conn_id: str = "aac_default",
) -> TokenHealth:
    """ok, warn (within ``warn_days``), fail (within ``fail_days``, or past), or unknown (not recorded).

    Failing before the deadline, rather than at it, is the point: a failed task is what
    Airflow's alerting reports, and the person who must act needs days, not minutes.
    """
    warn, fail = check_thresholds(warn_days, fail_days)
    renew = RENEW_STEPS.format(conn_id=conn_id)
    if deadline_epoch is None:
        return TokenHealth(HealthLevel.UNKNOWN, RECORD_STEPS.format(conn_id=conn_id))
    left = deadline_epoch - now
    when = utc_iso(deadline_epoch)
    if left <= 0:
        level, text = HealthLevel.FAIL, f"expired at {when}; every refresh will now fail"
    elif left <= fail * DAY:
        level, text = HealthLevel.FAIL, f"expires at {when}, in {_days(left)}"
    elif left <= warn * DAY:
        level, text = HealthLevel.WARN, f"expires at {when}, in {_days(left)}"
    else:
        return TokenHealth(
            HealthLevel.OK,
            f"The refresh token of connection {conn_id!r} expires at {when}, in {_days(left)}; "
            f"a warning starts {_days(warn * DAY)} before.",
            deadline_epoch,
            left,
        )
    return TokenHealth(
        level, f"The refresh token of connection {conn_id!r} {text}. {renew}", deadline_epoch, left
    )


def _days(seconds: float) -> str:
    days = seconds / DAY
    if days >= 2:
        return f"{days:.0f} days"
    hours = seconds / 3600
    return f"{hours:.1f} hours" if hours >= 1 else f"{max(seconds, 0) / 60:.0f} minutes"
