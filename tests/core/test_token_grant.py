"""A token grant and its claims: real simulator JWTs and hand-made unsigned ones.

Hand-made tokens are built at run time with pyjwt (``alg: none``); no token is
committed. No assertion compares a token string directly, so a failure never prints one.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from typing import Any

import jwt
import pytest

from airflow_provider_aac.core.errors import AACConfigError
from airflow_provider_aac.core.oauth import resolve_token_endpoint
from airflow_provider_aac.core.token_grant import TokenGrant, read_claims, refresh_token_expiry
from airflow_provider_aac.testing.simulator import AACSimulator


def unsigned_jwt(**claims: Any) -> str:
    return jwt.encode(claims, key=None, algorithm="none")


def raw_jwt(payload: Any) -> str:
    """An unsigned JWT with any JSON payload, even one pyjwt would refuse to encode."""

    def part(value: Any) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(payload)}."


# --------------------------------------------------------------------------- real tokens


@pytest.mark.aac_simulator(access_ttl=300)
def test_simulator_token_claims_name_issuer_client_and_expiry(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    before = time.time()
    claims = read_claims(aac_token_pair["access_token"])
    assert claims.issuer == aac_simulator.issuer
    assert claims.client_id == aac_simulator.client_id
    assert claims.expires_at is not None and claims.issued_at is not None
    assert before - 2 <= claims.issued_at <= time.time()
    assert claims.lifetime == 300.0


@pytest.mark.aac_simulator(access_ttl=300)
def test_token_endpoint_resolves_from_real_token(
    aac_simulator: AACSimulator, aac_token_pair: dict[str, Any]
) -> None:
    claims = read_claims(aac_token_pair["access_token"])
    endpoint = resolve_token_endpoint(claims, token_url=None, client_id=None, conn_id="c")
    assert endpoint.url == aac_simulator.token_url
    assert endpoint.client_id == aac_simulator.client_id


# --------------------------------------------------------------------------- hand-made tokens


def test_unsigned_token_is_read_without_verification() -> None:
    now = int(time.time())
    claims = read_claims(
        unsigned_jwt(iss="https://pingauth.example.test/as", client_id="cid", iat=now, exp=now + 600)
    )
    assert claims.issuer == "https://pingauth.example.test/as"
    assert claims.client_id == "cid"
    assert claims.expires_at == float(now + 600)
    assert claims.lifetime == 600.0


def test_token_signed_with_an_unknown_key_and_algorithm_is_read() -> None:
    token = jwt.encode({"iss": "https://x.test/as", "exp": 2_000_000_000}, "k" * 64, algorithm="HS512")
    assert read_claims(token).issuer == "https://x.test/as"


def test_expired_token_is_still_read() -> None:
    # An expired access token is the normal reason to refresh; reading it must not fail.
    now = int(time.time())
    claims = read_claims(unsigned_jwt(iss="https://x.test/as", exp=now - 3600, iat=now - 7200))
    assert claims.expires_at == float(now - 3600)


def test_future_nbf_and_audience_do_not_stop_reading() -> None:
    now = int(time.time())
    claims = read_claims(unsigned_jwt(nbf=now + 1000, aud="someone-else", exp=now + 2000))
    assert claims.expires_at == float(now + 2000)


def test_missing_claims_read_as_none() -> None:
    claims = read_claims(unsigned_jwt(sub="someone"))
    assert (claims.issuer, claims.client_id, claims.expires_at, claims.issued_at) == (None, None, None, None)
    assert claims.lifetime is None


@pytest.mark.parametrize(
    "payload",
    [
        {"iss": 123, "client_id": ["x"], "exp": "soon", "iat": "earlier"},
        {"iss": "", "client_id": "", "exp": True, "iat": False},
        {"iss": None, "client_id": None, "exp": None, "iat": None},
    ],
)
def test_claims_of_the_wrong_type_are_ignored(payload: dict[str, Any]) -> None:
    claims = read_claims(raw_jwt(payload))
    assert (claims.issuer, claims.client_id, claims.expires_at, claims.issued_at) == (None, None, None, None)


def test_lifetime_needs_both_iat_and_exp() -> None:
    assert read_claims(unsigned_jwt(exp=2_000_000_000)).lifetime is None
    assert read_claims(unsigned_jwt(iat=2_000_000_000)).lifetime is None


# --------------------------------------------------------------------------- not a JWT


def _bad_tokens() -> list[tuple[str, str]]:
    good = unsigned_jwt(iss="https://x.test/as", client_id="cid")
    return [
        ("plain-text", "not-a-jwt-at-all"),
        ("three-garbage-parts", "abc.def.ghi"),
        ("empty", ""),
        ("bearer-prefix", "Bearer " + good),
        ("quoted", '"' + good + '"'),
        ("two-parts", good.rsplit(".", 2)[0]),
        ("payload-is-a-list", raw_jwt([1, 2])),
        ("payload-not-json", raw_jwt({}).split(".")[0] + ".bm90IGpzb24."),
    ]


@pytest.mark.parametrize(("label", "token"), _bad_tokens(), ids=[label for label, _ in _bad_tokens()])
def test_non_jwt_is_a_config_error_that_says_how_to_paste(label: str, token: str) -> None:
    with pytest.raises(AACConfigError) as info:
        read_claims(token, where="connection 'aac_x'")
    message = str(info.value)
    leaked = bool(token) and token in message
    assert not leaked, "the token itself must not appear in the error"
    assert "connection 'aac_x'" in message
    assert "is not a JWT" in message
    assert "three base64url parts" in message and "'Bearer ' prefix" in message
    assert info.value.__cause__ is None and info.value.__suppress_context__


# --------------------------------------------------------------------------- where to refresh


def test_missing_iss_is_a_config_error_naming_the_fix() -> None:
    claims = read_claims(unsigned_jwt(client_id="cid", exp=2_000_000_000))
    with pytest.raises(AACConfigError) as info:
        resolve_token_endpoint(claims, token_url=None, client_id=None, conn_id="aac_x")
    message = str(info.value)
    assert "'aac_x'" in message
    assert "no iss claim" in message
    assert "'token_url'" in message and "'client_id'" not in message
    assert "https://pingauth.alteryxcloud.com/as/token" in message


def test_missing_client_id_is_a_config_error_naming_the_fix() -> None:
    claims = read_claims(unsigned_jwt(iss="https://x.test/as"))
    with pytest.raises(AACConfigError) as info:
        resolve_token_endpoint(claims, token_url=None, client_id=None, conn_id="aac_x")
    message = str(info.value)
    assert "no client_id claim" in message and "'client_id'" in message and "'token_url'" not in message


def test_missing_both_names_both() -> None:
    claims = read_claims(unsigned_jwt(sub="x"))
    with pytest.raises(AACConfigError, match=r"no iss or client_id claim.*'token_url' and 'client_id'"):
        resolve_token_endpoint(claims, token_url=None, client_id=None, conn_id="aac_x")


def test_explicit_values_win_over_claims() -> None:
    claims = read_claims(unsigned_jwt(iss="https://claims.test/as/", client_id="from-claims"))
    assert resolve_token_endpoint(claims, token_url=None, client_id=None, conn_id="c").url == (
        "https://claims.test/as/token"
    )
    endpoint = resolve_token_endpoint(
        claims, token_url="https://explicit.test/as/token", client_id="explicit", conn_id="c"
    )
    assert (endpoint.url, endpoint.client_id) == ("https://explicit.test/as/token", "explicit")
    # With explicit values, a token without any claims still works.
    bare = read_claims(unsigned_jwt(sub="x"))
    assert resolve_token_endpoint(bare, token_url="http://127.0.0.1:1/t", client_id="c", conn_id="c")


@pytest.mark.parametrize("url", ["ftp://x.test/as/token", "pingauth.alteryxcloud.com/as/token", "https://"])
def test_token_url_that_is_not_http_is_a_config_error(url: str) -> None:
    claims = read_claims(unsigned_jwt(client_id="cid"))
    with pytest.raises(AACConfigError, match="is not an http\\(s\\) URL"):
        resolve_token_endpoint(claims, token_url=url, client_id=None, conn_id="aac_x")


def test_issuer_that_is_not_http_is_a_config_error() -> None:
    claims = read_claims(unsigned_jwt(iss="urn:example:issuer", client_id="cid"))
    with pytest.raises(AACConfigError, match="not an http\\(s\\) URL"):
        resolve_token_endpoint(claims, token_url=None, client_id=None, conn_id="aac_x")


def test_refresh_token_expiry_reads_the_exp_of_a_jwt_and_nothing_else() -> None:
    key = secrets.token_hex(16)
    assert refresh_token_expiry(jwt.encode({"exp": 1_900_000_000}, key, algorithm="HS256")) == 1_900_000_000
    assert refresh_token_expiry(jwt.encode({"sub": "x"}, key, algorithm="HS256")) is None
    assert refresh_token_expiry(secrets.token_urlsafe(48)) is None  # opaque, as AAC's may be
    assert refresh_token_expiry("not.a.jwt") is None


@pytest.mark.parametrize("mask", ["***", " *** ", "********"])
def test_airflows_mask_is_named_as_such_with_what_to_do(mask: str) -> None:
    with pytest.raises(AACConfigError) as info:
        read_claims(mask, where="connection 'aac_x'")
    message = str(info.value)
    assert "The access token in connection 'aac_x' is Airflow's mask" in message
    assert "Type both tokens into the form before pressing Test" in message
    assert "airflow aac status CONN_ID" in message


def test_token_grant_repr_shows_no_token() -> None:
    text = repr(
        TokenGrant(access_token="secret-access-value", refresh_token="secret-refresh-value", expires_in=1)
    )
    leaked = "secret-access-value" in text or "secret-refresh-value" in text
    assert not leaked
