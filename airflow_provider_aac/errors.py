"""Every error the provider raises on purpose, importable from one place.

Two modules hold them because ``core/`` must stay importable without Airflow: the errors
its token and refresh logic raise live in ``core.errors``, while the ones that must also
be Airflow exceptions (so that Airflow retries them, or fails the task without retries)
are defined here. Users import every class from this module; ``core.errors`` is for
``core/`` alone.

This module imports only ``core.errors`` and Airflow, so any module of the provider can
import it without a cycle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from airflow_provider_aac.compat import AirflowException, AirflowFailException
from airflow_provider_aac.core.errors import (
    AACApiError,
    AACClientRejectedError,
    AACConfigError,
    AACError,
    AACLockTimeoutError,
    AACLockUnavailableError,
    AACNotFoundError,
    AACPairHeldError,
    AACRefreshNotPublishedError,
    AACRefreshOutcomeUnknownError,
    AACStoreConflictError,
    AACStoreError,
    AACStoreUnavailableError,
    AACTokenChainBrokenError,
    AACTransientError,
)

if TYPE_CHECKING:
    from airflow_provider_aac.runs import RunState

__all__ = [
    "AACApiError",
    "AACClientRejectedError",
    "AACConfigError",
    "AACError",
    "AACLockTimeoutError",
    "AACLockUnavailableError",
    "AACNotFoundError",
    "AACPairHeldError",
    "AACPlanInvalidError",
    "AACRefreshNotPublishedError",
    "AACRefreshOutcomeUnknownError",
    "AACResponseCheckError",
    "AACRunError",
    "AACRunFailedError",
    "AACRunOutcomeUnknownError",
    "AACRunTargetLookupError",
    "AACRunTimeoutError",
    "AACStoreConflictError",
    "AACStoreError",
    "AACStoreUnavailableError",
    "AACTokenChainBrokenError",
    "AACTokenDeadlineError",
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


class AACPlanInvalidError(AACError, AirflowFailException):
    """AAC will not run the plan as it stands (``validationStatus`` not ``Valid``): retrying cannot fix it."""


class AACRunTargetLookupError(AACConfigError):
    """A plan, flow or recipe given by name matched no object, or more than one, in the workspace."""


class AACResponseCheckError(AACError, AirflowException):
    """``response_check`` rejected AAC's answer."""


class AACTokenDeadlineError(AACError, AirflowFailException):
    """The refresh token is about to expire (or has): fail at once, retrying cannot help."""
