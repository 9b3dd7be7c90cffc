"""ApiCall: what each ``/v4`` answer means and whether to try again."""

from __future__ import annotations

import json
from typing import Any

import pytest

from airflow_provider_aac.core.api import (
    DEFAULT_API_BACKOFF,
    STATUS_HINTS,
    ApiCall,
    ApiResponse,
    aac_exception,
    decode_body,
    is_idempotent,
    plain_text,
    validate_api_path,
)
from airflow_provider_aac.core.errors import (
    AACApiError,
    AACConfigError,
    AACError,
    AACNotFoundError,
    AACTransientError,
)
from airflow_provider_aac.core.exchange import HttpAnswer, ReplaceToken, TransportFailure, Wait
from airflow_provider_aac.core.retry import Backoff


def aac_error(name: str, message: str) -> bytes:
    return json.dumps({"exception": {"name": name, "message": message, "details": None}}).encode()


Step = ApiResponse | Wait | ReplaceToken | AACError
"""The call's next step: what it returns, the effect it yields, or the error it raises."""


def answer(call: ApiCall, status: int, headers: dict[str, str] | None = None, body: bytes = b"") -> Step:
    call.start_attempt()
    try:
        return call.after_response(HttpAnswer(status, headers or {}, body))
    except AACError as err:
        return err


def retries(decision: Step) -> bool:
    return isinstance(decision, Wait)


def response_of(decision: Step) -> ApiResponse:
    assert isinstance(decision, ApiResponse), decision
    return decision


def error_of(decision: Step) -> Exception:
    assert isinstance(decision, AACError), decision
    return decision


def attempts_until_error(call: ApiCall, status: int, headers: dict[str, str] | None = None) -> int:
    """Answer ``status`` until the call gives up; how many attempts it made."""
    for _ in range(100):
        decision = answer(call, status, headers)
        if isinstance(decision, AACError):
            return call.attempt
        assert retries(decision)
    raise AssertionError("the call never gave up")


# --------------------------------------------------------------------------- success


def test_success_returns_the_decoded_body_and_request_id() -> None:
    call = ApiCall("get", "/v4/people/current")
    response = response_of(answer(call, 200, {"X-Trifacta-Request-Id": "rid-1"}, b'{"id": 1}'))
    assert response.data == {"id": 1}
    assert response.request_id == "rid-1"
    assert response.headers["x-trifacta-request-id"] == "rid-1"
    assert call.method == "GET"


def test_bare_json_string_and_empty_body() -> None:
    status = response_of(answer(ApiCall("GET", "/v4/jobGroups/1/status"), 200, body=b'"Complete"'))
    assert status.data == "Complete"
    not_modified = answer(ApiCall("POST", "/v4/plans/1/run", {"x-execution-id": "e"}), 304)
    assert response_of(not_modified).data is None


# --------------------------------------------------------------------------- retry decisions


@pytest.mark.parametrize(
    ("method", "headers"),
    [("GET", None), ("POST", None), ("POST", {"x-execution-id": "e1"}), ("DELETE", None)],
)
def test_429_is_retried_for_every_method(method: str, headers: dict[str, str] | None) -> None:
    call = ApiCall(method, "/v4/plans/1/run", headers)
    assert retries(answer(call, 429))
    assert attempts_until_error(ApiCall(method, "/v4/plans/1/run", headers), 429) == (
        DEFAULT_API_BACKOFF.attempts
    )


def test_429_honours_x_retry_after() -> None:
    decision = answer(ApiCall("POST", "/v4/plans/1/run"), 429, {"x-retry-after": "7"})
    assert isinstance(decision, Wait) and decision.delay >= 7.0


def test_429_with_too_long_retry_after_gives_up_with_the_rate_limit_hint() -> None:
    call = ApiCall("GET", "/v4/plans", backoff=Backoff(attempts=5, max_retry_after=30.0))
    decision = answer(call, 429, {"x-retry-after": "600"}, aac_error("RateLimitException", "slow down"))
    assert isinstance(error_of(decision), AACApiError)
    assert error_of(decision).status_code == 429
    assert "RateLimitException: slow down" in str(error_of(decision))
    assert STATUS_HINTS[429] in str(error_of(decision))
    assert call.attempt == 1


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_retried_for_get(status: int) -> None:
    assert retries(answer(ApiCall("GET", "/v4/planSnapshotRuns/1"), status))
    assert attempts_until_error(ApiCall("GET", "/v4/planSnapshotRuns/1"), status) == 5


@pytest.mark.parametrize("header", ["x-execution-id", "X-Execution-Id", "X-EXECUTION-ID"])
def test_5xx_is_retried_for_a_post_with_an_execution_id(header: str) -> None:
    assert retries(answer(ApiCall("POST", "/v4/plans/1/run", {header: "exec-1"}), 503))


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_is_not_retried_for_a_plain_post(status: int) -> None:
    call = ApiCall("POST", "/v4/plans/1/run")
    decision = answer(
        call, status, {"x-trifacta-request-id": "rid-5"}, aac_error("InternalServerErrorException", "boom")
    )
    assert isinstance(error_of(decision), AACApiError) and not isinstance(
        error_of(decision), AACNotFoundError
    )
    assert error_of(decision).status_code == status
    assert "InternalServerErrorException: boom" in str(error_of(decision))
    assert "rid-5" in str(error_of(decision))
    assert call.attempt == 1


