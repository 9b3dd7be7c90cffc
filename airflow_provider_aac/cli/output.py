"""What the commands print: results on stdout, diagnostics and errors on stderr."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from airflow_provider_aac.core.token_state import utc_iso

OK = 0
FAILED = 1
DEGRADED = 3
DEAD = 4


def logs_to_stderr() -> None:
    """Airflow's console log handler writes to stdout; a script reading our output must not get logs."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stdout:
            handler.setStream(sys.stderr)


def say(line: str = "") -> None:
    print(line, flush=True)


def fail(command: str, message: object) -> int:
    print(f"airflow aac {command}: {message}", file=sys.stderr, flush=True)
    return FAILED


def table(rows: Sequence[tuple[str, str]]) -> str:
    """Two aligned columns, label and value."""
    width = max((len(label) for label, _ in rows), default=0)
    return "\n".join(f"  {label.ljust(width)}  {value}" for label, value in rows)


def when(epoch: float | None) -> str:
    return "-" if epoch is None else utc_iso(epoch).replace("+00:00", "Z")


# connect shows a token's exp claim; status and the refreshes count it as ending this much earlier.
SKEW_NOTE = "the provider counts it as ending {margin} earlier, a margin for clocks that disagree"


def duration(seconds: float | None) -> str:
    """A length of time as a person reads it: 4m 10s, 3h 05m, 12d 4h."""
    if seconds is None:
        return "unknown"
    sign = "-" if seconds < 0 else ""
    left = int(abs(seconds))
    days, rest = divmod(left, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{sign}{days}d {hours}h"
    if hours:
        return f"{sign}{hours}h {minutes:02d}m"
    if minutes:
        return f"{sign}{minutes}m {secs:02d}s"
    return f"{sign}{secs}s"
