"""How close the refresh token is to its own deadline, and what the user should do about it.

AAC lets the user choose a refresh-token lifetime of 1 to 365 days when they generate a
pair, and never tells a client what they chose. Once that deadline passes no refresh can
succeed, the chain is dead, and only a person in the AAC UI can start a new one. The
deadline is therefore the one failure the provider cannot prevent, only announce: the
user records it in the connection (extra key ``refresh_expires_at``) and the health check
turns it into a warning, then a task failure, early enough to act.

Whether AAC's deadline slides with each rotation or stays fixed from "Generate" is
unconfirmed, so the recorded date is read as fixed: the earliest it can be.

AAC's token server is PingOne, where a sliding deadline has an absolute cap: a token
family can be refreshed only so long after "Generate" (``refreshTokenRollingDuration``,
default 180 days), however recently it rotated. PingOne does not send the cap in the
token answer, and a JWT refresh token's ``exp`` would show it only once it is nearer
than the sliding deadline (PingOne moves to opaque refresh tokens in 2027, its changelog
says), so the user records it too (extra key ``refresh_family_expires_at``) and the check
warns before whichever of the two deadlines comes first. Sources: PingOne, "Editing an
application - OIDC" (https://docs.pingidentity.com/pingone/applications/p1_edit_application_oidc.html);
the PingOne Platform API changelog
(https://developer.pingidentity.com/pingone-api/platform/changelog.html).

No Airflow imports: this is pure decision logic, tested without Airflow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Any

from airflow_provider_aac.core.errors import AACConfigError
from airflow_provider_aac.core.token_grant import refresh_token_expiry, text
from airflow_provider_aac.core.token_state import parse_utc_iso, utc_iso

REFRESH_EXPIRES_AT = "refresh_expires_at"
REFRESH_FAMILY_EXPIRES_AT = "refresh_family_expires_at"
DAY = 86400.0
# Where a deadline came from, as the health report names it.
FROM_EXTRA = "extra"
FROM_REFRESH_TOKEN = "refresh_token"
FROM_FAMILY_CAP = REFRESH_FAMILY_EXPIRES_AT

RENEW_STEPS = (
    "Generate a new token pair in AAC under Preferences > OAuth 2.0 API Tokens, then update the "
    "connection {conn_id!r} with it (access_token, refresh_token) and set refresh_expires_at to the "
    "new pair's expiry date (and refresh_family_expires_at to its cap, if AAC caps your token families)."
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


def parse_refresh_deadline(
    value: Any, *, conn_id: str = "aac_default", key: str = REFRESH_EXPIRES_AT
) -> float | None:
    """The recorded deadline (``key`` of the extra) as epoch seconds; None when not recorded.

    A value that is present but unreadable is an error, not "unknown": a typo would
    otherwise switch the alarm off silently. A date without a time counts from the start
    of that day in UTC, the earliest moment it can mean.
    """
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    parsed = parse_utc_iso(value.strip()) if isinstance(value, str) else None
    if parsed is None:
        raise AACConfigError(
            f"Connection {conn_id!r} has {key} {value!r}, which is not an ISO 8601 date or "
            'date and time. Use a value such as "2026-03-31" or "2026-03-31T09:00:00Z".'
        )
    return parsed


def refresh_deadline(extra: dict[str, Any], conn_id: str) -> tuple[float | None, str | None]:
    """The earliest deadline of the token chain, and where it came from (``FROM_*``), or (None, None).

    The refresh token's own deadline is ``refresh_expires_at``, else the ``exp`` claim of a
    JWT refresh token (the explicit setting wins); the family's absolute cap is
    ``refresh_family_expires_at``. Whichever comes first is the one to warn about.
    """
    own: float | None = parse_refresh_deadline(extra.get(REFRESH_EXPIRES_AT), conn_id=conn_id)
    source: str | None = FROM_EXTRA
    if own is None:
        token = text(extra.get("refresh_token"), strip=False)
        own, source = (refresh_token_expiry(token) if token else None), FROM_REFRESH_TOKEN
    cap = parse_refresh_deadline(
        extra.get(REFRESH_FAMILY_EXPIRES_AT), conn_id=conn_id, key=REFRESH_FAMILY_EXPIRES_AT
    )
    if cap is not None and (own is None or cap < own):
        return cap, FROM_FAMILY_CAP
    return own, None if own is None else source


def assess_refresh_deadline(
    deadline_epoch: float | None,
    now: float,
    warn_days: float,
    fail_days: float,
    *,
    conn_id: str = "aac_default",
    source: str | None = None,
) -> TokenHealth:
    """ok, warn (within ``warn_days``), fail (within ``fail_days``, or past), or unknown (not recorded).

    Failing before the deadline, rather than at it, is the point: a failed task is what
    Airflow's alerting reports, and the person who must act needs days, not minutes.
    ``source`` ``FROM_FAMILY_CAP`` words the message for the family's absolute cap.
    """
    warn, fail = check_thresholds(warn_days, fail_days)
    renew = RENEW_STEPS.format(conn_id=conn_id)
    if deadline_epoch is None:
        return TokenHealth(HealthLevel.UNKNOWN, RECORD_STEPS.format(conn_id=conn_id))
    left = deadline_epoch - now
    when = utc_iso(deadline_epoch)
    capped = source == FROM_FAMILY_CAP
    subject = (
        f"The token family of connection {conn_id!r} (its absolute cap, {REFRESH_FAMILY_EXPIRES_AT})"
        if capped
        else f"The refresh token of connection {conn_id!r}"
    )
    after = " however recently the token rotated" if capped else ""
    if left <= 0:
        level, words = HealthLevel.FAIL, f"expired at {when}; every refresh will now fail{after}"
    elif left <= fail * DAY:
        level, words = HealthLevel.FAIL, f"expires at {when}, in {_days(left)}"
    elif left <= warn * DAY:
        level, words = HealthLevel.WARN, f"expires at {when}, in {_days(left)}"
    else:
        return TokenHealth(
            HealthLevel.OK,
            f"{subject} expires at {when}, in {_days(left)}; a warning starts {_days(warn * DAY)} before.",
            deadline_epoch,
            left,
        )
    if capped and left > 0:
        words += f"; after it no refresh succeeds{after}"
    return TokenHealth(level, f"{subject} {words}. {renew}", deadline_epoch, left)


def _days(seconds: float) -> str:
    days = seconds / DAY
    if days >= 2:
        return f"{days:.0f} days"
    hours = seconds / 3600
    return f"{hours:.1f} hours" if hours >= 1 else f"{max(seconds, 0) / 60:.0f} minutes"