def test_5xx_on_a_plain_post_warns_that_it_may_have_taken_effect() -> None:
    decision = answer(
        ApiCall("POST", "/v4/plans/1/run"), 500, body=aac_error("InternalServerErrorException", "x")
    )
    message = str(error_of(decision))
    assert "try again later" not in message
    assert "check in AAC whether it took effect" in message


def test_unlisted_4xx_is_not_called_a_transient_server_error() -> None:
    decision = answer(ApiCall("POST", "/v4/jobGroups"), 409, body=aac_error("ConflictException", "dup"))
    assert "ConflictException: dup" in str(error_of(decision))
    assert "server error" not in str(error_of(decision))


@pytest.mark.parametrize("status", [400, 403, 410, 415])
def test_other_4xx_fail_at_once_with_their_hint(status: int) -> None:
    call = ApiCall("GET", "/v4/plans")
    decision = answer(call, status, body=aac_error("SomeException", "why"))
    assert isinstance(error_of(decision), AACApiError)
    assert "SomeException: why" in str(error_of(decision)) and STATUS_HINTS[status] in str(error_of(decision))
    assert call.attempt == 1


# --------------------------------------------------------------------------- lost connections


def failure(call: ApiCall, *, request_sent: bool) -> Step:
    call.start_attempt()
    try:
        return call.after_transport_failure(
            TransportFailure("ConnectionError reaching http://aac.test", request_sent=request_sent)
        )
    except AACError as err:
        return err


def test_connection_failure_before_sending_is_retried_even_for_post() -> None:
    call = ApiCall("POST", "/v4/plans/1/run")
    assert retries(failure(call, request_sent=False))


def test_lost_connection_after_sending_a_plain_post_is_not_retried() -> None:
    call = ApiCall("POST", "/v4/plans/1/run")
    decision = failure(call, request_sent=True)
    assert isinstance(error_of(decision), AACTransientError)
    message = str(error_of(decision))
    assert "POST /v4/plans/1/run failed after 1 attempt(s)" in message
    assert "not repeated" in message and "check in AAC whether it took effect" in message


@pytest.mark.parametrize(("method", "headers"), [("GET", None), ("POST", {"x-execution-id": "e"})])
def test_lost_connection_after_sending_an_idempotent_request_is_retried(
    method: str, headers: dict[str, str] | None
) -> None:
    assert retries(failure(ApiCall(method, "/v4/plans/1/run", headers), request_sent=True))


def test_connection_failures_give_up_after_the_attempts() -> None:
    call = ApiCall("GET", "/v4/plans", backoff=Backoff(attempts=3))
    decisions = [failure(call, request_sent=False) for _ in range(3)]
    assert [retries(d) for d in decisions] == [True, True, False]
    error = error_of(decisions[-1])
    assert isinstance(error, AACTransientError)
    assert "failed after 3 attempt(s)" in str(error)
    assert "not repeated" not in str(error)


# --------------------------------------------------------------------------- 401 and 404


def test_401_asks_for_one_refresh_then_fails() -> None:
    call = ApiCall("POST", "/v4/plans/1/run")
    first = answer(call, 401, body=aac_error("UnauthorizedException", "The access token has expired"))
    assert isinstance(first, ReplaceToken)
    assert first.rejection.status_code == 401
    second = error_of(
        answer(call, 401, body=aac_error("UnauthorizedException", "The access token has been revoked"))
    )
    assert isinstance(second, AACApiError) and second.status_code == 401
    assert "UnauthorizedException: The access token has been revoked" in str(second)
    assert "even after a refresh" in str(second)


def test_404_is_a_not_found_error_with_aacs_words_and_request_id() -> None:
    call = ApiCall("GET", "/v4/planSnapshotRuns/999")
    decision = answer(
        call,
        404,
        {"X-Trifacta-Request-Id": "req-404"},
        aac_error("NotFoundException", "Plan run 999 not found"),
    )
    error = error_of(decision)
    assert isinstance(error, AACNotFoundError)
    assert (error.status_code, error.aac_name, error.aac_message, error.request_id) == (
        404,
        "NotFoundException",
        "Plan run 999 not found",
        "req-404",
    )
    message = str(error)
    assert message.startswith("AAC answered 404 to GET /v4/planSnapshotRuns/999")
    assert "NotFoundException: Plan run 999 not found" in message
    assert STATUS_HINTS[404] in message
    assert "(AAC request id req-404)" in message
    assert call.attempt == 1


def test_error_without_aac_body_still_names_the_status() -> None:
    decision = answer(ApiCall("GET", "/v4/plans"), 403)
    assert str(error_of(decision)).startswith("AAC answered 403 to GET /v4/plans. ")


