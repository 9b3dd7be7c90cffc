"""What the refresh steps need of a store: the protocol, the sections that hold one, and news of its writes.

A store is only ever used inside a section: an exclusive context (a lock, a row lock in
a transaction, or the single-writer guarantee) that yields it. A section that can be lost
while it is held (a lock whose holder may be cut off) comes with a guard. A caller
waiting for another process's refresh holds no section; it watches for news of a write
instead (``Changes``), which by default is a plain sleep until its next look.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
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
# A read outside any section, of the state as last written: what a waiter watches.
Look = Callable[[], TokenState]
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


def look_within(section: Section) -> Look:
    """The look of a store that has no cheaper read than its section."""

    def look() -> TokenState:
        with section() as store:
            return store.read()[0]

    return look


class Changes(Protocol):
    """News that a store may have been written, for a caller that waits outside any section.

    Opened before the re-read it guards, so that a write landing between that read and
    the wait is still heard. Every wait is bounded by its timeout: news only ever ends
    a wait early, and a feed that fails falls back to sleeping out the timeout.
    """

    @property
    def signalled(self) -> bool:
        """Whether a write ends ``wait`` early; False while it only sleeps (then looking often pays)."""

    def wait(self, timeout: float) -> None:
        """Return at news of a write or after ``timeout`` seconds, whichever comes first."""


ChangeFeed = Callable[[], AbstractContextManager[Changes]]


@dataclass
class Sleeping:
    """Changes that bring no news: a wait is a sleep (SQLite, MySQL, the REST store, and any failed feed)."""

    sleep: Callable[[float], None]
    signalled: bool = False

    def wait(self, timeout: float) -> None:
        self.sleep(timeout)


def sleeping(sleep: Callable[[float], None]) -> ChangeFeed:
    """The feed of a store that announces nothing: the waiter polls."""

    @contextmanager
    def feed() -> Iterator[Changes]:
        yield Sleeping(sleep)

    return feed
