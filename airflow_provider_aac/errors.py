"""Every error the provider raises on purpose, and the one boundary that decides Airflow's retries.

Two modules hold the classes because ``core/`` must stay importable without Airflow: the
errors its token and refresh logic raise live in ``core.errors``, while the ones that must
also be Airflow exceptions are defined here. Users import every class from this module;
``core.errors`` is for ``core/`` alone. ``__all__`` names what a DAG author acts on; the
other classes (the refresh's lock and store failures, all ``AACTransientError`` or
``AACConfigError``) stay importable from here for code that already catches them.

Each error carries its policy (``retryable``, ``outcome``: see ``core.errors``).
Operators and sensors run inside ``failing_fast``, which turns an error no retry can
fix into :class:`AACFinalError`, an ``AirflowFailException``: a dead token chain, a wrong
connection or a run target that does not exist stay exactly as broken on the next try,
and spending the task's retries on them only delays the message a person has to act on.

This module imports only ``core.errors`` and Airflow, so any module of the provider can
import it without a cycle.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from airflow_provider_aac.compat import AirflowException, AirflowFailException
from airflow_provider_aac.core.errors import (
    AACApiError,
    AACConfigError,
    AACError,
    AACNotFoundError,
    AACTokenChainBrokenError,
    AACTransientError,
)

# Importable from here for code that catches them, outside __all__: each is under a base above.
from airflow_provider_aac.core.errors import AACClientRejectedError as AACClientRejectedError
from airflow_provider_aac.core.errors import AACLockTimeoutError as AACLockTimeoutError
from airflow_provider_aac.core.errors import AACLockUnavailableError as AACLockUnavailableError
from airflow_provider_aac.core.errors import AACPairHeldError as AACPairHeldError
from airflow_provider_aac.core.errors import AACRefreshNotPublishedError as AACRefreshNotPublishedError
from airflow_provider_aac.core.errors import AACRefreshOutcomeUnknownError as AACRefreshOutcomeUnknownError
from airflow_provider_aac.core.errors import AACStoreConflictError as AACStoreConflictError
from airflow_provider_aac.core.errors import AACStoreError as AACStoreError
from airflow_provider_aac.core.errors import AACStoreUnavailableError as AACStoreUnavailableError

if TYPE_CHECKING:
    from airflow_provider_aac.runs import RunState

__all__ = [
    "AACApiError",
    "AACConfigError",
    "AACError",
    "AACFinalError",
    "AACNotFoundError",
    "AACRunError",
    "AACRunFailedError",
    "AACRunOutcomeUnknownError",
    "AACRunTimeoutError",
    "AACTokenChainBrokenError",
    "AACTransientError",
]


class AACRunError(AACError, AirflowException):
    """Waiting for an AAC run ended without the run completing."""


class AACRunFailedError(AACRunError):
    """The run ended Failed or Canceled in AAC."""

    def __init__(self, message: str, *, state: RunState | None = None, url: str | None = None) -> None:
        super().__init__(message)
        self.state = state
        self.url = url


class AACRunTimeoutError(AACRunError):
    """The run was still going at the task's deadline."""


class AACRunOutcomeUnknownError(AACError, AirflowFailException):
    """AAC says this exact run request was already made, and its answer was lost.

    A task retry would send a new request and start a second run, so this failure is
    final: the user looks in AAC instead.
    """

    retryable = False


class AACPlanInvalidError(AACError, AirflowFailException):
    """AAC will not run the plan as it stands (``validationStatus`` not ``Valid``): retrying cannot fix it."""

    retryable = False


class AACRunTargetLookupError(AACConfigError):
    """A plan, flow or recipe given by name matched no object, or more than one, in the workspace."""


class AACResponseCheckError(AACError, AirflowException):
    """``response_check`` rejected AAC's answer."""


class AACTokenDeadlineError(AACError, AirflowFailException):
    """The refresh token is about to expire (or has): fail at once, retrying cannot help."""

    retryable = False


class AACFinalError(AACError, AirflowFailException):
    """An error no task retry can fix, failing the task without its retries.

    ``error`` is what the provider raised (also this exception's ``__cause__``), with its
    class and attributes (``status_code``, ``state``, ``url``...); the message is its message.
    """

    retryable = False

    def __init__(self, error: AACError) -> None:
        super().__init__(str(error))
        self.error = error
        self.outcome = error.outcome

    def __reduce__(self) -> tuple[type[AACFinalError], tuple[AACError]]:
        return (AACFinalError, (self.error,))


@contextmanager
def failing_fast(*, run_failure_is_final: bool = False) -> Iterator[None]:
    """Raise an error that is not ``retryable`` as :class:`AACFinalError`; a failed AAC run too when asked."""
    try:
        yield
    except AACError as err:
        if run_failure_is_final and isinstance(err, AACRunFailedError):
            err.retryable = False
        if err.retryable or isinstance(err, AirflowFailException):
            raise
        raise AACFinalError(err) from err
