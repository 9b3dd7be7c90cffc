"""The provider's metrics, each named once, sent through Airflow's own ``Stats``.

Whatever a deployment configured under ``[metrics]`` (StatsD, Datadog, OpenTelemetry)
receives them, with no setup of the provider's own. Each metric carries its dimensions as
tags (``conn_id``, ``mode``, ``outcome``, ...), all of few values; and, while
``[metrics] legacy_names_on`` is true (Airflow's default), also under a name that spells
them out (``aac.token.refresh.aac_default.lock.refreshed``), as Airflow's own legacy names
do, for plain StatsD, which drops tags. No metric carries a token, a URL or a message.

Sending never fails the caller: a broken metrics backend costs the metric, not the refresh.
``docs/metrics.md`` describes every metric listed in ``METRICS``.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")


@dataclass(frozen=True)
class Metric:
    name: str
    type: Literal["counter", "timer"]
    tags: tuple[str, ...]
    meaning: str


REFRESH = Metric(
    "aac.token.refresh",
    "counter",
    ("conn_id", "mode", "outcome"),
    "A refresh was needed; how it ended (see the outcomes below).",
)
REFRESH_DURATION = Metric(
    "aac.token.refresh.duration",
    "timer",
    ("conn_id", "mode", "outcome"),
    "How long it took, from deciding to refresh to holding a stored pair (or the error).",
)
HOLDER_WAIT = Metric(
    "aac.token.holder_wait",
    "timer",
    ("conn_id", "outcome"),
    "A refresh waited for another process's claim: until it stored a pair (`stored`), its claim "
    "could be taken over (`taken_over`), or the wait timed out (`timeout`).",
)
LOCK_WAIT = Metric(
    "aac.token.lock.wait",
    "timer",
    ("conn_id", "backend", "outcome"),
    "Time to take the refresh lock (`backend`: postgres or redis; `outcome`: acquired, timeout, "
    "unavailable).",
)
LOCK_TIMEOUT = Metric(
    "aac.token.lock.timeout",
    "counter",
    ("conn_id", "backend"),
    "Another process held the refresh lock for longer than a refresh may take.",
)
PUBLICATION_WAIT = Metric(
    "aac.token.publication_wait",
    "timer",
    ("conn_id", "outcome"),
    "Single-writer mode: a task waited for the refresh DAG to publish a token (`published`), used "
    "the stored one when none came but it was still valid (`used_stored`), or gave up "
    "(`not_published`, `chain_broken`).",
)
RESCUE = Metric(
    "aac.token.rescue",
    "counter",
    ("conn_id", "event"),
    "A new pair could not be stored and was left held in the rescue places (`held`), or a held "
    "pair was stored later by the next refresh or `airflow-aac restore` (`completed`).",
)
TOKEN_ENDPOINT_RETRY = Metric(
    "aac.token_endpoint.retry",
    "counter",
    ("conn_id", "status"),
    "The token endpoint's answer was retried: `status` 429 or 503, `unsent` (the request never "
    "left this machine), or `unknown` (the one retry, at once, after an answer that was lost or "
    "left the outcome unknown).",
)
API_RETRY = Metric(
    "aac.api.retry",
    "counter",
    ("conn_id", "status"),
    "A `/v4` call was retried after this answer: 429, a 5xx code, or `transport` (no answer).",
)
TOKEN_REPLACEMENT = Metric(
    "aac.api.token_replacement",
    "counter",
    ("conn_id", "outcome"),
    "AAC answered 401 and the access token was replaced: by a refresh (`refreshed`), by a newer "
    "pair another process had stored (`newer_stored`); or not, because the rejected token was "
    "issued moments ago (`refused_recent`) or the refresh failed (`failed`).",
)
RUN_FINISHED = Metric(
    "aac.run.finished",
    "counter",
    ("kind", "outcome"),
    "A run operator saw its AAC run end (`kind`: plan, flow, job_group; `outcome`: success, "
    "failed, timeout, error).",
)
RUN_DURATION = Metric(
    "aac.run.duration",
    "timer",
    ("kind", "outcome"),
    "From the run's start (or a retry attaching to it) to its end, as the operator saw it.",
)

METRICS = (
    REFRESH,
    REFRESH_DURATION,
    HOLDER_WAIT,
    LOCK_WAIT,
    LOCK_TIMEOUT,
    PUBLICATION_WAIT,
    RESCUE,
    TOKEN_ENDPOINT_RETRY,
    API_RETRY,
    TOKEN_REPLACEMENT,
    RUN_FINISHED,
    RUN_DURATION,
)

REFRESH_OUTCOMES = (
    "refreshed",
    "by_other",
    "not_needed",
    "chain_broken",
    "outcome_unknown",
    "pair_held",
    "lock_timeout",
    "lock_unavailable",
    "store_unavailable",
    "not_published",
    "client_rejected",
    "config",
    "transient",
    "error",
)


def refresh_outcome(error: BaseException) -> str:
    """The ``outcome`` tag of a refresh that raised ``error``: the error's own (``AACError.outcome``)."""
    from airflow_provider_aac.core.errors import AACError

    return error.outcome if isinstance(error, AACError) else "error"


