"""Errors that say what happened and what the user does next, and carry their own policy.

Every message is built from our own words and a few non-secret facts (status codes,
AAC's error names, request ids); a token never reaches an exception.

Each class says whether a task retry could fix it (``retryable``) and which word the
refresh metric records for it (``outcome``); nothing else classifies errors. An instance
may narrow ``retryable`` where its context decides (an AAC status code, an operator's
``retry_failed_runs``). The one place that turns ``retryable = False`` into Airflow's
fail-without-retry is ``airflow_provider_aac.errors.failing_fast``.
"""

from __future__ import annotations

from typing import TypeVar

NEW_PAIR_STEPS = (
    "Generate a new token pair in AAC (Preferences > OAuth 2.0 API Tokens > Generate), "
    "then store it in the connection: airflow connections delete {conn_id} && "
    "airflow connections add {conn_id} --conn-type aac --conn-host <API base URL> "
    '--conn-extra \'{{"access_token": "<access token>", "refresh_token": "<refresh token>"}}\''
)


# 4xx that say the request itself is wrong for this workspace; 408, 409 and 429 may pass.
FINAL_STATUS_CODES = frozenset({400, 401, 403, 404, 405, 410, 411, 413, 415, 422})


class AACError(Exception):
    """Base of every error this provider raises on purpose.

    ``retryable``: whether the task's next try (or the next status check while waiting) could
    succeed where this one failed. ``outcome``: the ``outcome`` tag of a refresh that raised it.
    """

    retryable: bool = True
    outcome: str = "error"


class AACConfigError(AACError):
    """The connection or the deployment is set up wrongly; retrying will not help."""

    retryable = False
    outcome = "config"


class AACTokenChainBrokenError(AACError):
    """The refresh token is expired, revoked or spent: only a new pair from the AAC UI helps."""

    retryable = False
    outcome = "chain_broken"


class AACClientRejectedError(AACConfigError):
    """AAC's token endpoint refused the client id (``invalid_client``)."""

    outcome = "client_rejected"


class AACTransientError(AACError):
    """A failure that may pass: rate limits, 5xx, unreachable hosts. Retries were exhausted."""

    outcome = "transient"


class AACRefreshOutcomeUnknownError(AACTransientError):
    """The refresh request may have reached AAC, but no usable answer came back."""

    outcome = "outcome_unknown"


class AACStoreError(AACError):
    """The rotated pair could not be read from or written to the Airflow connection."""


class AACStoreConflictError(AACStoreError):
    """The stored pair is not the one this process read or spent: someone else's wins."""


class AACStoreUnavailableError(AACStoreError, AACTransientError):
    """The place the pair lives (Airflow's API, the metadata DB) did not answer; it may be restarting."""

    outcome = "store_unavailable"


class AACPairHeldError(AACStoreError, AACTransientError):
    """A refresh succeeded but its pair could not be stored in time; it is held for the next refresh."""

    outcome = "pair_held"


class AACLockTimeoutError(AACTransientError):
    """Another process held the refresh lock for longer than the bounded wait."""

    outcome = "lock_timeout"


class AACLockUnavailableError(AACTransientError):
    """The lock backend (PostgreSQL or Redis) did not answer, or the lock was lost before sending."""

    outcome = "lock_unavailable"


class AACRefreshNotPublishedError(AACTransientError):
    """Single-writer mode waited for the refresh DAG to publish a fresh token and none came."""

    outcome = "not_published"


class AACApiError(AACError):
    """A ``/v4`` call failed; carries AAC's own error name and message.

    Not retryable when AAC's status says the request itself is wrong (``FINAL_STATUS_CODES``).
    """

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
        if status_code in FINAL_STATUS_CODES:
            self.retryable = False


class AACNotFoundError(AACApiError):
    """The object (plan, flow, run, dataset) does not exist in this workspace."""

    retryable = False


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
