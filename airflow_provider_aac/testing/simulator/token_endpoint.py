"""``POST /as/token``: the refresh grant over HTTP, with its injected delays, failures and losses.

Faults apply in the order a real outage would show them: a delay before anything, a
failure instead of rotating (the token presented stays unspent), a loss after rotating
(the server moved on and the client never heard).
"""

from __future__ import annotations

import math
import time
from typing import Any
from urllib.parse import parse_qs

from airflow_provider_aac.testing.simulator.counters import Counters
from airflow_provider_aac.testing.simulator.faults import FaultSchedule, Shot
from airflow_provider_aac.testing.simulator.tokens import OAuthError, TokenAuthority
from airflow_provider_aac.testing.simulator.wire import Request, Response, json_response, number

TOKEN_PATH = "/as/token"


class TokenEndpoint:
    def __init__(self, authority: TokenAuthority, faults: FaultSchedule, counters: Counters) -> None:
        self._authority = authority
        self._faults = faults
        self._counters = counters

    def handle(self, request: Request) -> Response:
        if request.method != "POST":
            return self._oauth_error_response(OAuthError(405, "invalid_request", "Use POST"))
        self._counters.count("token_requests")
        delay = self._faults.token_delays.take(request)
        if delay is not None:
            time.sleep(delay.delay)  # outside the lock: held requests still race each other
        failure = self._faults.token_failures.take(request)
        if failure is not None:
            return self._failure_response(failure)
        try:
            response = json_response(200, self._refresh(request), {"Cache-Control": "no-store"})
        except OAuthError as error:
            response = self._oauth_error_response(error)
        if self._faults.token_losses.take(request) is not None:
            return Response(0, drop_connection=True)
        return response

    def _refresh(self, request: Request) -> dict[str, Any]:
        form = _token_form(request)
        if "grant_type" not in form:
            raise OAuthError(400, "invalid_request", "grant_type is required")
        if form["grant_type"] != "refresh_token":
            raise OAuthError(400, "unsupported_grant_type", "Only grant_type=refresh_token is supported")
        if not form.get("refresh_token"):
            raise OAuthError(400, "invalid_request", "refresh_token is required")
        if not form.get("client_id"):
            raise OAuthError(401, "invalid_client", "client_id is required")
        return self._authority.rotate(form["refresh_token"], form["client_id"])

    def _oauth_error_response(self, error: OAuthError) -> Response:
        body = {"error": error.error, "error_description": error.description}
        return self._error_response(error.status, body, {})

    def _failure_response(self, shot: Shot) -> Response:
        body = shot.body
        if body is None:
            body = {
                "error": _default_oauth_error(shot.status),
                "error_description": "Simulated token endpoint failure",
            }
        headers: dict[str, str] = {}
        if shot.retry_after is not None:
            headers = {
                "Retry-After": str(math.ceil(shot.retry_after)),
                "x-retry-after": str(number(shot.retry_after)),
            }
        return self._error_response(shot.status, body, headers)

    def _error_response(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> Response:
        keys = [key for key in ("invalid_grant", "invalid_client") if body.get("error") == key]
        self._counters.count(*keys, *(["rate_limited"] if status == 429 else []))
        return json_response(status, body, {"Cache-Control": "no-store", **headers})


def _token_form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("application/x-www-form-urlencoded"):
        raise OAuthError(400, "invalid_request", "Send application/x-www-form-urlencoded")
    try:
        fields = parse_qs(request.body.decode(), keep_blank_values=True, strict_parsing=bool(request.body))
    except (UnicodeDecodeError, ValueError):
        raise OAuthError(400, "invalid_request", "The form body is malformed") from None
    if any(len(values) > 1 for values in fields.values()):
        raise OAuthError(400, "invalid_request", "A parameter was sent more than once")
    return {name: values[0] for name, values in fields.items()}


def _default_oauth_error(status: int) -> str:
    if status == 500:
        return "server_error"
    if status == 429 or status > 500:
        return "temporarily_unavailable"
    return "invalid_request"
