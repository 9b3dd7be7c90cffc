"""Bounded exponential backoff with full jitter, shared by the token endpoint and ``/v4``."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from time import time

RETRY_AFTER_HEADERS = ("x-retry-after", "retry-after")


@dataclass(frozen=True)
class Backoff:
    """How often and how long to wait; ``attempts`` counts the first try."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 10.0
    max_retry_after: float = 60.0

    def delay(
        self, attempt: int, retry_after: float | None = None, rand: Callable[[], float] = random.random
    ) -> float | None:
        """Seconds to wait before try ``attempt + 1``, or None when no retry is left.

        A server's ``Retry-After`` is honoured, with a little jitter so that many
        workers told the same second do not return together; one beyond
        ``max_retry_after`` ends the retries instead of parking a worker.
        """
        if attempt >= self.attempts:
            return None
        jittered = rand() * min(self.cap, self.base * 2 ** (attempt - 1))
        if retry_after is None:
            return jittered
        if retry_after > self.max_retry_after:
            return None
        return retry_after + jittered / 4


def parse_retry_after(headers: Mapping[str, str], now: Callable[[], float] = time) -> float | None:
    """Seconds from AAC's ``x-retry-after`` or the standard ``Retry-After`` (seconds or a date)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in RETRY_AFTER_HEADERS:
        raw = lowered.get(name)
        if raw is None:
            continue
        try:
            return max(0.0, float(raw))
        except ValueError:
            pass
        try:
            return max(0.0, parsedate_to_datetime(raw).timestamp() - now())
        except (TypeError, ValueError):
            continue
    return None
