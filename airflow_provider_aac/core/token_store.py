"""What the refresh steps need of a store: the protocol, and the sections that hold one.

A store is only ever used inside a section: an exclusive context (a lock, a row lock in
a transaction, or the single-writer guarantee) that yields it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from airflow_provider_aac.core.token_state import TokenState, Version

Extra = dict[str, Any]
Change = Callable[[TokenState, Extra], Extra]


class TokenStore(Protocol):
    """Where one connection's token state lives, seen from inside an exclusive section."""

    def read(self) -> tuple[TokenState, Extra]:
        """The current state and the whole extra, read fresh."""

    def update(self, expected: Version, change: Change) -> Extra:
        """Re-read, refuse unless ``expected`` still holds (see check_version), write ``change(state, extra)``."""

    def check_writable(self) -> None:
        """Raise unless a write will be what every reader sees; called before the token is spent."""


Section = Callable[[], AbstractContextManager[TokenStore]]
Guard = Callable[[], None]


def no_guard() -> None:
    return None


def within(store: TokenStore) -> Section:
    """A section that is a store already held exclusively, for steps that otherwise open their own."""

    @contextmanager
    def held() -> Iterator[TokenStore]:
        yield store

    return held
