"""The one step function of the hook's two drivers, so the sync and the async path cannot drift.

``Drive`` advances an exchange (``core.exchange``) and turns each effect it yields into
the one ``Io`` that performs it, with the token the exchange took last; the drivers
(``AACHook.run_exchange`` with requests, ``AACHook.arun_exchange`` with httpx) only
perform that ``Io``, each with its own table of four operations, and hand the outcome
back. So both take a token once per ``FreshToken`` (not again per ``Send``), send with
it, count a retry the same way, and replace it the same way after a 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, cast

from airflow_provider_aac import metrics
from airflow_provider_aac.core.exchange import (
    Effect,
    Exchange,
    FreshToken,
    HttpAnswer,
    ReplaceToken,
    Send,
    Wait,
)

if TYPE_CHECKING:
    from airflow_provider_aac.core.token_state import TokenState
    from airflow_provider_aac.tokens.connection import AACConnectionConfig

T = TypeVar("T")

IoKind = Literal["token", "send", "sleep", "replace"]
"""``token``: take a fresh token (returns the config and state); ``send``: one attempt of a
``Send`` with the base URL and access token (returns an ``HttpAnswer``); ``sleep``: wait;
``replace``: replace the token AAC rejected (returns the new state)."""


@dataclass(frozen=True)
class Io:
    """One operation a driver performs for an effect, with its arguments."""

    kind: IoKind
    args: tuple[Any, ...] = ()


class Drive(Generic[T]):
    """One exchange being driven: its next ``Io``, and the token its sends use."""

    def __init__(self, exchange: Exchange[T], conn_id: str) -> None:
        self.conn_id = conn_id
        self.result: T | None = None
        self._exchange = exchange
        self._effect: Effect | None = None
        self._config: AACConnectionConfig | None = None
        self._state: TokenState | None = None
        self._reply: HttpAnswer | None = None
        self._failure: Exception | None = None

    def next_io(self) -> Io | None:
        """Resume the exchange with the last outcome; the ``Io`` its next effect needs, or None once it returned.

        What an ``Io`` failed at was handed to ``failed`` and is raised into the exchange at
        its ``yield``, so an exchange catches a token it could not get, or an answer that
        never came, as it catches a failed call.
        """
        replied, failure = self._reply, self._failure
        self._reply, self._failure = None, None
        try:
            effect = self._exchange.throw(failure) if failure is not None else self._exchange.send(replied)
        except StopIteration as stop:
            self.result = cast(T, stop.value)
            return None
        self._effect = effect
        match effect:
            case FreshToken():
                return Io("token")
            case Send():
                config, state = self._held()
                return Io("send", (effect, config.base_url, state.access_token))
            case Wait(delay):
                metrics.api_retry(self.conn_id, str(replied.status) if replied is not None else "transport")
                return Io("sleep", (delay,))
            case ReplaceToken(rejection):
                config, state = self._held()
                return Io("replace", (rejection, state, config.base_url))
        raise TypeError(f"An exchange yields an effect of core.exchange, not {effect!r}.")

    def done(self, outcome: Any) -> None:
        """The last ``Io`` succeeded with ``outcome``."""
        match self._effect:
            case FreshToken():
                self._config, self._state = outcome
            case Send():
                self._reply = outcome
            case ReplaceToken():
                self._state = outcome

    def failed(self, err: Exception) -> None:
        """The last ``Io`` raised ``err`` (a ``TransportFailure`` when no answer came)."""
        self._failure = err

    def _held(self) -> tuple[AACConnectionConfig, TokenState]:
        if self._config is None or self._state is None:
            raise TypeError("An exchange yields FreshToken before it sends or replaces a token.")
        return self._config, self._state
