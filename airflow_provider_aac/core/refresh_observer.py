"""What a refresh reports while it runs, for whoever watches (the metrics edge).

The refresh core does no IO of its own, metrics included: like its clock and its sleep,
the observer is passed in, and by default nobody watches.
"""

from __future__ import annotations

from typing import Protocol


class RefreshObserver(Protocol):
    def token_endpoint_retry(self, status: str) -> None:
        """The token endpoint answered ``status`` (429, 503), was not reached (``unsent``), or left the outcome ``unknown``; retrying."""

    def waited_for_holder(self, outcome: str, seconds: float) -> None:
        """Waited for another process's claim until it ``stored`` a pair, was ``taken_over``, or ``timeout``."""

    def pair_held(self) -> None:
        """A new pair could not be stored and stays held in the rescue places."""

    def held_pair_completed(self) -> None:
        """A pair an earlier refresh held back was stored."""


class Unobserved:
    """Nobody watches."""

    def token_endpoint_retry(self, status: str) -> None:
        return None

    def waited_for_holder(self, outcome: str, seconds: float) -> None:
        return None

    def pair_held(self) -> None:
        return None

    def held_pair_completed(self) -> None:
        return None
