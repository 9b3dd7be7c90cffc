"""TokenState: the extra as store, the fingerprint rule, and when a token counts as fresh."""

from __future__ import annotations

import json
import time
from typing import Any

import jwt
import pytest

from airflow_provider_aac.core.errors import AACConfigError
from airflow_provider_aac.core.token_grant import TokenGrant
from airflow_provider_aac.core.token_state import (
    DEFAULT_MIN_TTL,
    IN_FLIGHT,
    LAST_INTERRUPTED,
    MAINTAINED_KEYS,
    MAX_CLOCK_SKEW,
    InFlight,
    TokenState,
    effective_min_ttl,
    fingerprint,
    parse_extra,
    parse_utc_iso,
    utc_iso,
)

T0 = 1_800_000_000.0  # a fixed "now", whole milliseconds so ISO round trips are exact


def unsigned_jwt(**claims: Any) -> str:
    return jwt.encode(claims, key=None, algorithm="none")


def pair(exp: float, iat: float, tag: str = "a") -> tuple[str, str]:
    """A hand-made access token (with a distinguishing claim) and a dummy refresh token."""
    access = unsigned_jwt(iss="https://x.test/as", client_id="cid", exp=int(exp), iat=int(iat), tag=tag)
    return access, f"refresh-{tag}-" + "r" * 20


def full_state(access: str, refresh: str) -> TokenState:
    return TokenState(
        TokenGrant(access, refresh, 300.0),
        generation=7,
        access_expires_at=T0 + 123.456,
        access_fingerprint=fingerprint(access),
        refreshed_at=T0 - 176.5,
        refreshed_by="worker-1:42",
        refreshed_mode="lock",
        in_flight=InFlight(
            attempt_id="abc", by="worker-2:7", started_at=T0 - 1.25, lease_until=T0 + 110.0, generation=7
        ),
    )


# --------------------------------------------------------------------------- round trip


def test_round_trip_keeps_every_field_and_the_users_keys() -> None:
    access, refresh = pair(T0 + 300, T0)
    state = full_state(access, refresh)
    users = {
        "access_token": "old",
        "refresh_token": "old",
        "client_id": "cid",
        "token_url": "https://x.test/as/token",
        "min_ttl": 60,
        "nested": {"keep": [1, 2, 3]},
        "generation": 3,  # ours: replaced
    }
    merged = state.merged_into(users)
    # What a store does: serialise and parse again.
    again = TokenState.from_extra(json.loads(json.dumps(merged)), conn_id="c")
    equal = again == state  # compared outside the assert: a diff would show the tokens
    assert equal
    for key in ("client_id", "token_url", "min_ttl", "nested"):
        assert merged[key] == users[key]
    assert merged["generation"] == 7
    assert users["generation"] == 3, "merged_into must not modify its argument"


# An extra exactly as the provider wrote it before the grant was its own type (every
# maintained key set), the way existing deployments hold it.
EXTRA_WRITTEN_EARLIER = (
    '{"client_id": "cid", "min_ttl": 60, "access_token": "stored.access.token", '
    '"refresh_token": "stored-refresh", "generation": 7, "access_expires_at": "2027-01-15T08:02:03.456+00:00", '
    '"access_lifetime": 300.0, "access_fingerprint": "15451f399e6cd31b", '
    '"refreshed_at": "2027-01-15T07:57:03.500+00:00", "refreshed_by": "worker-1:42", "refreshed_mode": "lock", '
    '"refresh_in_flight": {"attempt_id": "abc", "by": "worker-2:7", "started_at": "2027-01-15T07:59:58.750+00:00", '
    '"lease_until": "2027-01-15T08:01:50.000+00:00", "generation": 7, "spends": "fedcba9876543210"}, '
    '"last_interrupted_refresh": {"attempt_id": "x"}, '
    '"dead_chain": {"spends": "0011223344556677", "at": "2027-01-15T07:00:00.000+00:00", "by": "worker-3:9"}}'
)