# --------------------------------------------------------------------------- bodies


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"exception": {"name": "N", "message": "M"}}, ("N", "M")),
        ({"exception": {"name": "N"}}, ("N", None)),
        ({"message": "plain message"}, (None, "plain message")),
        ({"error": "invalid"}, (None, "invalid")),
        ("a text body", (None, "a text body")),
        ("", (None, None)),
        (None, (None, None)),
        ([1, 2], (None, None)),
    ],
)
def test_aac_exception_tolerates_other_shapes(body: Any, expected: tuple[str | None, str | None]) -> None:
    assert aac_exception(body) == expected


def test_long_messages_are_truncated() -> None:
    _, message = aac_exception({"exception": {"name": "N", "message": "x" * 5000}})
    assert message is not None and len(message) == 500
    _, text = aac_exception("y" * 5000)
    assert text is not None and len(text) == 300


def test_decode_body() -> None:
    assert decode_body(b"") is None
    assert decode_body(b'{"a": 1}') == {"a": 1}
    assert decode_body(b"<html>Bad gateway</html>") == "<html>Bad gateway</html>"
    assert decode_body(b"\xff\xfe") == "\ufffd\ufffd"


def test_html_error_page_reaches_the_message() -> None:
    decision = answer(ApiCall("POST", "/v4/jobGroups"), 502, body=b"<html>Bad gateway</html>")
    assert isinstance(error_of(decision), AACApiError)
    assert "AAC answered 502 to POST /v4/jobGroups: Bad gateway. AAC had a server error" in str(
        error_of(decision)
    )


GATEWAY_400 = b"""<!DOCTYPE html><html><head><title>400 Bad Request</title>
<style>body { color: red }</style></head>
<body><center><h1>400 Bad Request</h1></center><hr><center>nginx</center></body></html>"""


@pytest.mark.parametrize(
    ("status", "body", "words"),
    [
        (400, GATEWAY_400, "400 Bad Request"),
        (
            400,
            b"<html><body><p>Request   &amp; header\n too large</p><script>x()</script></body></html>",
            "Request & header too large",
        ),
        (403, b"Unauthorized", "Unauthorized"),
    ],
)
def test_non_json_error_bodies_give_the_same_error_as_json_ones(status: int, body: bytes, words: str) -> None:
    """A gateway's HTML page or AAC's plain-text answer: same class, same hint, readable words."""
    from_json = error_of(answer(ApiCall("GET", "/v4/plans"), status, body=aac_error("X", "y")))
    from_text = error_of(answer(ApiCall("GET", "/v4/plans"), status, body=body))

    assert type(from_text) is type(from_json)
    assert isinstance(from_text, AACApiError) and isinstance(from_json, AACApiError)
    assert (from_text.status_code, from_text.aac_name, from_text.aac_message) == (status, None, words)
    assert str(from_text) == f"AAC answered {status} to GET /v4/plans: {words}. {STATUS_HINTS[status]}"
    assert "<" not in str(from_text)


def test_plain_text_401_is_a_token_rejection_like_a_json_one() -> None:
    call = ApiCall("GET", "/v4/people/current")
    assert isinstance(answer(call, 401, body=b"Unauthorized"), ReplaceToken)
    rejection = error_of(answer(call, 401, body=b"Unauthorized"))
    assert str(rejection).startswith("AAC answered 401 to GET /v4/people/current: Unauthorized. AAC rejected")


def test_plain_text_is_cut_short() -> None:
    long = plain_text("word " * 100)
    assert long is not None and len(long) == 300 and long.endswith("…")
    assert plain_text("<html><body>  </body></html>") is None


# --------------------------------------------------------------------------- paths


@pytest.mark.parametrize(
    "path", ["v4/plans", "/v3/plans", "/plans", "https://evil.test/v4/plans", "", "/V4/plans", None, 4]
)
def test_paths_must_start_with_v4(path: Any) -> None:
    with pytest.raises(AACConfigError, match="must start with '/v4/'"):
        ApiCall("GET", path)
    with pytest.raises(AACConfigError):
        validate_api_path(path)


def test_valid_path_is_kept() -> None:
    assert ApiCall("GET", "/v4/people/current").path == "/v4/people/current"


def test_is_idempotent() -> None:
    assert is_idempotent("get", None) and is_idempotent("PUT", None) and is_idempotent("DELETE", {})
    assert not is_idempotent("POST", None) and not is_idempotent("PATCH", {"x-other": "1"})
    assert is_idempotent("POST", {"X-Execution-ID": "e"})


@pytest.mark.parametrize(
    "path", ["/v4/../as/token", "/v4/./people", "/v4/%2e%2e/as/token", "/v4/a#b", "/v4/a b", "/v4/a\\b"]
)
def test_paths_that_could_leave_v4_are_refused(path: str) -> None:
    """Clients resolve dot segments, so '/v4/../as/token' would carry the bearer token elsewhere."""
    with pytest.raises(AACConfigError, match="plain path"):
        validate_api_path(path)


def test_query_strings_are_allowed() -> None:
    assert validate_api_path("/v4/plans?limit=5") == "/v4/plans?limit=5"
