"""Reading a token pair from a person (a prompt without echo) or a script (stdin, a file).

Never from the command line: arguments end up in shell history and in ``ps`` output.
"""

from __future__ import annotations

import getpass
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from airflow_provider_aac.errors import AACConfigError

FORMAT_HINT = (
    'Give a JSON object {"access_token": "...", "refresh_token": "..."}, or the access token on the '
    "first line and the refresh token on the second."
)


@dataclass(frozen=True)
class Pair:
    access_token: str = field(repr=False)
    refresh_token: str = field(repr=False)
    source: str = "the tokens given"
    """Where the pair was read, for messages: "the prompt", "standard input", a file's path."""


def read_pair(*, from_stdin: bool, from_file: str | None) -> Pair:
    if from_stdin and from_file:
        raise AACConfigError("Use --stdin or --from-file, not both.")
    if from_file:
        try:
            return parse_pair(Path(from_file).read_text(), where=from_file)
        except OSError as err:
            raise AACConfigError(f"Cannot read {from_file}: {err.strerror}.") from None
    if from_stdin:
        return parse_pair(sys.stdin.read(), where="standard input")
    if not sys.stdin.isatty():
        raise AACConfigError(
            "Standard input is not a terminal, so there is no one to prompt. Pass --stdin to read the "
            "tokens from it, or --from-file PATH."
        )
    access = getpass.getpass("Access token (input hidden): ").strip()
    refresh = getpass.getpass("Refresh token (input hidden): ").strip()
    return _checked(access, refresh, where="the prompt")


def parse_pair(text: str, *, where: str) -> Pair:
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            value = json.loads(stripped)
        except ValueError:
            raise AACConfigError(f"The tokens in {where} are not valid JSON. {FORMAT_HINT}") from None
        if not isinstance(value, dict):
            raise AACConfigError(f"The tokens in {where} must be a JSON object. {FORMAT_HINT}")
        access, refresh = value.get("access_token"), value.get("refresh_token")
        return _checked(
            access if isinstance(access, str) else "",
            refresh if isinstance(refresh, str) else "",
            where=where,
        )
    lines = [line.strip() for line in stripped.splitlines() if line.strip()]
    if len(lines) != 2:
        raise AACConfigError(f"Expected two tokens in {where}, found {len(lines)} lines. {FORMAT_HINT}")
    return _checked(lines[0], lines[1], where=where)


def _checked(access: str, refresh: str, *, where: str) -> Pair:
    missing = [name for name, value in (("access token", access), ("refresh token", refresh)) if not value]
    if missing:
        raise AACConfigError(f"No {' and no '.join(missing)} in {where}. {FORMAT_HINT}")
    if access.lower().startswith("bearer "):
        access = access[len("bearer ") :].strip()
    if access == refresh:
        raise AACConfigError(
            f"The access token and the refresh token in {where} are the same; paste both tokens AAC showed."
        )
    return Pair(access.strip(), refresh.strip(), source=where)
