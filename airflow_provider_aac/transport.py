"""The HTTP edges: requests for sync code, httpx for triggers.

Their one job beyond sending is to tell whether a failed request may have reached the
server, because the core retries only what cannot have taken effect.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import requests
import urllib3.exceptions

from airflow_provider_aac.core.oauth import RawResponse, TokenTransport, TransportFailure

USER_AGENT = "airflow-provider-aac"


def requests_was_sent(err: requests.RequestException) -> bool:
    """False only when the connection was never established."""
    if isinstance(err, requests.exceptions.ConnectTimeout | requests.exceptions.SSLError):
        return False
    if isinstance(err, requests.exceptions.ConnectionError):
        reason = err.args[0] if err.args else None
        reason = getattr(reason, "reason", reason)
        return not isinstance(
            reason, urllib3.exceptions.NewConnectionError | urllib3.exceptions.ConnectTimeoutError
        )
    return not isinstance(err, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema)


def httpx_was_sent(err: httpx.HTTPError) -> bool:
    return not isinstance(
        err, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | httpx.UnsupportedProtocol
    )


def requests_token_transport(session: requests.Session) -> TokenTransport:
    def post(url: str, form: Mapping[str, str], timeout: float) -> RawResponse:
        try:
            response = session.post(
                url,
                data=dict(form),
                headers={"Accept": "application/json", "User-Agent": USER_AGENT},
                timeout=timeout,
                allow_redirects=False,
            )
        except requests.RequestException as err:
            raise TransportFailure(type(err).__name__, request_sent=requests_was_sent(err)) from None
        return RawResponse(response.status_code, dict(response.headers), response.content)

    return post