def refresh_finished(conn_id: str, mode: str, outcome: str, seconds: float) -> None:
    tags = {"conn_id": conn_id, "mode": mode, "outcome": outcome}
    _send(REFRESH, tags)
    _send(REFRESH_DURATION, tags, seconds)


def holder_waited(conn_id: str, outcome: str, seconds: float) -> None:
    _send(HOLDER_WAIT, {"conn_id": conn_id, "outcome": outcome}, seconds)


def lock_waited(conn_id: str, backend: str, outcome: str, seconds: float) -> None:
    _send(LOCK_WAIT, {"conn_id": conn_id, "backend": backend, "outcome": outcome}, seconds)
    if outcome == "timeout":
        _send(LOCK_TIMEOUT, {"conn_id": conn_id, "backend": backend})


def publication_waited(conn_id: str, outcome: str, seconds: float) -> None:
    _send(PUBLICATION_WAIT, {"conn_id": conn_id, "outcome": outcome}, seconds)


def rescue(conn_id: str, event: Literal["held", "completed"]) -> None:
    _send(RESCUE, {"conn_id": conn_id, "event": event})


def token_endpoint_retry(conn_id: str, status: str) -> None:
    _send(TOKEN_ENDPOINT_RETRY, {"conn_id": conn_id, "status": status})


def api_retry(conn_id: str, status: str) -> None:
    _send(API_RETRY, {"conn_id": conn_id, "status": status})


def token_replacement(conn_id: str, outcome: str) -> None:
    _send(TOKEN_REPLACEMENT, {"conn_id": conn_id, "outcome": outcome})


def run_finished(kind: str, outcome: str, seconds: float | None) -> None:
    tags = {"kind": kind, "outcome": outcome}
    _send(RUN_FINISHED, tags)
    if seconds is not None:
        _send(RUN_DURATION, tags, seconds)


class RefreshMetrics:
    """What the refresh core reports while it runs (``core.refresh.RefreshObserver``), as metrics."""

    def __init__(self, conn_id: str) -> None:
        self.conn_id = conn_id

    def token_endpoint_retry(self, status: str) -> None:
        token_endpoint_retry(self.conn_id, status)

    def waited_for_holder(self, outcome: str, seconds: float) -> None:
        holder_waited(self.conn_id, outcome, seconds)

    def pair_held(self) -> None:
        rescue(self.conn_id, "held")

    def held_pair_completed(self) -> None:
        rescue(self.conn_id, "completed")


def _send(metric: Metric, tags: dict[str, str], seconds: float | None = None) -> None:
    try:
        stats, legacy_names = _backend()
        names = [metric.name]
        if legacy_names:
            names.append(".".join([metric.name, *(_UNSAFE.sub("_", str(tags[tag])) for tag in metric.tags)]))
        for name in names:
            if metric.type == "counter":
                stats.incr(name, tags=tags)
            else:
                stats.timing(name, timedelta(seconds=max(seconds or 0.0, 0.0)), tags=tags)
    except Exception as err:  # a metrics backend must never break a refresh or a run
        log.debug("Could not send the metric %s: %s", metric.name, type(err).__name__)


@functools.cache
def _backend() -> tuple[Any, bool]:
    from airflow_provider_aac.compat import airflow_stats, metrics_legacy_names_on

    return airflow_stats(), metrics_legacy_names_on()
