"""AAC's OpenAPI spec as the simulator serves it, optionally without some operations.

``aac-v4-subset.json`` beside this module is the package's transcription of AAC's OpenAPI
spec v2025.23.2 (its ``info`` block says where it came from and what it covers). A
simulator started ``without_operations=("runFlow",)`` drops that operation from its routes
and from the spec it serves at ``GET /v4/open-api-spec``, as a tenant whose API has drifted
would, so ``airflow aac doctor`` and a DAG can be tried against that.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources
from typing import Any

from airflow_provider_aac.testing.simulator.wire import Route

SPEC_FILE = "aac-v4-subset.json"
METHODS = ("get", "put", "post", "delete", "patch")


@cache
def _transcription() -> str:
    return resources.files(__name__).joinpath(SPEC_FILE).read_text(encoding="utf-8")


def load_spec() -> dict[str, Any]:
    """A fresh copy of the transcription, safe to change."""
    document: dict[str, Any] = json.loads(_transcription())
    return document


def operation_ids(document: dict[str, Any]) -> list[str]:
    return [
        operation["operationId"]
        for item in document["paths"].values()
        for method, operation in item.items()
        if method in METHODS
    ]


def _route_pattern(path: str) -> str:
    """The simulator's route pattern for a spec path: ``{id}`` becomes a named digits group."""
    return re.sub(r"\{(\w+)\}", r"(?P<\1>\\d+)", path)


class SpecDocument:
    """The spec one simulator serves, and which of its routes that leaves in place."""

    def __init__(self, without_operations: Iterable[str] = ()) -> None:
        document = load_spec()
        removed = set(without_operations)
        unknown = removed - set(operation_ids(document))
        if unknown:
            raise ValueError(
                f"unknown operations {sorted(unknown)}; choose from {sorted(operation_ids(document))}"
            )
        self.removed: list[tuple[str, str]] = []  # (METHOD, route pattern)
        for path, item in list(document["paths"].items()):
            for method in [m for m in item if m in METHODS]:
                if item[method]["operationId"] in removed:
                    self.removed.append((method.upper(), _route_pattern(path)))
                    del item[method]
            if not any(m in item for m in METHODS):
                del document["paths"][path]
        self._document = document

    @property
    def document(self) -> dict[str, Any]:
        return copy.deepcopy(self._document)

    def served(self, routes: Sequence[Route]) -> list[Route]:
        """The routes less those of removed operations: a removed path answers 404, as unknown ones do."""
        return [route for route in routes if (route[0], route[1].pattern) not in self.removed]


__all__ = ["SPEC_FILE", "SpecDocument", "load_spec", "operation_ids"]
