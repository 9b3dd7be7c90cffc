"""``status [CONN_ID]``: the state of each token chain, in one word and in detail.

Read-only, and it calls nobody: everything comes from the connection's bookkeeping, the
rescue places and the recorded refresh-token deadline. The exit status is the verdict
(0 healthy, 3 degraded, 4 dead, 1 when a connection cannot be read), so the command can
serve as a liveness or monitoring check.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_aac.cli.output import (
    DEAD,
    DEGRADED,
    FAILED,
    OK,
    SKEW_NOTE,
    duration,
    fail,
    say,
    table,
    when,
)
from airflow_provider_aac.cli.readiness import api_host_refused, component_modes
from airflow_provider_aac.compat import AAC_CLI
from airflow_provider_aac.core.token_health import (
    FROM_FAMILY_CAP,
    HealthLevel,
    assess_refresh_deadline,
    check_thresholds,
    refresh_deadline,
)
from airflow_provider_aac.core.token_state import LAST_INTERRUPTED, InFlight, TokenState, jwt_skew_margin
from airflow_provider_aac.errors import AACError
from airflow_provider_aac.tokens.connection import CONN_TYPE, read_config
from airflow_provider_aac.tokens.rescue_places import rescue_for

HEALTHY, DEGRADED_WORD, DEAD_WORD, UNREADABLE = "healthy", "degraded", "dead", "unreadable"
EXIT_STATUS = {HEALTHY: OK, UNREADABLE: FAILED, DEGRADED_WORD: DEGRADED, DEAD_WORD: DEAD}
SEVERITY = (HEALTHY, UNREADABLE, DEGRADED_WORD, DEAD_WORD)


@dataclass
class ChainStatus:
    """One connection's chain, as words and numbers; never a token."""

    conn_id: str
    verdict: str = HEALTHY
    reasons: list[str] = field(default_factory=list)
    generation: int | None = None
    access_expires_at: float | None = None
    access_seconds_left: float | None = None
    access_expiry_basis: str | None = None
    refreshed_at: float | None = None
    refreshed_by: str | None = None
    refreshed_mode: str | None = None
    deadline: dict[str, Any] = field(default_factory=dict)
    in_flight: str | None = None
    interrupted: str | None = None
    held_pair: dict[str, Any] | None = None
    dead_chain: dict[str, Any] | None = None
    modes: dict[str, str] = field(default_factory=dict)

    def worsen(self, verdict: str, reason: str) -> None:
        if SEVERITY.index(verdict) > SEVERITY.index(self.verdict):
            self.verdict = verdict
        self.reasons.append(reason)

    def as_dict(self) -> dict[str, Any]:
        return {
            "conn_id": self.conn_id,
            "verdict": self.verdict,
            "reasons": self.reasons,
            "generation": self.generation,
            "access_token": {
                "expires_at": None if self.access_expires_at is None else when(self.access_expires_at),
                "seconds_left": None
                if self.access_seconds_left is None
                else round(self.access_seconds_left, 1),
            },
            "last_refresh": {
                "at": None if self.refreshed_at is None else when(self.refreshed_at),
                "by": self.refreshed_by,
                "mode": self.refreshed_mode,
            },
            "refresh_token": self.deadline,
            "in_flight": self.in_flight,
            "interrupted": self.interrupted,
            "held_pair": self.held_pair,
            "dead_chain": self.dead_chain,
            "modes": self.modes,
        }


def run(args: argparse.Namespace) -> int:
    try:
        warn_days, fail_days = check_thresholds(args.warn_days, args.fail_days)
        conn_ids = [args.conn_id] if args.conn_id else aac_connection_ids()
    except AACError as err:
        return fail("status", err)
    if not conn_ids:
        return fail(
            "status", f"There is no aac connection in the metadata DB. Create one: {AAC_CLI} connect ID"
        )
    now = time.time()
    chains = [chain_status(conn_id, now, warn_days, fail_days) for conn_id in conn_ids]
    worst = max((chain.verdict for chain in chains), key=SEVERITY.index)
    if args.json:
        say(json.dumps({"verdict": worst, "connections": [chain.as_dict() for chain in chains]}, indent=2))
    else:
        say("\n\n".join(render(chain, now) for chain in chains))
    return EXIT_STATUS[worst]


def aac_connection_ids() -> list[str]:
    from airflow.models.connection import Connection
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session(scoped=False) as session:
        query = (
            select(Connection.conn_id).where(Connection.conn_type == CONN_TYPE).order_by(Connection.conn_id)
        )
        return list(session.scalars(query))


