"""The requests edge of ``/v4`` calls, and what a failed request may have sent."""

from __future__ import annotations

import requests
import urllib3.exceptions

from airflow_provider_aac.core.api import api_headers
from airflow_provider_aac.core.exchange import HttpAnswer, Send, TransportFailure


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


def send_with_requests(
    session: requests.Session, send: Send, base_url: str, access_token: str, timeout: float
) -> HttpAnswer:
    """One attempt of ``send``; raises ``TransportFailure`` when no answer came. Redirects are not followed."""
    try:
        response = session.request(
            send.method,
            base_url + send.path,
            json=send.json,
            params=send.params,
            headers=api_headers(access_token, send.headers),
            timeout=timeout,
            allow_redirects=False,
        )
    except requests.RequestException as err:
        raise TransportFailure.reaching(err, base_url, request_sent=requests_was_sent(err)) from None
    return HttpAnswer(response.status_code, response.headers, response.content)
