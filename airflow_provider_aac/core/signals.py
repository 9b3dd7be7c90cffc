"""Holding back termination signals while a spent refresh token's answer is being kept.

Between the token POST and the moment the new pair is stored, a SIGTERM (a task marked
failed, a worker shutting down), a SIGALRM (``execution_timeout``) or a SIGINT would
otherwise unwind the stack and drop the only copy of the new pair. The signals that
arrive in that window are recorded and delivered, in order, as soon as it closes. The
window is bounded by the refresh itself (its lease and the store's patience), and
Airflow's supervisor follows a SIGTERM with a SIGKILL a few seconds later anyway, which
no process can defer: that is the one case in which a pair can still be lost.

Python runs signal handlers only in the main thread, so elsewhere (the triggerer's
worker threads, the api-server) this does nothing.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

log = logging.getLogger(__name__)

DEFERRED_SIGNALS: tuple[signal.Signals, ...] = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGALRM") if hasattr(signal, name)
)


@contextmanager
def signals_deferred(reason: str) -> Iterator[None]:
    """Record the termination signals that arrive inside the block; deliver them after it."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[tuple[int, FrameType | None]] = []

    def record(signum: int, frame: FrameType | None) -> None:
        if not pending:
            log.warning("%s arrived while %s; it takes effect once that is done.", _name(signum), reason)
        pending.append((signum, frame))

    previous: dict[signal.Signals, Any] = {}
    try:
        for signum in DEFERRED_SIGNALS:
            previous[signum] = signal.signal(signum, record)
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for number, frame in pending:
            _deliver(number, frame, previous.get(signal.Signals(number)))


def _deliver(signum: int, frame: FrameType | None, handler: Any) -> None:
    if callable(handler):
        handler(signum, frame)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)


def _name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"
