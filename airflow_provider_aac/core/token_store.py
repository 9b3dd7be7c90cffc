"""What the refresh steps need of a store: the protocol, and the sections that hold one.

A store is only ever used inside a section: an exclusive context (a lock, a row lock in
a transaction, or the single-writer guarantee) that yields it. A section that can be lost
while it is held (a lock whose holder may be cut off) comes with a guard.
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
# A section's last check before the token is claimed or leaves the process: it raises
# when this process can no longer be sure it is the only one allowed to spend the token
# (its lock is gone). The token request runs it once more just before sending.
Guard = Callable[[], None]


def no_guard() -> None:
    """The guard of a section that cannot be lost (a row lock, the single writer)."""
    return None


def within(store: TokenStore) -> Section:
    """A section that is a store already held exclusively, for steps that otherwise open their own."""

    @contextmanager
    def held() -> Iterator[TokenStore]:
        yield store

    return held
