"""The refresh request exactly as AAC documents it, and what its answers mean.

Transport-agnostic: the caller passes a ``TokenTransport`` (the sync edge uses
``requests``). Retries happen where the token cannot have been spent: a 429, a 503, or
a failure before the request left this machine. An answer that leaves the outcome
unknown (no answer, a 5xx other than 503, a 200 that is not JSON) gets exactly one more
try, at once, while the caller's lease still holds; see :func:`request_refresh` for why
that one retry can only help. A second unknown outcome is reported as such.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

from airflow_provider_aac.core.cleartext import refuse_cleartext
from airflow_provider_aac.core.errors import (
    AACClientRejectedError,
    AACConfigError,
    AACError,
    AACRefreshOutcomeUnknownError,
    AACTokenChainBrokenError,
    AACTransientError,
    new_pair_hint,
)
from airflow_provider_aac.core.exchange import HttpAnswer, TransportFailure
from airflow_provider_aac.core.retry import Backoff, parse_retry_after
from airflow_provider_aac.core.token_grant import AccessTokenClaims, TokenGrant, text
from airflow_provider_aac.core.token_store import Guard, no_guard

log = logging.getLogger(__name__)

RETRYABLE_TOKEN_STATUSES = frozenset({429, 503})
DEFAULT_BACKOFF = Backoff()
# An attempt with less time than this left would most likely be cut off before AAC's
# answer arrives, which loses the pair if AAC acted on it: better not to send at all.
MIN_ATTEMPT_SECONDS = 2.0


@dataclass(frozen=True)
class SendWindow:
    """How long one attempt may take, and the last check before the token leaves the process.

    ``seconds`` bounds the whole exchange (DNS, connect, send and the complete answer),
    not each read. ``before_send``, the refresh's guard, runs once the connection is open
    and nothing has been written yet; it raises when this process can no longer be sure
    it is the only one allowed to spend the token (its lock is gone, its lease too short).
    """

    seconds: float
    before_send: Guard = no_guard


class TokenTransport(Protocol):
    def __call__(self, url: str, form: Mapping[str, str], window: SendWindow) -> HttpAnswer: ...


@dataclass(frozen=True)
class TokenEndpoint:
    url: str
    client_id: str


def resolve_token_endpoint(
    claims: AccessTokenClaims,
    *,
    token_url: str | None,
    client_id: str | None,
    conn_id: str,
    allow_insecure_http: bool = False,
) -> TokenEndpoint:
    """``token_url`` and ``client_id`` from the extra win; otherwise the token's claims.

    The issuer comes from the access token itself, so its scheme is checked like the host's.
    """
    url = token_url or (claims.issuer.rstrip("/") + "/token" if claims.issuer else None)
    client = client_id or claims.client_id
    missing = [name for name, value in (("token_url", url), ("client_id", client)) if not value]
    if missing:
        raise AACConfigError(
            f"Cannot tell where to refresh the tokens of connection {conn_id!r}: the access token "
            f"has no {' or '.join('iss' if m == 'token_url' else m for m in missing)} claim. Add "
            f"{' and '.join(repr(m) for m in missing)} to the connection's extra (the token URL is "
            "the issuer plus '/token', e.g. https://pingauth.alteryxcloud.com/as/token)."
        )
    assert url is not None and client is not None
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AACConfigError(
            f"The token URL of connection {conn_id!r} ({url}) is not an http(s) URL. Fix 'token_url' "
            "in the extra, or remove it to use the access token's issuer."
        )
    refuse_cleartext(url, what="token URL", conn_id=conn_id, allowed=allow_insecure_http)
    return TokenEndpoint(url=url, client_id=client)


def refresh_form(refresh_token: str, client_id: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}


class _RetryableAnswer(Exception):
    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(status)
        self.status = status
        self.retry_after = retry_after


def interpret_token_response(response: HttpAnswer, *, conn_id: str) -> TokenGrant:
    """Turn the token endpoint's answer into a grant or the error the user can act on."""
    if response.status in RETRYABLE_TOKEN_STATUSES:
        raise _RetryableAnswer(response.status, parse_retry_after(response.headers))
    body = _json_object(response)
    if response.status == 200:
        if body is None:
            raise AACRefreshOutcomeUnknownError(
                f"AAC's token endpoint answered 200 without a JSON object for connection {conn_id!r}; "
                "the refresh token may have been spent. The next refresh will tell whether the chain "
                "survived."
            )
        return TokenGrant(
            access_token=text(body.get("access_token"), strip=False),
            refresh_token=text(body.get("refresh_token"), strip=False),
            expires_in=_seconds(body.get("expires_in")),
        )
    error = text(body.get("error"), strip=False) if body else None
    if error == "invalid_grant":
        raise AACTokenChainBrokenError(
            f"AAC rejected the refresh token of connection {conn_id!r} (invalid_grant): it is expired, "
            "revoked (an AAC admin's Disable or Delete of the API token does that), or was already spent, "
            "and AAC has revoked its token family. " + new_pair_hint(conn_id)
        )
    if error == "invalid_client":
        raise AACClientRejectedError(
            f"AAC's token endpoint rejected the client id of connection {conn_id!r} (invalid_client). "
            "Remove 'client_id' from the extra to use the one in the access token, or set it to the "
            "client id shown with the token in AAC. The refresh token was not spent."
        )
    if 500 <= response.status < 600:
        raise AACRefreshOutcomeUnknownError(
            f"AAC's token endpoint answered {response.status} for connection {conn_id!r}. The refresh "
            "may or may not have happened; it is not repeated now, so that a spent token is not "
            "presented twice. The next refresh will tell whether the chain survived."
        )
    raise AACConfigError(
        f"AAC's token endpoint answered {response.status}"
        + (f" ({error})" if error else "")
        + f" for connection {conn_id!r}. Check 'token_url' in the extra (or the access token's "
        "issuer): it must be the AAC token endpoint, such as https://pingauth.alteryxcloud.com/as/token."
    )


