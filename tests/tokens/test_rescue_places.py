"""The rescue places, against a real disk, a real Redis and a real PostgreSQL."""

from __future__ import annotations

import stat
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.fernet import Fernet

from airflow_provider_aac.core.keeping import HeldPair
from airflow_provider_aac.core.token_grant import TokenGrant
from airflow_provider_aac.tokens.rescue_places import LocalSpool, PostgresPlace, RedisPlace, RescuePlace


def pair(conn_id: str, spends: str = "fp-1") -> HeldPair:
    grant = TokenGrant("held.access.token", "held-refresh-" + uuid.uuid4().hex, 300.0)
    return HeldPair(conn_id, spends, grant, 1.0, 2.0, "h:1")


def lock_conn(backend: str) -> Any:
    if backend == "redis":
        return SimpleNamespace(
            conn_id="rescue_redis", conn_type="redis", host="127.0.0.1", port=6379, schema=None,
            login=None, password=None, extra_dejson={},
        )  # fmt: skip
    return SimpleNamespace(
        conn_id="rescue_pg", conn_type="postgres", host="127.0.0.1", port=5432, schema="postgres",
        login="postgres", password=None, extra_dejson={},
    )  # fmt: skip


@pytest.fixture(params=["spool", "redis", "postgres"])
def place(request: pytest.FixtureRequest, tmp_path: Path) -> RescuePlace:
    cipher = Fernet(Fernet.generate_key())
    if request.param == "spool":
        return LocalSpool(tmp_path / "aac_rescue", cipher)
    if request.param == "redis":
        return RedisPlace(lock_conn("redis"), cipher)
    return PostgresPlace(lock_conn("postgres"), cipher)


def test_a_place_holds_finds_and_drops_pairs_by_the_token_they_replace(place: RescuePlace) -> None:
    conn_id = f"aac_rescue_{uuid.uuid4().hex[:8]}"
    first, second = pair(conn_id, "fp-1"), pair(conn_id, "fp-2")
    place.hold(first)
    place.hold(second)
    place.hold(pair(f"{conn_id}_other"))
    assert sorted(p.spends for p in place.held(conn_id)) == ["fp-1", "fp-2"]
    assert first in place.held(conn_id)
    place.drop(conn_id, "fp-1")
    assert place.held(conn_id) == [second]
    place.drop(conn_id, "fp-2")
    place.drop(f"{conn_id}_other", "fp-1")
    assert place.held(conn_id) == []


def test_the_spool_is_encrypted_and_readable_by_its_owner_only(tmp_path: Path) -> None:
    spool = LocalSpool(tmp_path / "aac_rescue", Fernet(Fernet.generate_key()))
    held = pair("aac_spool")
    spool.hold(held)
    [path] = list((tmp_path / "aac_rescue").iterdir())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "aac_rescue").stat().st_mode) == 0o700
    raw = path.read_bytes()
    assert held.grant.refresh_token is not None and held.grant.refresh_token.encode() not in raw


def test_a_pair_under_another_fernet_key_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    LocalSpool(tmp_path / "aac_rescue", Fernet(Fernet.generate_key())).hold(pair("aac_rotated_key"))
    other = LocalSpool(tmp_path / "aac_rescue", Fernet(Fernet.generate_key()))
    assert other.held("aac_rotated_key") == []
    assert "cannot be read (InvalidToken)" in caplog.text
