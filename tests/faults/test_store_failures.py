"""Once AAC has answered, the new pair is never lost to a store that fails.

Findings 3 and 4 of the fault review: an api-server restart or a 502 during the final
write discarded the pair (the store retried for 3.5 s), and a 200 without an access
token in metadata-DB mode rolled the rotated refresh token back while saying it was
stored. Each test lets AAC rotate for real, breaks the store from outside, and then
checks what the user sees: the call's outcome, the stored pair, and AAC's view of it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.faults.scene import answered, scene
from tests.support.airflow_env import AirflowHome, ApiServer
from tests.support.private_services import PrivatePostgres
from tests.support.processes import poll_until

REST_MODES = ("lock_postgres", "lock_redis", "single_writer")
# How long the metadata DB stays down: the length of the fault, not a synchronisation.
DB_OUTAGE = 6.0


@pytest.mark.parametrize("mode", REST_MODES)
def test_an_api_server_outage_during_the_store_is_waited_out(
    fault_home: AirflowHome, airflow_api_server: ApiServer, mode: str
) -> None:
    with scene(fault_home, mode, api_server=airflow_api_server, store_patience=120) as s:
        assert s.api_proxy is not None
        answer = s.token_rule().hold_response()
        refresher = s.start("writer" if mode == "single_writer" else "force")
        answer.wait_forwarded(timeout=60)  # AAC has rotated; its answer is held on the way back
        s.api_proxy.down(502)
        answer.release()
        # Far more failed store attempts than the 3.5 s of retries that used to end in a lost pair.
        poll_until(
            lambda: answered(s.api_proxy, "down") >= 8 or refresher.process.poll() is not None or None,
            timeout=60,
            interval=0.05,
            what="the refresher to retry its store through the outage",
        )
        s.api_proxy.up()
        result = refresher.result()
        assert result["ok"], result
        assert result["generation"] == 1
        assert "the new pair could not be stored yet" in result["stderr"], result["stderr"]
        s.assert_chain_alive()
        assert s.sim.stats()["refreshes"] == 1


def test_a_200_without_an_access_token_keeps_the_rotated_refresh_token(
    fault_home: AirflowHome, airflow_api_server: ApiServer
) -> None:
    with scene(fault_home, "metadata_db", api_server=airflow_api_server) as s:
        s.token_rule().strip_json_field("access_token")
        first = s.run("force")
        assert first["error_type"] == "AACTransientError", first
        assert "The rotated refresh token was stored" in first["error"]
        assert s.stored()["generation"] == 1
        s.assert_chain_alive()
        second = s.run("token")  # the kept access token counts as expired: one more refresh
        assert second["ok"], second
        assert second["generation"] == 2
        s.assert_chain_alive()


@pytest.fixture
def private_pg_home(
    private_postgres: PrivatePostgres, monkeypatch: pytest.MonkeyPatch
) -> Iterator[AirflowHome]:
    """An Airflow home whose metadata DB is a PostgreSQL server the test may stop."""
    monkeypatch.setenv("AAC_TEST_PG_URL", private_postgres.url)
    with AirflowHome(backend="postgres") as home:
        home.migrate()
        yield home


def test_a_metadata_db_outage_during_the_store_is_waited_out(
    private_pg_home: AirflowHome, private_postgres: PrivatePostgres
) -> None:
    with scene(private_pg_home, "metadata_db", store_patience=120) as s:
        answer = s.token_rule().hold_response()
        refresher = s.start("force")
        answer.wait_forwarded(timeout=60)
        private_postgres.stop(mode="immediate")
        answer.release()
        poll_until(
            lambda: s.held_on_disk() or None,
            timeout=60,
            interval=0.05,
            what="the new pair to be held in the local spool",
        )
        time.sleep(DB_OUTAGE)
        private_postgres.start()
        result = refresher.result()
        assert result["ok"], result
        assert "the new pair could not be stored yet" in result["stderr"]
        assert result["generation"] == 1
        assert s.held_on_disk() == [], "a stored pair is no longer held"
        s.assert_chain_alive()
