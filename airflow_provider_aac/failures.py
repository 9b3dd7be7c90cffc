"""Which failures a task retry can fix, and which fail the task at once.

A dead token chain, a rejected client id, a wrong connection or a run target that does
not exist stay exactly as broken on the next try; spending the task's retries on them
only delays the message a person has to act on. So operators, sensors and triggers turn
those errors, at their boundary, into the same error that is also an
``AirflowFailException``: the type, attributes and words stay what the token and API
code raised, and ``except AACNotFoundError`` still catches it, but Airflow does not
retry. Everything else (rate limits, 5xx, lost connections, timeouts, a lock held too
long) keeps the task's normal retries.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from airflow_provider_aac.compat import AirflowFailException
from airflow_provider_aac.errors import (
    AACApiError,
    AACConfigError,
    AACError,
    AACRunFailedError,
    AACTokenChainBrokenError,
)

E = TypeVar("E", bound=BaseException)

# 4xx that say the request itself is wrong for this workspace; 408, 409 and 429 may pass.
FINAL_STATUS_CODES = frozenset({400, 401, 403, 404, 405, 410, 411, 413, 415, 422})

_FINAL_TYPES: dict[type[BaseException], type[BaseException]] = {}


def is_retryable(error: BaseException) -> bool:
    """False for what no retry can fix: see the retry table in docs/errors.md."""
    if isinstance(error, AirflowFailException | AACTokenChainBrokenError | AACConfigError):
        return False
    if isinstance(error, AACApiError):
        return error.status_code not in FINAL_STATUS_CODES
    return True


def final(error: E) -> E:
    """The same error, as an instance of a subclass that is also an ``AirflowFailException``."""
    if isinstance(error, AirflowFailException):
        return error
    cls = type(error)
    final_cls = _FINAL_TYPES.get(cls)
    if final_cls is None:
        final_cls = type(
            cls.__name__,
            (cls, AirflowFailException),
            {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__},
        )
        _FINAL_TYPES[cls] = final_cls
    copy = final_cls.__new__(final_cls)
    copy.__dict__.update(error.__dict__)
    copy.args = error.args
    copy.__cause__ = error.__cause__
    copy.__suppress_context__ = error.__suppress_context__
    copy.__traceback__ = error.__traceback__
    return copy  # type: ignore[return-value]


@contextmanager
def failing_fast(*, run_failure_is_final: bool = False) -> Iterator[None]:
    """Re-raise errors no retry can fix as final ones; a failed AAC run too when asked."""
    try:
        yield
    except AACRunFailedError as err:
        if not run_failure_is_final:
            raise
        raise final(err) from err.__cause__
    except AACError as err:
        if is_retryable(err):
            raise
        raise final(err) from err.__cause__
