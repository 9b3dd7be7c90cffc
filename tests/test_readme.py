"""The README's promises about import paths: a refactor that moves a public name breaks here first."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
IMPORT = re.compile(r"^from (airflow_provider_aac[\w.]*) import ([\w, ]+)$", re.MULTILINE)


def test_every_import_the_readme_shows_works() -> None:
    imports = IMPORT.findall(README.read_text())
    assert imports, "the README shows how to import the provider"
    for module_name, names in imports:
        module = importlib.import_module(module_name)
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(module, name), f"README: from {module_name} import {name}"