def chain_status(conn_id: str, now: float, warn_days: float, fail_days: float) -> ChainStatus:
    chain = ChainStatus(conn_id)
    try:
        config = read_config(conn_id)
        state = config.token_state()
        chain.modes = {component: mode.value for component, mode in component_modes(config).items()}
        deadline, source = refresh_deadline(config.extra, conn_id)
        left = state.seconds_left(now)
        chain.access_expires_at = state.expires_at()
        chain.access_seconds_left = None if chain.access_expires_at is None else left
        chain.access_expiry_basis = _expiry_basis(state)
    except AACError as err:
        chain.worsen(UNREADABLE, str(err))
        return chain
    chain.generation = state.generation
    chain.refreshed_at, chain.refreshed_by = state.refreshed_at, state.refreshed_by
    chain.refreshed_mode = state.refreshed_mode
    refused = api_host_refused(config)
    if refused:
        chain.worsen(DEGRADED_WORD, f"no refreshed pair can be written through the Airflow API: {refused}")
    health = assess_refresh_deadline(deadline, now, warn_days, fail_days, conn_id=conn_id, source=source)
    chain.deadline = {
        "deadline": None if health.deadline is None else when(health.deadline),
        "source": source,
        "days_left": health.as_dict()["days_left"],
        "level": health.level.value,
    }
    if health.level is HealthLevel.FAIL and health.seconds_left is not None and health.seconds_left <= 0:
        chain.worsen(DEAD_WORD, health.message)
    elif health.level in (HealthLevel.FAIL, HealthLevel.WARN):
        chain.worsen(DEGRADED_WORD, health.message)
    elif health.level is HealthLevel.UNKNOWN:
        chain.reasons.append(health.message)
    if state.chain_is_dead and state.dead_chain is not None:
        chain.dead_chain = {"at": when(state.dead_chain.at), "by": state.dead_chain.by}
        chain.worsen(
            DEAD_WORD,
            f"AAC rejected the stored refresh token ({state.dead_chain.describe()}). Generate a new pair in "
            f"AAC and store it: {AAC_CLI} connect {conn_id}",
        )
    marker = state.in_flight
    if marker is not None and marker.lease_until > now:
        chain.in_flight = f"{marker.describe()}, lease until {when(marker.lease_until)}"
    elif marker is not None:
        chain.interrupted = marker.describe()
        chain.worsen(
            DEGRADED_WORD,
            f"{marker.describe()} was interrupted (lease ended {when(marker.lease_until)}); it may have spent "
            "the refresh token without storing the new pair. The next refresh tries the stored token once.",
        )
    earlier = InFlight.from_json(config.extra.get(LAST_INTERRUPTED))
    if earlier is not None and chain.interrupted is None:
        chain.interrupted = earlier.describe()
        chain.worsen(
            DEGRADED_WORD,
            f"{earlier.describe()} was interrupted and no refresh has succeeded since; if the next one fails "
            "with invalid_grant, generate a new pair in AAC.",
        )
    try:
        held = rescue_for(config).pending(conn_id, state.refresh_fingerprint)
    except AACError as err:
        chain.worsen(DEGRADED_WORD, f"Could not look for a held pair: {err}")
        return chain
    if held is not None:
        chain.held_pair = {"held_at": when(held.held_at), "by": held.by}
        chain.worsen(
            DEGRADED_WORD,
            f"a refresh by {held.by} received a new pair at {when(held.held_at)} that is not stored yet; "
            f"store it now: {AAC_CLI} restore {conn_id}",
        )
    return chain


def _expiry_basis(state: TokenState) -> str | None:
    """Why the expiry shown may differ from the token's exp claim that ``connect`` printed."""
    if state.has_recorded_expiry:
        return "by this machine's clock: when its refresh asked AAC, plus AAC's expires_in"
    claims = state.claims()
    if claims.expires_at is None:
        return None
    margin = SKEW_NOTE.format(margin=duration(jwt_skew_margin(claims.lifetime)))
    return f"its exp claim says {when(claims.expires_at)}; {margin}"


def render(chain: ChainStatus, now: float) -> str:
    if chain.verdict == UNREADABLE:
        return f"{chain.conn_id}: {chain.verdict}\n  {chain.reasons[0]}"
    access = "no expiry known"
    if chain.access_expires_at is not None and chain.access_seconds_left is not None:
        left = chain.access_seconds_left
        access = (
            f"expired {duration(-left)} ago" if left <= 0 else f"{duration(left)} left"
        ) + f" (until {when(chain.access_expires_at)})"
        if chain.access_expiry_basis:
            access += f": {chain.access_expiry_basis}"
    refreshed = "never, by the provider" if chain.refreshed_at is None else when(chain.refreshed_at)
    if chain.refreshed_by:
        refreshed += f" by {chain.refreshed_by}"
    if chain.refreshed_mode:
        refreshed += f" in {chain.refreshed_mode} mode"
    elif chain.refreshed_at is not None:
        refreshed += " (mode not recorded)"
    deadline = "not recorded"
    if chain.deadline.get("deadline"):
        deadline = f"{chain.deadline['deadline']} ({chain.deadline['days_left']} days left)"
        if chain.deadline.get("source") == FROM_FAMILY_CAP:
            deadline += ", the token family's absolute cap"
    rows = [
        ("generation", str(chain.generation)),
        ("access token", access),
        ("last refresh", refreshed),
        ("refresh-token deadline", deadline),
        ("in flight", chain.in_flight or "-"),
        ("interrupted", chain.interrupted or "-"),
        (
            "held pair",
            "-"
            if chain.held_pair is None
            else f"held at {chain.held_pair['held_at']} by {chain.held_pair['by']}",
        ),
        (
            "dead chain",
            "-"
            if chain.dead_chain is None
            else f"since {chain.dead_chain['at']} by {chain.dead_chain['by']}",
        ),
    ]
    rows += [(f"mode: {component}", mode) for component, mode in chain.modes.items()]
    lines = [f"{chain.conn_id}: {chain.verdict}", table(rows)]
    lines += [f"  ! {reason}" for reason in chain.reasons]
    return "\n".join(lines)
