"""The package's layers only look down: what each layer may import, read from the source.

The rule (docs/architecture.md): ``core`` is sans-IO and imports neither Airflow nor any
other part of the provider; ``transport`` (the HTTP edges) imports only ``core``; ``tokens``
imports only ``core``, ``transport`` and the base modules beside the package root that
wrap Airflow (``compat``, ``errors``, ``metrics``). Lazy imports inside functions count too;
imports only for type checking count as well, because they are a dependency all the same.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "airflow_provider_aac"
BASE_MODULES = {"compat", "errors", "metrics"}
ALLOWED = {
    "core": {"core"},
    "transport": {"core", "transport"},
    "tokens": {"core", "transport", "tokens"} | BASE_MODULES,
}


def imports_of(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute, lazy ones included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module == "airflow_provider_aac":
                names.update(f"airflow_provider_aac.{alias.name}" for alias in node.names)
            else:
                names.add(node.module)
    return names


def provider_parts(names: set[str]) -> set[str]:
    """The provider's top-level parts (a subpackage, or a root module) among ``names``."""
    return {name.split(".")[1] for name in names if name.startswith("airflow_provider_aac.")}


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_a_layer_imports_only_what_lies_below_it(layer: str) -> None:
    wrong = {
        str(path.relative_to(PACKAGE)): sorted(provider_parts(imports_of(path)) - ALLOWED[layer])
        for path in sorted((PACKAGE / layer).rglob("*.py"))
    }
    assert {path: parts for path, parts in wrong.items() if parts} == {}


@pytest.mark.parametrize("layer", ["core", "transport"])
def test_core_and_the_http_edges_import_no_airflow(layer: str) -> None:
    airflow = {
        str(path.relative_to(PACKAGE))
        for path in (PACKAGE / layer).rglob("*.py")
        if any(name == "airflow" or name.startswith("airflow.") for name in imports_of(path))
    }
    assert airflow == set()


def test_no_module_of_tokens_imports_another_that_imports_it_back() -> None:
    graph = {
        path.stem: {
            name.rsplit(".", 1)[1]
            for name in imports_of(path)
            if name.startswith("airflow_provider_aac.tokens.")
        }
        for path in (PACKAGE / "tokens").glob("*.py")
    }
    cycles = {tuple(sorted((a, b))) for a, deps in graph.items() for b in deps if a in graph.get(b, set())}
    assert cycles == set()
