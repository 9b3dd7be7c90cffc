"""The one compat module answers for the Airflow release it runs on (3.0 to 3.3).

CI runs this file on the newest patch of every supported release (``make compat``),
so each moved name and each form path is checked where it really differs.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from airflow import __version__ as airflow_version

from airflow_provider_aac import compat
from airflow_provider_aac.compat import AIRFLOW_V_3_1_PLUS, connection_tested_as
from airflow_provider_aac.get_provider_info import CONN_FIELDS
from airflow_provider_aac.testing.simulator import AACSimulator
from tests.support.airflow_env import ApiServer
from tests.support.airflow_home import minted_aac_extra
from tests.support.spec_summary import SPEC_COMPLETE


@pytest.mark.parametrize("name", sorted(compat._HOMES))
def test_every_moved_name_resolves_on_this_airflow(name: str) -> None:
    value = getattr(compat, name)
    assert inspect.isclass(value) or callable(value) or hasattr(value, "get"), (name, value)


def test_version_facts_follow_the_installed_release() -> None:
    major, minor = (int(part) for part in airflow_version.split(".")[:2])
    assert (major, minor) >= (3, 0)
    assert ((major, minor) >= (3, 2)) == compat.DECLARATIVE_CONNECTION_FORM
    assert ((major, minor) >= (3, 3)) == compat.TRIGGERER_CALLS_ON_KILL


def test_the_command_fix_texts_name_exists_on_this_airflow(tmp_path: Path) -> None:
    """``airflow aac`` from 3.2; before, only the ``airflow-aac`` script: fix texts must name one that runs."""
    program, *args = compat.AAC_CLI.split()
    command = (
        [sys.executable, "-m", "airflow", *args]
        if program == "airflow"
        else [str(Path(sys.executable).parent / program)]
    )
    result = subprocess.run(
        [*command, "status", "--help"],
        env={**os.environ, "AIRFLOW_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--warn-days" in result.stdout


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NotAName'"):
        compat.NotAName  # noqa: B018


def test_the_ui_gets_the_whole_form_on_this_airflow() -> None:
    """What the api-server sends the connection form, through whichever path this release uses.

    In a fresh interpreter: building the form swaps WTForms for stand-ins inside Airflow's
    providers manager, which would leak into the other tests of this process.
    """
    probe = textwrap.dedent(
        """
        import json
        from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

        (meta,) = [hook for hook in HookMetaService.hook_meta_data() if hook.connection_type == "aac"]
        print(json.dumps(meta.model_dump(mode="json")))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    meta = json.loads(out.stdout.strip().splitlines()[-1])
    assert meta["hook_name"] == "Alteryx Analytics Cloud"
    fields = meta["extra_fields"] or {}
    assert set(CONN_FIELDS) >= set(fields) >= {"access_token", "refresh_token", "client_id", "refresh_mode"}
    for secret in ("access_token", "refresh_token"):
        assert fields[secret]["schema"]["format"] == "password", secret
    assert fields["client_id"]["schema"].get("format") != "password"
    assert (meta["standard_fields"]["host"]["title"] or "").startswith("API base URL")
    assert meta["standard_fields"]["password"]["hidden"]


# Airflow's REST connection test runs the hook on a copy under a random id.


def test_outside_airflows_rest_test_there_is_no_other_id() -> None:
    assert connection_tested_as("aac_default") is None


def test_the_rest_test_answers_for_the_users_connection(
    airflow_api_server: ApiServer, aac_simulator: AACSimulator
) -> None:
    conn_id = "aac_compat_rest_test"
    airflow_api_server.add_aac_connection(conn_id, aac_simulator)
    listed = airflow_api_server.request_ok("GET", f"/api/v2/connections/{conn_id}")
    body = {k: listed[k] for k in ("connection_id", "conn_type", "host", "port", "extra")}
    answer = airflow_api_server.request_ok("POST", "/api/v2/connections/test", json=body)
    if not AIRFLOW_V_3_1_PLUS:
        # 3.0 tests exactly what it is sent: here the masked tokens it listed.
        assert answer["status"] is False
        assert f"The access token in connection {conn_id!r} is Airflow's mask ('***')" in answer["message"]
        body["extra"] = json.dumps(minted_aac_extra(aac_simulator))
        answer = airflow_api_server.request_ok("POST", "/api/v2/connections/test", json=body)
    assert answer == {
        "status": True,
        "message": f"Connection {conn_id!r}: Connected to AAC as sim@example.com. {SPEC_COMPLETE}",
    }

    unsaved = {"connection_id": "aac_compat_unsaved", "conn_type": "aac", "host": "127.0.0.1", "extra": "{}"}
    answer = airflow_api_server.request_ok("POST", "/api/v2/connections/test", json=unsaved)
    assert answer["status"] is False
    assert (
        "The host of connection 'aac_compat_unsaved' (127.0.0.1) has no http(s) scheme" in answer["message"]
    )
