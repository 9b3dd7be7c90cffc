"""The README's promises about import paths: a refactor that moves a public name breaks here first."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import airflow_provider_aac.errors as errors

README = Path(__file__).resolve().parents[1] / "README.md"
IMPORT = re.compile(r"^from (airflow_provider_aac[\w.]*) import ([\w, ]+)$", re.MULTILINE)


def _error_table_names() -> set[str]:
    section = README.read_text().split("## What the errors mean", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return {name for row in rows for name in re.findall(r"`(AAC\w+Error)`", row.split("|")[1])}


def test_every_import_the_readme_shows_works() -> None:
    imports = IMPORT.findall(README.read_text())
    assert imports, "the README shows how to import the provider"
    for module_name, names in imports:
        module = importlib.import_module(module_name)
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(module, name), f"README: from {module_name} import {name}"


def test_every_error_in_the_readme_table_imports_from_the_errors_module() -> None:
    listed = _error_table_names()
    assert len(listed) >= 20
    for name in listed:
        assert name in errors.__all__, f"{name} is in the README's error table but not in errors.__all__"


def test_every_public_error_has_a_row_in_the_readme_table() -> None:
    unlisted = set(errors.__all__) - _error_table_names() - {"AACError"}
    assert not unlisted, f"add a row to the README's error table for {sorted(unlisted)}"
