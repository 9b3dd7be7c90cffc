"""AAC's per-minute limits on run endpoints, read from the headers AAC sends.

AAC allows about 30 runJobGroup and runPlan calls per user and 60 per workspace a
minute (runFlow 20 and 40) and says where a caller stands in ``x-rate-limit-user-*`` and
``x-rate-limit-workspace-*`` headers. A 429 that names no ``x-retry-after`` still says
when the exhausted window resets; waiting exactly that long, instead of a blind
backoff, is what lets a fan-out of runs drain without burning its retries. A process
that saw a window run dry also holds its next start of the same kind until the reset
(:class:`RateGate`), so it does not spend a call to learn what it already knows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from time import time

from airflow_provider_aac.core.retry import parse_retry_after

SCOPES = ("user", "workspace")
_EPOCH_MS = 1e12  # a reset above this is in milliseconds since the epoch
_EPOCH_S = 1e9  # above this (2001) in seconds since the epoch; below, seconds from now


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def reset_in(raw: str | None, now: float) -> float | None:
    """Seconds until a ``-reset`` value, whichever of AAC's possible units it uses."""
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    if value != value:  # NaN
        return None
    if value > _EPOCH_MS:
        value = value / 1000.0 - now
    elif value > _EPOCH_S:
        value = value - now
    return max(0.0, value)


def exhausted_wait(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds until every window that reports nothing remaining has reset; None if none did."""
    waits = []
    for scope in SCOPES:
        remaining = _header(headers, f"x-rate-limit-{scope}-remaining")
        if remaining is None or remaining.strip() not in ("0", "0.0"):
            continue
        wait = reset_in(_header(headers, f"x-rate-limit-{scope}-reset"), now)
        if wait is not None:
            waits.append(wait)
    return max(waits) if waits else None


def rate_limit_wait(headers: Mapping[str, str], now: Callable[[], float] = time) -> float | None:
    """How long a 429 asks to wait: ``x-retry-after`` (or ``Retry-After``), else the exhausted window's reset."""
    retry_after = parse_retry_after(headers, now)
    if retry_after is not None:
        return retry_after
    return exhausted_wait(headers, now())


class RateGate:
    """Per key (an API host and a run endpoint), the moment its exhausted window resets.

    Shared by the threads of one process; other processes learn the same from their own
    429s. Never holds a start longer than ``max_wait`` seconds: a longer promise is
    more likely a clock or unit mismatch than a real window.
    """

    def __init__(self, max_wait: float = 120.0, clock: Callable[[], float] = time) -> None:
        self.max_wait = max_wait
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def observe(self, key: str, headers: Mapping[str, str]) -> None:
        now = self._clock()
        wait = exhausted_wait(headers, now)
        with self._lock:
            if wait is None:
                self._until.pop(key, None)
            else:
                self._until[key] = max(self._until.get(key, 0.0), now + min(wait, self.max_wait))

    def wait_time(self, key: str) -> float:
        with self._lock:
            until = self._until.get(key)
        return 0.0 if until is None else max(0.0, until - self._clock())


RUN_GATE = RateGate()