def test_an_extra_written_by_an_earlier_version_loads_and_is_written_back_unchanged() -> None:
    extra = json.loads(EXTRA_WRITTEN_EARLIER)
    state = TokenState.from_extra(extra, conn_id="c")
    grant = state.grant == TokenGrant("stored.access.token", "stored-refresh", 300.0)
    assert grant and state.access_lifetime == 300.0
    assert (state.generation, state.access_expires_at, state.refreshed_at) == (7, T0 + 123.456, T0 - 176.5)
    assert state.has_recorded_expiry and state.chain_is_dead is False
    assert state.in_flight is not None and state.in_flight.spends == "fedcba9876543210"
    assert state.dead_chain is not None and state.dead_chain.by == "worker-3:9"
    same = json.dumps(state.merged_into(extra)) == EXTRA_WRITTEN_EARLIER
    assert same, "the stored format changed: deployments and older versions would not read it alike"


def test_a_stored_pair_has_both_tokens() -> None:
    with pytest.raises(ValueError, match="both tokens"):
        TokenState(TokenGrant("a.b.c", None))


def test_a_pair_refreshed_before_the_mode_was_recorded_reads_the_mode_as_unknown() -> None:
    access, refresh = pair(T0 + 300, T0)
    older = full_state(access, refresh).merged_into({})
    del older["refreshed_mode"]
    state = TokenState.from_extra(older, conn_id="c")
    assert state.refreshed_mode is None and state.refreshed_by == "worker-1:42"
    assert "refreshed_mode" not in state.merged_into(older)


def test_merged_into_drops_maintained_keys_that_are_now_empty() -> None:
    access, refresh = pair(T0 + 300, T0)
    stale = full_state(access, refresh).merged_into({"custom": 1})
    cleared = TokenState(TokenGrant(access, refresh), generation=8).merged_into(stale)
    dropped = [key for key in (IN_FLIGHT, "access_expires_at", "access_fingerprint") if key not in cleared]
    assert dropped == [IN_FLIGHT, "access_expires_at", "access_fingerprint"]
    assert cleared["generation"] == 8 and cleared["custom"] == 1


def test_merged_into_keeps_the_last_interrupted_record() -> None:
    access, refresh = pair(T0 + 300, T0)
    record = {"attempt_id": "x", "by": "h:1", "started_at": utc_iso(T0), "lease_until": utc_iso(T0)}
    merged = TokenState(TokenGrant(access, refresh)).merged_into({LAST_INTERRUPTED: record})
    assert merged[LAST_INTERRUPTED] == record


def test_maintained_keys_never_contain_token() -> None:
    # Airflow masks extra keys that contain "token"; these must stay readable over REST.
    assert all("token" not in key for key in MAINTAINED_KEYS)


def test_repr_shows_no_token() -> None:
    access, refresh = pair(T0 + 300, T0)
    text = repr(full_state(access, refresh))
    leaked = access in text or refresh in text
    assert not leaked
    assert "generation=7" in text


# --------------------------------------------------------------------------- reading the extra


@pytest.mark.parametrize(
    ("extra", "missing"),
    [
        ({}, "no access_token and no refresh_token"),
        ({"access_token": "a.b.c"}, "no refresh_token"),
        ({"refresh_token": "r"}, "no access_token"),
        ({"access_token": "  ", "refresh_token": "r"}, "no access_token"),
        ({"access_token": "a.b.c", "refresh_token": 12345}, "no refresh_token"),
    ],
)
def test_missing_tokens_tell_how_to_store_a_new_pair(extra: dict[str, Any], missing: str) -> None:
    with pytest.raises(AACConfigError) as info:
        TokenState.from_extra(extra, conn_id="aac_x")
    message = str(info.value)
    assert f"Connection 'aac_x' has {missing} in its extra" in message
    assert "Preferences > OAuth 2.0 API Tokens > Generate" in message
    assert "airflow connections delete aac_x && airflow connections add aac_x --conn-type aac" in message


def test_pasted_whitespace_is_stripped() -> None:
    access, refresh = pair(T0 + 300, T0)
    state = TokenState.from_extra(
        {"access_token": f"  {access}\n", "refresh_token": f"\t{refresh} "}, conn_id="c"
    )
    same = state.access_token == access and state.refresh_token == refresh
    assert same