def request_refresh(
    transport: TokenTransport,
    endpoint: TokenEndpoint,
    refresh_token: str,
    *,
    conn_id: str,
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    backoff: Backoff = DEFAULT_BACKOFF,
    before_send: Guard = no_guard,
    on_retry: Callable[[str], None] = lambda status: None,
) -> TokenGrant:
    """POST the refresh; retry where the token cannot have been spent, and once after an unknown outcome.

    ``on_retry`` hears why each retry happens: the status answered (429, 503), ``unsent``,
    or ``unknown`` (the one retry after an unknown outcome).

    Every attempt, and every wait between attempts, ends before ``deadline`` (by
    ``clock``): the caller's exclusive right to spend the token lasts no longer. Once an
    attempt is sent, its answer is waited for until then, since abandoning it loses the
    new pair if AAC acted on the request.

    Why one retry, at once, after an unknown outcome (the connection closed after AAC
    rotated, say). Either AAC never acted on the request, and the retry simply succeeds;
    or it did, and the pair it sent back is lost to us whatever we do, unless AAC's token
    server (PingOne) has a reuse grace period: then the same token, presented again
    inside it, gets the pair it already issued. Presenting it later, as the next refresh
    after this lease would, shows AAC exactly what the retry shows, only after the grace
    has likely run out. Without a grace the retry meets the same invalid_grant the later
    try would have met, so it costs nothing that was not already lost; and if AAC is
    still working on the first request when the retry arrives, whichever of the two it
    answers second is the same reuse either way. So the retry is always made, and no
    setting drives it: AAC does not publish its grace period, and a user could not know
    what to set. It is made only while the lease leaves time for a whole attempt; after
    an attempt cut off at its deadline there is none, and the outcome stays unknown.
    """
    unknown: list[AACRefreshOutcomeUnknownError] = []
    try:
        return _attempts(
            transport,
            endpoint,
            refresh_form(refresh_token, endpoint.client_id),
            conn_id=conn_id,
            deadline=deadline,
            clock=clock,
            sleep=sleep,
            backoff=backoff,
            before_send=before_send,
            on_retry=on_retry,
            unknown=unknown,
        )
    except (AACRefreshOutcomeUnknownError, AACTokenChainBrokenError):
        raise
    except AACError as err:
        if not unknown:
            raise
        # The retry did not go out, or was refused unspent; the first request may still have
        # spent the token, so the claim must stay, as after any unknown outcome.
        raise AACRefreshOutcomeUnknownError(
            f"{unknown[0]} It was to be presented once more at once, but that attempt did not get an "
            f"answer either ({_first_sentence(str(err))})."
        ) from None


