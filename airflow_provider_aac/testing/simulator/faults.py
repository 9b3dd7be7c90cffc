"""Injected faults: each is a shot that applies to the next few matching requests, then is spent."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from airflow_provider_aac.testing.simulator.wire import Request


@dataclass
class Shot:
    """One injected fault and how many more matching requests it applies to."""

    remaining: int
    status: int = 0
    delay: float = 0.0
    retry_after: float | None = None
    body: dict[str, Any] | None = None
    path_prefix: str = ""
    method: str | None = None
    text: str | None = None  # a non-JSON body (a plain-text 401, a gateway's HTML page)
    content_type: str = "text/plain"

    def matches(self, request: Request) -> bool:
        method_ok = self.method is None or self.method.upper() == request.method
        return method_ok and request.path.startswith(self.path_prefix)


class Shots:
    """Pending shots of one kind, oldest first; taking one is atomic so concurrent callers share none."""

    def __init__(self, lock: threading.Lock | threading.RLock) -> None:
        self._lock = lock
        self._pending: list[Shot] = []

    def add(self, shot: Shot) -> None:
        if shot.remaining < 1:
            raise ValueError("times must be at least 1")
        with self._lock:
            self._pending.append(shot)

    def take(self, request: Request) -> Shot | None:
        with self._lock:
            shot = next((candidate for candidate in self._pending if candidate.matches(request)), None)
            if shot is not None:
                shot.remaining -= 1
                if shot.remaining == 0:
                    self._pending.remove(shot)
            return shot

    def pending(self) -> int:
        """How many requests these shots will still apply to."""
        with self._lock:
            return sum(shot.remaining for shot in self._pending)


class FaultSchedule:
    """The faults a test has asked for, by where they strike."""

    def __init__(self, lock: threading.RLock) -> None:
        self.token_failures = Shots(lock)
        self.token_delays = Shots(lock)
        self.token_losses = Shots(lock)
        self.api_failures = Shots(lock)