def test_garbage_in_maintained_keys_reads_as_unknown() -> None:
    access, refresh = pair(T0 + 300, T0)
    extra = {
        "access_token": access,
        "refresh_token": refresh,
        "generation": "many",
        "access_expires_at": "tomorrow",
        "access_lifetime": "long",
        "access_fingerprint": 42,
        "refreshed_at": 17,
        "refreshed_by": ["x"],
        "refreshed_mode": {"mode": "lock"},
        "refresh_in_flight": {"started_at": "nope"},
    }
    state = TokenState.from_extra(extra, conn_id="c")
    assert state.generation == 0
    assert state.access_expires_at is None and state.access_lifetime is None
    assert state.access_fingerprint is None and state.refreshed_at is None and state.refreshed_by is None
    assert state.refreshed_mode is None
    assert state.in_flight is None


def test_parse_extra() -> None:
    assert parse_extra(None, conn_id="c") == {}
    assert parse_extra("", conn_id="c") == {}
    original = {"a": 1}
    copy = parse_extra(original, conn_id="c")
    assert copy == original and copy is not original
    assert parse_extra('{"a": 1}', conn_id="c") == {"a": 1}
    with pytest.raises(AACConfigError, match="extra of connection 'c' is not valid JSON"):
        parse_extra("not json", conn_id="c")
    with pytest.raises(AACConfigError, match="must be a JSON object, not list"):
        parse_extra("[1, 2]", conn_id="c")


def test_utc_iso_round_trip_and_lenient_parsing() -> None:
    assert parse_utc_iso(utc_iso(T0 + 0.25)) == T0 + 0.25
    assert parse_utc_iso("2027-01-15T08:00:00Z") == parse_utc_iso("2027-01-15T08:00:00+00:00")
    assert parse_utc_iso("2027-01-15T08:00:00") == parse_utc_iso("2027-01-15T08:00:00+00:00")
    for bad in (None, "", "yesterday", 12, {}):
        assert parse_utc_iso(bad) is None


def test_in_flight_round_trip_and_describe() -> None:
    marker = InFlight(attempt_id="id1", by="host:1", started_at=T0, lease_until=T0 + 5, generation=3)
    assert InFlight.from_json(json.loads(json.dumps(marker.to_json()))) == marker
    assert marker.describe() == f"the refresh started at {utc_iso(T0)} by host:1"
    assert InFlight.from_json("x") is None
    assert InFlight.from_json({"started_at": utc_iso(T0)}) is None


# --------------------------------------------------------------------------- fingerprint rule


def test_recorded_expiry_wins_while_it_belongs_to_the_stored_token() -> None:
    access, refresh = pair(T0 + 3600, T0)  # the JWT says an hour
    state = TokenState(
        TokenGrant(access, refresh, 60.0),
        access_expires_at=T0 + 60,  # expires_in said a minute: trust it
        access_fingerprint=fingerprint(access),
    )
    assert state.expires_at() == T0 + 60
    assert state.lifetime() == 60.0


def test_recorded_expiry_is_ignored_when_the_user_pasted_a_new_pair() -> None:
    old_access, old_refresh = pair(T0 - 3000, T0 - 3300, tag="old")
    stored = TokenState(
        TokenGrant(old_access, old_refresh, 300.0),
        generation=4,
        access_expires_at=T0 - 3000,  # recorded: long expired
        access_fingerprint=fingerprint(old_access),
    ).merged_into({})
    new_access, new_refresh = pair(T0 + 3600, T0, tag="new")
    stored.update(access_token=new_access, refresh_token=new_refresh)  # the user's edit
    state = TokenState.from_extra(stored, conn_id="c")
    # The recorded (expired) values belong to the old token: the new JWT decides.
    assert state.expires_at() == T0 + 3600 - MAX_CLOCK_SKEW
    assert state.lifetime() == 3600.0
    assert state.is_fresh(T0, None)


def test_recorded_future_expiry_does_not_keep_a_pasted_expired_token_alive() -> None:
    old_access, refresh = pair(T0 + 3600, T0, tag="old")
    stored = TokenState(
        TokenGrant(old_access, refresh, 3600.0),
        access_expires_at=T0 + 3600,
        access_fingerprint=fingerprint(old_access),
    ).merged_into({})
    expired, _ = pair(T0 - 10, T0 - 310, tag="pasted")
    stored["access_token"] = expired
    state = TokenState.from_extra(stored, conn_id="c")
    assert not state.is_fresh(T0, None)


