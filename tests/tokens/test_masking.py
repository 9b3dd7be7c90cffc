"""Masking stays bounded in a long-lived process, and current tokens stay masked."""

from __future__ import annotations

import json
import secrets

from airflow.sdk._shared.secrets_masker import _secrets_masker, redact
from airflow.sdk.log import mask_secret

from airflow_provider_aac.tokens.masking import KEEP_GENERATIONS, mask_tokens


def test_two_hundred_refreshes_keep_the_masker_small_and_the_live_pair_masked() -> None:
    masker = _secrets_masker()
    before = len(masker.patterns)
    history = []
    for _ in range(200):
        access, refresh = "eyJ" + secrets.token_urlsafe(300), secrets.token_urlsafe(48)
        history.append((access, refresh))
        mask_tokens("aac_masked", access, refresh)
        mask_secret(
            json.dumps({"access_token": access, "refresh_token": refresh})
        )  # as Airflow masks the extra
    grown = len(masker.patterns) - before
    assert grown <= 6 * KEEP_GENERATIONS, grown
    access, refresh = history[-1]
    assert redact(f"sent {access} and {refresh}") == "sent *** and ***"
    recent_access, _ = history[-KEEP_GENERATIONS]
    assert recent_access not in str(redact(recent_access))
