"""The refresh DAG's own threshold: always ahead of every task, whatever the lifetime and schedule."""

from __future__ import annotations

import pytest

from airflow_provider_aac.core.refresh_schedule import RUN_LATENCY, longest_safe_interval, refresh_threshold


@pytest.mark.parametrize(
    ("lifetime", "interval", "expected"),
    [
        (300.0, 60.0, 240.0),  # AAC's observed 5-minute tokens, every minute: interval-bound
        (3600.0, 60.0, 2400.0),  # 1-hour tokens: two thirds
        (300.0, 600.0, 780.0),  # runs rarer than the lifetime: every run refreshes
    ],
)
def test_threshold_stays_ahead_of_every_task(lifetime: float, interval: float, expected: float) -> None:
    threshold = refresh_threshold(lifetime, interval)
    assert threshold == pytest.approx(expected)
    # After a check that did not refresh, the token still has `threshold` seconds; one
    # interval and a run's latency later it must still beat the most any task asks for
    # (half the lifetime, the cap in effective_min_ttl), and two thirds at least.
    assert threshold - interval - RUN_LATENCY >= lifetime / 2
    assert threshold >= lifetime * 2 / 3


def test_threshold_without_a_known_lifetime_follows_the_connections_min_ttl() -> None:
    assert refresh_threshold(None, 60.0) == 300.0 + 60.0 + RUN_LATENCY
    assert refresh_threshold(None, 60.0, task_min_ttl=100.0) == 100.0 + 60.0 + RUN_LATENCY


@pytest.mark.parametrize(
    ("lifetime", "interval", "advised"),
    [
        (300.0, 60.0, None),  # a check every minute is early enough for 5-minute tokens
        (300.0, 600.0, 120.0),  # every ten minutes is not: at most half the lifetime less a run's latency
        (40.0, 60.0, 1.0),  # tokens so short that no schedule keeps up: advise the shortest
        (None, 600.0, None),  # an unknown lifetime advises nothing
        (300.0, None, None),  # an unknown schedule neither
    ],
)
def test_a_schedule_too_sparse_for_the_lifetime_is_advised_against(
    lifetime: float | None, interval: float | None, advised: float | None
) -> None:
    assert longest_safe_interval(lifetime, interval) == advised
