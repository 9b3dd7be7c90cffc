"""Registering tokens with Airflow's secrets masker, so no log line can show them.

Airflow's masker recompiles one regular expression of every secret it knows each time a
new one is added, and keeps them for the life of the process. A refresh brings two new
tokens, about 600 a day at AAC's 5-minute lifetime, so a long-lived process (the
triggerer, the api-server, a worker thread pool) would spend seconds per refresh
compiling, and every log line would be scanned against thousands of dead tokens. So the
tokens of each connection are kept masked for their last ``KEEP_GENERATIONS`` pairs and
then dropped from the masker: by then the refresh token was spent long ago and the
access token has expired, so neither opens anything.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections import deque
from typing import Any

KEEP_GENERATIONS = 4
# Dead tokens are dropped a few at a time: each drop recompiles the masker's expression.
_DROP_BATCH = 8

_lock = threading.Lock()
_masked_tokens: dict[str, deque[str]] = {}


def mask(*values: str | None) -> None:
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # pragma: no cover - Airflow without the task SDK
        return
    for value in values:
        if value:
            mask_secret(value)


def mask_tokens(conn_id: str, *tokens: str | None) -> None:
    """Mask a connection's current tokens, and stop masking its long-dead ones."""
    with _lock:
        known = _masked_tokens.setdefault(conn_id, deque())
        fresh = [token for token in tokens if token and token not in known]
        known.extend(fresh)
        over = len(known) - 2 * KEEP_GENERATIONS
        dead = [known.popleft() for _ in range(over)] if over >= _DROP_BATCH else []
    mask(*fresh)
    if dead:
        _forget(dead)


def _forget(secrets: list[str]) -> None:
    """Drop dead tokens from the masker; with a masker of another shape, keep them (merely slower)."""
    with contextlib.suppress(Exception):
        from airflow.sdk._shared.secrets_masker import _secrets_masker

        masker: Any = _secrets_masker()
        with _lock:
            patterns = {re.escape(s) for secret in secrets for s in masker._adaptations(secret) if s}
            if not patterns & masker.patterns:
                return
            masker.patterns -= patterns
            masker.replacer = re.compile("|".join(masker.patterns)) if masker.patterns else None
