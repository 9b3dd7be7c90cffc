"""``connect CONN_ID``: store a pair generated in AAC, check it, and say what else is needed.

The check uses the access token alone (``GET /v4/people/current``): the refresh token is
the one thing that must not be spent here, since nothing would be watching for the
answer's new pair until the connection is stored. A pair AAC rejects is not stored, so a
typo never replaces a working chain.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from typing import Any
from urllib.parse import urlsplit

from airflow_provider_aac.cli.output import SKEW_NOTE, duration, fail, say, table, when
from airflow_provider_aac.cli.readiness import assess
from airflow_provider_aac.cli.token_input import Pair, read_pair
from airflow_provider_aac.compat import AAC_CLI
from airflow_provider_aac.core.cleartext import insecure_http_allowed, refuse_cleartext
from airflow_provider_aac.core.token_grant import AccessTokenClaims, read_claims
from airflow_provider_aac.core.token_health import (
    REFRESH_EXPIRES_AT,
    REFRESH_FAMILY_EXPIRES_AT,
    parse_refresh_deadline,
)
from airflow_provider_aac.core.token_state import (
    ACCESS_TOKEN,
    GENERATION,
    MAINTAINED_KEYS,
    REFRESH_TOKEN,
    as_int,
    jwt_skew_margin,
    parse_extra,
)
from airflow_provider_aac.errors import AACConfigError, AACError
from airflow_provider_aac.tokens.connection import (
    CONN_TYPE,
    base_url_of,
    read_config,
    refuse_unwritable,
)

CHECK_TIMEOUT = 30.0
_REGION = re.compile(r"(?:^|[.-])([a-z]{2}\d+)(?=[.-]|$)")
_US1_ISSUER_HOST = "pingauth.alteryxcloud.com"
_FORM_PREFIX = f"extra__{CONN_TYPE}__"


def run(args: argparse.Namespace) -> int:
    try:
        return _connect(args)
    except AACError as err:
        return fail("connect", err)


def _connect(args: argparse.Namespace) -> int:
    conn_id: str = args.conn_id
    refuse_unwritable(conn_id)
    pair = read_pair(from_stdin=args.stdin, from_file=args.from_file)
    claims = read_claims(pair.access_token, where=pair.source)
    stored_host, stored_extra = _stored(conn_id)
    host = args.host or stored_host or _host_for_issuer(claims.issuer)
    if not host:
        raise AACConfigError(
            f"Cannot tell the API base URL from the token (issuer {claims.issuer!r}), and connection "
            f"{conn_id!r} has no host yet. Pass --host, such as --host https://us1.alteryxcloud.com."
        )
    base_url = base_url_of(conn_id, host, None, None)
    allowed = insecure_http_allowed(stored_extra, conn_id=conn_id)
    refuse_cleartext(base_url, what="API base URL (--host)", conn_id=conn_id, allowed=allowed)
    settings = _settings(args, conn_id)
    now = time.time()
    deadline_value = settings.get(REFRESH_EXPIRES_AT, stored_extra.get(REFRESH_EXPIRES_AT))
    deadline = parse_refresh_deadline(deadline_value, conn_id=conn_id)
    say(f"Token pair for connection {conn_id!r}:")
    say(table(_claim_rows(claims, base_url, deadline, now)))
    for warning in _region_warnings(base_url, claims.issuer):
        say(f"Warning: {warning}")
    say()
    expired = claims.expires_at is not None and claims.expires_at <= now
    if expired:
        say(
            f"The access token expired at {when(claims.expires_at)}, so it cannot be checked with AAC. "
            "The pair is stored as given; the first process that needs a token will spend the refresh "
            f"token to get a new pair (to do it now: {AAC_CLI} refresh {conn_id})."
        )
    elif args.skip_check:
        say("Not checked with AAC (--skip-check).")
    else:
        say(f"AAC accepts the access token: {_check(base_url, pair.access_token)}. Refresh token not spent.")
    generation, created = _store(conn_id, base_url, pair, settings)
    say(f"{'Created' if created else 'Updated'} connection {conn_id!r} (generation {generation}).")
    readiness = assess(read_config(conn_id))
    say()
    say("Who refreshes:")
    say(table(readiness.described_modes()))
    if readiness.gaps:
        say()
        say("Missing:")
        for gap in readiness.gaps:
            say(f"  - {gap.what}")
            say(f"    fix: {gap.fix}")
    else:
        say("Nothing is missing.")
    return 0


def _settings(args: argparse.Namespace, conn_id: str) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if args.refresh_expires_at is not None:
        parse_refresh_deadline(args.refresh_expires_at, conn_id=conn_id)
        settings[REFRESH_EXPIRES_AT] = args.refresh_expires_at.strip()
    if args.refresh_family_expires_at is not None:
        parse_refresh_deadline(args.refresh_family_expires_at, conn_id=conn_id, key=REFRESH_FAMILY_EXPIRES_AT)
        settings[REFRESH_FAMILY_EXPIRES_AT] = args.refresh_family_expires_at.strip()
    for key in ("lock_conn_id", "airflow_api_conn_id", "refresh_mode"):
        value = getattr(args, key)
        if value is not None:
            settings[key] = value.strip()
    return settings


def _claim_rows(
    claims: AccessTokenClaims, base_url: str, deadline: float | None, now: float
) -> list[tuple[str, str]]:
    access = "-" if claims.expires_at is None else when(claims.expires_at)
    if claims.expires_at is not None:
        left = claims.expires_at - now
        access += f" (expired {duration(-left)} ago)" if left <= 0 else f" (in {duration(left)})"
        access += f", its exp claim; {SKEW_NOTE.format(margin=duration(jwt_skew_margin(claims.lifetime)))}"
    refresh = "not recorded (pass --refresh-expires-at DATE to be warned before it)"
    if deadline is not None:
        refresh = f"{when(deadline)} (in {duration(deadline - now)})"
    return [
        ("client id", claims.client_id or "-"),
        ("issuer", claims.issuer or "-"),
        ("region", region_of(base_url) or region_of(claims.issuer) or "unknown"),
        ("API base URL", base_url),
        ("access token expires", access),
        ("refresh token deadline", refresh),
    ]


def region_of(url: str | None) -> str | None:
    """us1, eu1, au1, ...: from a regional host name (us1.alteryxcloud.com, pingauth-eu1...)."""
    host = (urlsplit(url).hostname or "") if url else ""
    if host == _US1_ISSUER_HOST:
        return "us1"
    if not host.endswith("alteryxcloud.com"):
        return None
    found = _REGION.search(host)
    return found.group(1) if found else None


def _host_for_issuer(issuer: str | None) -> str | None:
    region = region_of(issuer)
    return f"https://{region}.alteryxcloud.com" if region else None


def _region_warnings(base_url: str, issuer: str | None) -> list[str]:
    host_region, issuer_region = region_of(base_url), region_of(issuer)
    if host_region and issuer_region and host_region != issuer_region:
        return [
            f"the pair was issued in region {issuer_region} but the API base URL is in {host_region}; "
            "AAC will reject it there. Pass the right --host."
        ]
    return []


def _check(base_url: str, access_token: str) -> str:
    """Who the access token belongs to, by ``GET /v4/people/current``; raises when AAC says no."""
    import requests

    from airflow_provider_aac.core.api import USER_AGENT

    url = f"{base_url}/v4/people/current"
    try:
        response = requests.get(
            url,
            headers={"Authorization": f"Bearer {access_token}", "User-Agent": USER_AGENT},
            timeout=CHECK_TIMEOUT,
        )
    except requests.RequestException as err:
        raise AACConfigError(
            f"Could not reach {url} ({type(err).__name__}); nothing was stored. Check --host and the "
            "network, or pass --skip-check to store the pair unchecked."
        ) from None
    if response.status_code in (401, 403):
        raise AACConfigError(
            f"AAC answered {response.status_code} to GET {url}: it does not accept this access token "
            "there. Nothing was stored. Check that --host is the region where the pair was generated, "
            "and that you pasted the latest pair (a revoked or replaced pair is rejected)."
        )
    if not response.ok:
        raise AACConfigError(
            f"AAC answered {response.status_code} to GET {url}; nothing was stored. Try again later, or "
            "pass --skip-check to store the pair unchecked."
        )
    try:
        person = response.json()
    except ValueError:
        person = None
    who = person.get("email") or person.get("name") or person.get("id") if isinstance(person, dict) else None
    return f"signed in as {who}" if who else "signed in"


def _stored(conn_id: str) -> tuple[str | None, dict[str, Any]]:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session(scoped=False) as session:
        row = session.scalars(select(Connection).where(Connection.conn_id == conn_id)).one_or_none()
        if row is None:
            return None, {}
        _require_aac(row)
        return row.host, parse_extra(row.extra, conn_id=conn_id)


def _store(conn_id: str, base_url: str, pair: Pair, settings: dict[str, Any]) -> tuple[int, bool]:
    """Write the pair under the row's lock; the user's other keys stay, the provider's start over."""
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session(scoped=False) as session:
        query = select(Connection).where(Connection.conn_id == conn_id)
        row = session.scalars(query.with_for_update()).one_or_none()
        created = row is None
        if row is None:
            row = Connection(conn_id=conn_id, conn_type=CONN_TYPE)
            session.add(row)
            old: dict[str, Any] = {}
        else:
            _require_aac(row)
            old = parse_extra(row.extra, conn_id=conn_id)
        kept = {
            key: value
            for key, value in old.items()
            if key not in MAINTAINED_KEYS
            and key not in (ACCESS_TOKEN, REFRESH_TOKEN)
            and key not in (_FORM_PREFIX + ACCESS_TOKEN, _FORM_PREFIX + REFRESH_TOKEN)
        }
        # One more than before, so that every process holding the old pair sees a new one.
        generation = as_int(old.get(GENERATION)) + 1 if old.get(REFRESH_TOKEN) else 0
        extra = {
            **kept,
            **settings,
            ACCESS_TOKEN: pair.access_token,
            REFRESH_TOKEN: pair.refresh_token,
            GENERATION: generation,
        }
        row.host = base_url
        row.set_extra(json.dumps(extra))
    return generation, created


def _require_aac(row: Any) -> None:
    if row.conn_type != CONN_TYPE:
        raise AACConfigError(
            f"Connection {row.conn_id!r} exists with type {row.conn_type!r}, not {CONN_TYPE!r}; nothing was "
            f"stored. Choose another id, or delete it first (airflow connections delete {row.conn_id})."
        )