@pytest.mark.parametrize(
    ("lifetime", "skew"),
    [(3600.0, MAX_CLOCK_SKEW), (300.0, MAX_CLOCK_SKEW), (100.0, 10.0), (2.0, 0.2)],
)
def test_jwt_expiry_has_a_skew_margin_of_at_most_a_tenth_of_the_lifetime(
    lifetime: float, skew: float
) -> None:
    access, refresh = pair(T0 + lifetime, T0)
    state = TokenState(TokenGrant(access, refresh))
    assert state.expires_at() == pytest.approx(T0 + lifetime - skew)


def test_jwt_without_iat_gets_the_full_skew_margin() -> None:
    access = unsigned_jwt(exp=int(T0 + 3600))
    state = TokenState(TokenGrant(access, "r"))
    assert state.expires_at() == T0 + 3600 - MAX_CLOCK_SKEW


def test_unknown_expiry_counts_as_expired() -> None:
    access = unsigned_jwt(iss="https://x.test/as", client_id="cid")
    state = TokenState(TokenGrant(access, "r"))
    assert state.seconds_left(T0) == float("-inf")
    assert not state.is_fresh(T0, 0)
    assert state.seconds_left(T0) == float("-inf")


# --------------------------------------------------------------------------- freshness


@pytest.mark.parametrize(
    ("min_ttl", "lifetime", "expected"),
    [
        (None, None, DEFAULT_MIN_TTL),
        (None, 3600.0, DEFAULT_MIN_TTL),
        (None, 300.0, 150.0),  # AAC's observed 5-minute tokens: half, not all of it
        (600.0, 300.0, 150.0),
        (60.0, 300.0, 60.0),
        (0.0, 300.0, 0.0),
        (-5.0, 300.0, 0.0),
        ("90", None, 90.0),
        (10_000.0, 2.0, 1.0),
    ],
)
def test_effective_min_ttl(min_ttl: Any, lifetime: float | None, expected: float) -> None:
    assert effective_min_ttl(min_ttl, lifetime) == expected


@pytest.mark.parametrize("lifetime", [1.0, 2.0, 60.0, 299.0, 300.0, 301.0, 3600.0, 86400.0])
@pytest.mark.parametrize("min_ttl", [None, 0.0, 30.0, 300.0, 1e9])
def test_effective_min_ttl_never_exceeds_half_the_lifetime(lifetime: float, min_ttl: float | None) -> None:
    assert 0.0 <= effective_min_ttl(min_ttl, lifetime) <= lifetime / 2


def recorded(expires_at: float, lifetime: float) -> TokenState:
    access, refresh = pair(T0 + 10 * lifetime, T0)  # the JWT disagrees; the record must win
    return TokenState(
        TokenGrant(access, refresh, lifetime),
        access_expires_at=expires_at,
        access_fingerprint=fingerprint(access),
    )


def test_is_fresh_edges() -> None:
    state = recorded(T0 + 300.0, lifetime=600.0)
    assert state.is_fresh(T0, 300.0), "exactly min_ttl left still counts as fresh"
    assert not state.is_fresh(T0 + 0.001, 300.0)
    assert state.is_fresh(T0 + 299.0, 0.0)
    assert state.is_fresh(T0 + 300.0, 0.0)
    assert not state.is_fresh(T0 + 300.001, 0.0)
    # A min_ttl beyond half the lifetime is capped: 300 s left of 600 is fresh for any request.
    assert state.is_fresh(T0, 10_000.0)
    assert not state.is_fresh(T0 + 0.5, 10_000.0)


def test_default_min_ttl_applies_to_long_lived_tokens() -> None:
    state = recorded(T0 + DEFAULT_MIN_TTL, lifetime=3600.0)
    assert state.is_fresh(T0, None)
    assert not state.is_fresh(T0 + 1.0, None)


def test_short_tokens_are_used_for_half_their_life() -> None:
    issued = time.time()
    state = recorded(issued + 2.0, lifetime=2.0)
    assert state.is_fresh(issued + 0.99, None)
    assert not state.is_fresh(issued + 1.01, None)
