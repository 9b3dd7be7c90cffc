"""The counters behind ``/_sim/stats``: what tests assert to prove a token was spent once."""

from __future__ import annotations

import threading

STAT_KEYS = (
    "refreshes",
    "reuses",
    "invalid_grant",
    "invalid_client",
    "token_requests",
    "api_calls",
    "api_authorized",
    "api_unauthorized",
    "families_revoked",
    "families_disabled",
    "grace_replays",
    "runs_started",
    "runs_canceled",
    "rate_limited",
)


class Counters:
    """Every counter, guarded by the simulator's state lock.

    Sharing that (reentrant) lock, rather than owning one, keeps a snapshot consistent with
    the token and run state it counts: a rotation's counts and its effects appear together.
    """

    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._counts = dict.fromkeys(STAT_KEYS, 0)

    def count(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                self._counts[key] += 1

    def snapshot(self) -> dict[str, int]:
        """A copy: later traffic does not change it."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        with self._lock:
            self._counts = dict.fromkeys(STAT_KEYS, 0)
