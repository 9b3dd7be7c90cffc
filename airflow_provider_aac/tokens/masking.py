"""Registering tokens with Airflow's secrets masker, so no log line can show them.

Airflow's masker recompiles one regular expression of every secret it knows each time a
new one is added, and keeps them for the life of the process. A refresh brings two new
tokens (and Airflow masks the whole, changed extra as well), about 900 new patterns a
day at AAC's 5-minute lifetime, so a long-lived process (the
triggerer, the api-server, a worker thread pool) would spend seconds per refresh
compiling, and every log line would be scanned against thousands of dead tokens. So the
tokens of each connection are kept masked for their last ``KEEP_GENERATIONS`` pairs and
then dropped from the masker: by then the refresh token was spent long ago and the
access token has expired, so neither opens anything.
"""

from __future__ import annotations

import contextlib
import importlib
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
    """Drop every masker pattern that holds a dead token; a masker of another shape is left alone.

    Airflow masks each connection's whole extra too (a new pattern at every refresh, as the
    extra changes), in the task SDK's masker and, in server processes, in the core one, so
    a pattern is dropped when it contains a dead token, not only when it is one.
    """
    escaped = [re.escape(secret) for secret in secrets]
    for module in ("airflow.sdk._shared.secrets_masker", "airflow._shared.secrets_masker"):
        with contextlib.suppress(Exception):
            masker: Any = importlib.import_module(module)._secrets_masker()
            with _lock:
                dead = {pattern for pattern in masker.patterns if any(e in pattern for e in escaped)}
                if not dead:
                    continue
                masker.patterns -= dead
                masker.replacer = re.compile("|".join(masker.patterns)) if masker.patterns else None
    re.purge()  # the compiled expressions of every earlier pattern set are large; let them go
