"""Errors that say what happened and what the user does next.

Every message is built from our own words and a few non-secret facts (status codes,
AAC's error names, request ids); a token never reaches an exception.
"""

from __future__ import annotations

from typing import TypeVar

NEW_PAIR_STEPS = (
    "Generate a new token pair in AAC (Preferences > OAuth 2.0 API Tokens > Generate), "
    "then store it in the connection: airflow connections delete {conn_id} && "
    "airflow connections add {conn_id} --conn-type aac --conn-host <API base URL> "
    '--conn-extra \'{{"access_token": "<access token>", "refresh_token": "<refresh token>"}}\''
)


class AACError(Exception):
    """Base of every error this provider raises on purpose."""


class AACConfigError(AACError):
    """The connection or the deployment is set up wrongly; retrying will not help."""


class AACTokenChainBrokenError(AACError):
    """The refresh token is expired, revoked or spent: only a new pair from the AAC UI helps."""


class AACClientRejectedError(AACConfigError):
    """AAC's token endpoint refused the client id (``invalid_client``)."""


class AACTransientError(AACError):
    """A failure that may pass: rate limits, 5xx, unreachable hosts. Retries were exhausted."""


class AACRefreshOutcomeUnknownError(AACTransientError):
    """The refresh request may have reached AAC, but no usable answer came back."""


class AACStoreError(AACError):
    """The rotated pair could not be read from or written to the Airflow connection."""


class AACStoreConflictError(AACStoreError):
    """The stored pair is not the one this process read or spent: someone else's wins."""


class AACStoreUnavailableError(AACStoreError, AACTransientError):
    """The place the pair lives (Airflow's API, the metadata DB) did not answer; it may be restarting."""


class AACPairHeldError(AACStoreError, AACTransientError):
    """A refresh succeeded but its pair could not be stored in time; it is held for the next refresh."""


class AACLockTimeoutError(AACTransientError):
    """Another process held the refresh lock for longer than the bounded wait."""


class AACLockUnavailableError(AACTransientError):
    """The lock backend (PostgreSQL or Redis) did not answer, or the lock was lost before sending."""


class AACRefreshNotPublishedError(AACTransientError):
    """Single-writer mode waited for the refresh DAG to publish a fresh token and none came."""


class AACApiError(AACError):
    """A ``/v4`` call failed; carries AAC's own error name and message."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        aac_name: str | None = None,
        aac_message: str | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.aac_name = aac_name
        self.aac_message = aac_message
        self.request_id = request_id


class AACNotFoundError(AACApiError):
    """The object (plan, flow, run, dataset) does not exist in this workspace."""


def new_pair_hint(conn_id: str) -> str:
    """The steps a user takes when the token chain is dead, ready to copy."""
    return NEW_PAIR_STEPS.format(conn_id=conn_id)


E = TypeVar("E", bound=BaseException)


def reworded(err: E, message: str) -> E:
    """The same error with another message; every other field (status, AAC's names, request id) kept.

    Built without calling the class's ``__init__`` (``copy.copy`` does, with ``args`` only, which
    fails for classes with required keyword-only arguments such as ``TransportFailure``): the
    instance's attributes are copied as they are and ``args`` is replaced, which is what
    ``str()`` shows. Traceback, cause and context are not carried: the caller's ``raise``
    sets them (``raise reworded(err, ...) from err`` or ``from None``).
    """
    cls = type(err)
    new = cls.__new__(cls)
    new.__dict__.update(vars(err))
    if "__notes__" in new.__dict__:
        new.__notes__ = list(err.__notes__)
    new.args = (message,)
    return new


REJECTED_FRESH_TOKEN_HINT = (
    "AAC rejected an access token that was issued {age:.0f} s ago, so its age is not the problem and it "
    "was not replaced again (that would only rotate the chain). A 401 on a fresh token usually means the "
    "token's user was disabled or lost access, the token belongs to another workspace than {base_url}, or "
    "an admin revoked the token family; check the user in AAC, then generate a new pair if needed."
)