def _attempts(
    transport: TokenTransport,
    endpoint: TokenEndpoint,
    form: dict[str, str],
    *,
    conn_id: str,
    deadline: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    backoff: Backoff,
    before_send: Guard,
    on_retry: Callable[[str], None],
    unknown: list[AACRefreshOutcomeUnknownError],
) -> TokenGrant:
    """The attempts of :func:`request_refresh`; the first unknown outcome goes into ``unknown``."""
    earlier: list[str] = []
    attempt = 0
    while True:
        attempt += 1
        left = deadline - clock()
        if left < MIN_ATTEMPT_SECONDS:
            raise AACTransientError(
                f"Not refreshing connection {conn_id!r}: its refresh lease leaves {max(left, 0.0):.1f} s, too "
                "little for AAC's answer to arrive"
                + (f" (the token endpoint {', then '.join(earlier)})" if earlier else "")
                + ". The refresh token was not sent; try again."
            )
        try:
            try:
                answer = transport(endpoint.url, form, SendWindow(left, before_send))
            except TransportFailure as failure:
                if failure.request_sent:
                    raise _lost_answer(conn_id, endpoint, failure) from None
                raise
            grant = interpret_token_response(answer, conn_id=conn_id)
        except AACRefreshOutcomeUnknownError as outcome:
            if unknown:
                raise AACRefreshOutcomeUnknownError(
                    f"{outcome} It was presented once more at once, in case AAC had not acted on it or "
                    "accepts a spent token again for a while (a reuse grace period); that attempt ended the "
                    "same way."
                ) from None
            if clock() + MIN_ATTEMPT_SECONDS > deadline:
                raise
            unknown.append(outcome)
            log.warning(
                "AAC connection %r: the outcome of the refresh request is unknown (%s). Presenting the "
                "same refresh token once more now, while this process may still spend it.",
                conn_id,
                _first_sentence(str(outcome)),
            )
            earlier.append(f"gave no usable answer ({_first_sentence(str(outcome))})")
            on_retry("unknown")
            continue
        except TransportFailure as failure:
            delay = _delay_within(backoff.delay(attempt), deadline, clock)
            if delay is None:
                raise AACTransientError(
                    f"Cannot reach AAC's token endpoint {endpoint.url} for connection {conn_id!r} after "
                    f"{attempt} attempts ({failure}). Check the network and 'token_url'; the refresh "
                    "token was not spent."
                ) from None
            earlier.append(f"could not connect ({failure})")
            on_retry("unsent")
        except _RetryableAnswer as answer_error:
            delay = _delay_within(backoff.delay(attempt, answer_error.retry_after), deadline, clock)
            if delay is None:
                raise AACTransientError(
                    f"AAC's token endpoint kept answering {answer_error.status} for connection {conn_id!r} "
                    f"({attempt} attempts). Try again later; the refresh token was not spent."
                ) from None
            earlier.append(f"answered {answer_error.status}")
            on_retry(str(answer_error.status))
        except AACTokenChainBrokenError as err:
            if unknown:
                raise AACTokenChainBrokenError(
                    f"{err} This happened on the retry after the token endpoint {', then '.join(earlier)}: AAC "
                    "had most likely rotated the token and its answer was lost in transit, and no reuse grace period "
                    "covered the retry."
                ) from None
            if earlier:
                raise AACTokenChainBrokenError(
                    f"{err} This happened on a retry after the token endpoint {', then '.join(earlier)}: "
                    "the earlier answer was probably lost in transit after AAC had rotated the token."
                ) from None
            raise
        else:
            if unknown:
                log.warning("AAC connection %r: the retry was answered; the token chain is intact.", conn_id)
            return grant
        sleep(delay)


def _lost_answer(
    conn_id: str, endpoint: TokenEndpoint, failure: TransportFailure
) -> AACRefreshOutcomeUnknownError:
    return AACRefreshOutcomeUnknownError(
        f"The refresh request for connection {conn_id!r} was sent to {endpoint.url} but no "
        f"answer came back ({failure}). AAC may have rotated the token; it is not sent "
        "again now. The next refresh will tell whether the chain survived."
    )


def _first_sentence(message: str) -> str:
    head, _, _ = message.partition(". ")
    return head.rstrip(".")


def _delay_within(delay: float | None, deadline: float, clock: Callable[[], float]) -> float | None:
    """The backoff delay, or None when the attempt after it could not finish before ``deadline``."""
    if delay is None or clock() + delay + MIN_ATTEMPT_SECONDS > deadline:
        return None
    return delay


def _json_object(response: HttpAnswer) -> dict[str, Any] | None:
    try:
        value = response.json()
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _seconds(value: Any) -> float | None:
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None
