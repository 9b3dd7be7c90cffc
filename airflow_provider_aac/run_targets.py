"""Plans, flows and recipes found by name, because their ids differ between workspaces.

A DAG that names ``plan_name="Daily sales"`` runs the same plan in dev and in prod, where
the ids are not the same. The name is matched exactly with the listing filters of AAC API
spec v2025.23.2 (operationIds listPlans, listFlows, listWrangledDatasets: ``filter``,
``filterFields=name``, ``filterType=exact``); plans and flows are listed with
``ownershipFilter`` / ``flowsFilter`` ``all``, since a listing shows only the caller's own
objects otherwise. Zero or several matches cannot be fixed by a retry: the task fails at
once and lists what it found.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_aac.core.api import api_call
from airflow_provider_aac.core.exchange import Exchange
from airflow_provider_aac.core.retry import Backoff
from airflow_provider_aac.errors import AACRunTargetLookupError
from airflow_provider_aac.runs import RunKind

if TYPE_CHECKING:
    from airflow_provider_aac.hooks.aac import AACHook

# Enough rows to tell one match from several and to show the candidates; AAC's default is 25.
LOOKUP_LIMIT = 10


@dataclass(frozen=True)
class _Listing:
    label: str
    path: str
    extra_params: Mapping[str, str]


LISTINGS: Mapping[RunKind, _Listing] = {
    RunKind.PLAN: _Listing("plan", "/v4/plans", {"ownershipFilter": "all"}),
    RunKind.FLOW: _Listing("flow", "/v4/flows", {"flowsFilter": "all"}),
    RunKind.JOB_GROUP: _Listing("recipe", "/v4/wrangledDatasets", {}),
}


def _rows(data: Any) -> list[dict[str, Any]]:
    rows = data.get("data") if isinstance(data, dict) else data
    return [row for row in rows or [] if isinstance(row, dict)] if isinstance(rows, list) else []


def _describe(rows: list[dict[str, Any]]) -> str:
    return ", ".join(f"{row.get('name')!r} (id {row.get('id')})" for row in rows)


def lookup_params(kind: RunKind, name: str) -> dict[str, str]:
    """The listing query that finds ``name`` (``core.api_contract`` lists these parameters)."""
    return {
        "filter": name,
        "filterFields": "name",
        "filterType": "exact",
        "limit": str(LOOKUP_LIMIT),
        **LISTINGS[kind].extra_params,
    }


def _lookup_exchange(kind: RunKind, name: str, backoff: Backoff) -> Exchange[int]:
    listing = LISTINGS[kind]
    params = lookup_params(kind, name)
    rows = _rows((yield from api_call("GET", listing.path, params=params, backoff=backoff)).data)
    # Checked here too: a workspace that ignored filterType would answer near matches.
    matches = [row for row in rows if row.get("name") == name and isinstance(row.get("id"), int)]
    if len(matches) == 1:
        return int(matches[0]["id"])
    if not matches:
        near = f" AAC listed only {_describe(rows)}." if rows else ""
        raise AACRunTargetLookupError(
            f"No AAC {listing.label} is named {name!r} in this workspace (names match exactly, case "
            f"included).{near} Check the name in AAC, or that the connection's user can see the "
            f"{listing.label}; or give its id instead."
        )
    more = " (and maybe more)" if len(rows) >= LOOKUP_LIMIT else ""
    raise AACRunTargetLookupError(
        f"{len(matches)} AAC {listing.label}s are named {name!r}{more}: {_describe(matches)}. Rename "
        f"them in AAC so the name is unique, or give the id of the one to run instead."
    )


def find_by_name(hook: AACHook, kind: RunKind, name: str) -> int:
    """The id of the one plan, flow or recipe named exactly ``name``; raises for none or several."""
    return hook.run_exchange(_lookup_exchange(kind, name, hook.backoff))
