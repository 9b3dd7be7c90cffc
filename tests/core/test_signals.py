"""Termination signals wait while a spent token's answer is being kept, then take effect."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

import pytest

from airflow_provider_aac.core.signals import signals_deferred


@pytest.fixture
def received() -> Iterator[list[int]]:
    seen: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield seen
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_inside_the_window_is_delivered_once_it_closes(received: list[int]) -> None:
    with signals_deferred("a test was keeping a pair"):
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
        assert received == [], "the handler ran inside the window"
        during = signal.getsignal(signal.SIGTERM)
    assert received == [signal.SIGTERM, signal.SIGTERM]
    assert during is not signal.getsignal(signal.SIGTERM), "the previous handler is back"


def test_a_handler_that_raises_raises_after_the_window(received: list[int]) -> None:
    class Timeout(Exception):
        pass

    def timeout(signum: int, frame: FrameType | None) -> None:
        raise Timeout()

    previous = signal.signal(signal.SIGALRM, timeout)
    kept: list[str] = []
    try:
        with pytest.raises(Timeout), signals_deferred("a test was keeping a pair"):
            signal.setitimer(signal.ITIMER_REAL, 0.01)
            threading.Event().wait(0.2)
            kept.append("the work inside finished")
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert kept == ["the work inside finished"]


def test_outside_the_main_thread_nothing_is_touched(received: list[int]) -> None:
    seen: list[object] = []

    def work() -> None:
        with signals_deferred("a thread was keeping a pair"):
            seen.append(signal.getsignal(signal.SIGTERM))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(5)
    assert seen == [signal.getsignal(signal.SIGTERM)]
