"""``doctor CONN_ID``: does this tenant's API offer what the provider relies on, and is the chain sound?

It reads ``GET /v4/open-api-spec`` from the user's workspace with the stored access token
and checks, endpoint by endpoint, every path, method, parameter, answer field and status
value listed in ``core.api_contract`` (``core.spec_check``), then adds the checks of
``airflow aac status``. It spends no refresh token: when the stored access token has
expired it says so and points at ``airflow aac refresh`` instead of refreshing.

Exit status: 4 when the token chain is dead, 2 when the tenant's spec lacks something the
provider needs, 1 when the spec could not be read, 3 when the chain is degraded, else 0.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_aac.cli.output import DEAD, DEGRADED, FAILED, OK, duration, fail, say
from airflow_provider_aac.cli.status import DEAD_WORD, DEGRADED_WORD, UNREADABLE, ChainStatus, chain_status
from airflow_provider_aac.cli.status import render as render_chain
from airflow_provider_aac.core.api import USER_AGENT, aac_exception, decode_body
from airflow_provider_aac.core.api_contract import OPEN_API_SPEC_PATH
from airflow_provider_aac.core.spec_check import OperationReport, check, spec_from_answer, spec_version
from airflow_provider_aac.core.token_health import check_thresholds
from airflow_provider_aac.errors import AACError
from airflow_provider_aac.tokens.connection import read_config

DRIFT = 2
SPEC_TIMEOUT = 60.0


@dataclass
class SpecRead:
    url: str
    document: Any = None
    problem: str | None = None
    reports: list[OperationReport] = field(default_factory=list)

    @property
    def missing(self) -> list[OperationReport]:
        return [report for report in self.reports if not report.ok]

    def as_dict(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "version": None if self.document is None else spec_version(self.document),
            "read": self.document is not None,
            "problem": self.problem,
            "operations": [report.as_dict() for report in self.reports],
        }


def run(args: argparse.Namespace) -> int:
    try:
        warn_days, fail_days = check_thresholds(args.warn_days, args.fail_days)
    except AACError as err:
        return fail("doctor", err)
    now = time.time()
    chain = chain_status(args.conn_id, now, warn_days, fail_days)
    spec = read_spec(args.conn_id, now)
    status = exit_status(chain, spec)
    if args.json:
        payload = {
            "conn_id": args.conn_id,
            "ok": status == OK,
            "exit_status": status,
            "spec": spec.as_dict(),
            "token_chain": chain.as_dict(),
        }
        say(json.dumps(payload, indent=2))
    else:
        say(render(args.conn_id, chain, spec, now, status))
    return status


def exit_status(chain: ChainStatus, spec: SpecRead) -> int:
    if chain.verdict == DEAD_WORD:
        return DEAD
    if spec.missing:
        return DRIFT
    if spec.document is None or chain.verdict == UNREADABLE:
        return FAILED
    return DEGRADED if chain.verdict == DEGRADED_WORD else OK


def read_spec(conn_id: str, now: float) -> SpecRead:
    """The tenant's spec, read with the stored access token as it is; never a refresh."""
    try:
        config = read_config(conn_id)
        state = config.token_state()
    except AACError as err:
        return SpecRead(OPEN_API_SPEC_PATH, problem=str(err))
    spec = SpecRead(config.base_url + OPEN_API_SPEC_PATH)
    left = state.seconds_left(now)
    if state.expires_at() is not None and left <= 0:
        spec.problem = (
            f"The stored access token expired {duration(-left)} ago, and doctor spends no refresh token. "
            f"Refresh once (airflow aac refresh {conn_id}) or let the refresh DAG run, then run doctor "
            f"again; airflow aac status {conn_id} shows the chain."
        )
        return spec
    spec.problem, data = _get(spec.url, state.access_token, conn_id)
    if spec.problem is not None:
        return spec
    spec.document = spec_from_answer(data)
    if spec.document is None:
        spec.problem = f"The answer of GET {spec.url} is not an OpenAPI document (it has no 'paths')."
        return spec
    spec.reports = check(spec.document)
    return spec


def _get(url: str, access_token: str, conn_id: str) -> tuple[str | None, Any]:
    import requests

    try:
        response = requests.get(
            url,
            headers={
                "Authorization": f"Bearer {access_token}",
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
            },
            timeout=SPEC_TIMEOUT,
            allow_redirects=False,
        )
    except requests.RequestException as err:
        return (
            f"Could not reach {url} ({type(err).__name__}). Check the connection's host and the network.",
            None,
        )
    data = decode_body(response.content)
    if response.status_code == 401:
        return (
            f"AAC answered 401 to GET {url}: it does not accept the stored access token. Doctor spends no "
            f"refresh token: see airflow aac status {conn_id}, and refresh with airflow aac refresh {conn_id}.",
            None,
        )
    if response.status_code >= 400:
        name, message = aac_exception(data)
        words = ": ".join(part for part in (name, message) if part)
        return f"AAC answered {response.status_code} to GET {url}" + (
            f": {words}" if words else ""
        ) + ".", None
    return None, data


def render(conn_id: str, chain: ChainStatus, spec: SpecRead, now: float, status: int) -> str:
    version = None if spec.document is None else spec_version(spec.document)
    lines = [f"{conn_id}: API spec {version or '(not read)'} from {spec.url}"]
    if spec.problem:
        lines.append(f"  ! {spec.problem}")
    for report in spec.reports:
        entry = report.entry
        lines.append(
            f"  {'ok     ' if report.ok else 'MISSING'}  {entry.method:<4} {entry.path} ({entry.operation_id})"
        )
        lines += [f"             missing: {f.text}" for f in report.findings if f.severity == "missing"]
        lines += [f"             note: {f.text}" for f in report.findings if f.severity == "note"]
    lines += ["", "token chain (as airflow aac status):", render_chain(chain, now), ""]
    lines.append(_verdict(spec, status))
    return "\n".join(lines)


def _verdict(spec: SpecRead, status: int) -> str:
    if status == DRIFT:
        names = ", ".join(report.entry.operation_id for report in spec.missing)
        return (
            f"verdict: the tenant's API lacks what the provider needs ({names}); tasks using it will fail. "
            f"Exit {status}."
        )
    if status == OK:
        return f"verdict: everything the provider relies on is in the tenant's spec, and the chain is healthy. Exit {status}."
    return f"verdict: see the lines marked ! above. Exit {status}."
