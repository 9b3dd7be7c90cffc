"""AAC run statuses and the sets operators and triggers decide on."""

from __future__ import annotations

from enum import Enum


class AACRunStatus(str, Enum):
    CREATED = "Created"
    PENDING = "Pending"
    IN_PROGRESS = "InProgress"
    COMPLETE = "Complete"
    FAILED = "Failed"
    CANCELED = "Canceled"

    @classmethod
    def parse(cls, value: object) -> AACRunStatus | None:
        """The status, or None for a value AAC may add later: callers keep waiting on it."""
        try:
            return cls(value)
        except ValueError:
            return None

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


SUCCESS_STATUSES = frozenset({AACRunStatus.COMPLETE})
FAILURE_STATUSES = frozenset({AACRunStatus.FAILED, AACRunStatus.CANCELED})
TERMINAL_STATUSES = SUCCESS_STATUSES | FAILURE_STATUSES
