"""When the refresh DAG refreshes, and how often it must run for that to be early enough.

A task's ``min_ttl`` is capped at half the access token's lifetime (``effective_min_ttl``)
so that a task never refreshes a token it could still use for most of its life. The
refresh DAG must not share that cap: it is the one writer tasks wait for in
single-writer mode, so it has to refresh before any task starts asking, and between two
of its checks a whole schedule interval (plus a run's start-up) passes. Its threshold
is therefore its own policy, kept here, and decided from the lifetime and the schedule.

No Airflow imports: this is pure decision logic, tested without Airflow.
"""

from __future__ import annotations

from airflow_provider_aac.core.token_state import effective_min_ttl

# Seconds from a scheduled time to the refresh task's check: a scheduler loop, queueing,
# starting the task process. Generous on purpose: too early costs one extra refresh, too
# late makes tasks wait.
RUN_LATENCY = 30.0
# Refresh once two thirds of the lifetime is left, at the latest: even a few missed runs
# (scheduler restart, busy pool) then leave tasks their margin.
EARLY_FRACTION = 2 / 3
# The shortest schedule interval ever advised: below a second a schedule means nothing.
MIN_ADVISED_INTERVAL = 1.0


def refresh_threshold(lifetime: float | None, interval: float, *, task_min_ttl: float | None = None) -> float:
    """Seconds of access-token life below which the refresh DAG refreshes.

    Tasks refresh (or, in single-writer mode, wait for this DAG) when the token has less
    than ``effective_min_ttl(min_ttl, lifetime)`` left: the connection's ``min_ttl``
    (default 300 s), capped at half the lifetime. So no task ever asks for more than half.
    Between two checks of this DAG up to ``interval + RUN_LATENCY`` seconds pass; a
    refresh DAG that leaves more than ``lifetime / 2 + interval + RUN_LATENCY`` after each
    check therefore never lets a task see a token it would not use, whatever ``min_ttl``
    the connection or a hook asks for. Two thirds of the lifetime is the floor on top,
    so a missed run or two still does not reach the tasks.

    For AAC's observed 5-minute tokens and a 1-minute schedule that is 240 s (a refresh
    every one or two runs); for 1-hour tokens, 2400 s (one refresh in about 20 minutes).
    A threshold at or above the lifetime means every run refreshes, which is right when
    runs are rare compared with the lifetime.

    This cannot be passed to ``TokenManager`` as a ``min_ttl``: ``effective_min_ttl``
    clips every ``min_ttl`` to half the lifetime, exactly the point where tasks start
    asking too. The refresh operator decides itself and then forces the refresh, which the
    token manager still performs only if nobody stored a newer generation meanwhile.

    With an unknown lifetime (no ``expires_in`` recorded and no ``exp``/``iat`` claims),
    nothing is capped: stay one interval ahead of what tasks ask for.
    """
    if lifetime is None or lifetime <= 0:
        return effective_min_ttl(task_min_ttl, None) + interval + RUN_LATENCY
    return max(lifetime * EARLY_FRACTION, lifetime / 2 + interval + RUN_LATENCY)


def longest_safe_interval(lifetime: float | None, interval: float | None) -> float | None:
    """The longest schedule interval to advise when ``interval`` lets tasks wait; None when it does not.

    A check that comes later than half the lifetime after the last one finds tasks
    already asking for a refresh, whatever the threshold.
    """
    if not lifetime or not interval or lifetime / 2 >= interval + RUN_LATENCY:
        return None
    return max(lifetime / 2 - RUN_LATENCY, MIN_ADVISED_INTERVAL)
