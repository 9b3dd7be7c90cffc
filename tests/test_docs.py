"""The docs' promises that the code can break: every error, every connection key, every import shown.

``make docs`` fails on a broken reference or an error class the errors page does not list;
these checks say which page to fix without building the site.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import airflow_provider_aac
import airflow_provider_aac.errors as errors
from airflow_provider_aac.get_provider_info import CONN_FIELDS
from airflow_provider_aac.runs import ENDPOINTS

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PACKAGE = Path(airflow_provider_aac.__file__).resolve().parent
IMPORT = re.compile(r"^from (airflow_provider_aac[\w.]*) import ([\w, ]+)$", re.MULTILINE)
# How the code reads a key of the aac connection's extra.
EXTRA_READ = re.compile(r'\.(?:text|seconds)\("(\w+)"\)|config\.extra\.get\("(\w+)"\)')


def _error_sections() -> set[str]:
    return set(re.findall(r"(?m)^### `(AAC\w+Error)`$", (DOCS / "errors.md").read_text()))


def _error_directives() -> set[str]:
    return set(re.findall(r"(?m)^```\{aac-error-messages\} (\w+)$", (DOCS / "errors.md").read_text()))


def _documented_errors() -> set[str]:
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        from aac_error_messages import documented_errors
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    return documented_errors()


def test_every_error_class_has_a_section_with_its_messages_on_the_errors_page() -> None:
    importable = _documented_errors() - {"AACError"}
    assert set(errors.__all__) - {"AACError"} <= importable
    assert not importable - _error_sections(), (
        f"add a section to docs/errors.md for {sorted(importable - _error_sections())}"
    )
    assert _error_sections() == _error_directives()


def test_every_error_on_the_errors_page_imports_from_the_errors_module() -> None:
    unknown = _error_sections() - _documented_errors()
    assert not unknown, f"docs/errors.md has sections for {sorted(unknown)}, not importable from errors"


def test_the_errors_page_lists_what_a_dag_author_catches() -> None:
    text = (DOCS / "errors.md").read_text()
    exported = text[text.index("## What to catch") :].split("\n## ", 1)[0]
    assert set(errors.__all__) <= set(re.findall(r"`(AAC\w*Error)`", exported))


def test_the_errors_page_reads_the_messages_from_the_source() -> None:
    sys.path.insert(0, str(DOCS / "_ext"))
    try:
        from aac_error_messages import collect_messages
    finally:
        sys.path.remove(str(DOCS / "_ext"))
    found = collect_messages()
    assert set(found) <= _documented_errors()
    chain_broken = [
        "".join(text for _, text in message.parts) for message in found["AACTokenChainBrokenError"]
    ]
    assert any("(invalid_grant)" in text and "{conn_id}" in text for text in chain_broken), chain_broken
    assert len(found["AACConfigError"]) >= 20


def test_every_key_the_provider_reads_from_the_extra_is_on_the_connection_page() -> None:
    read = {
        key
        for path in PACKAGE.rglob("*.py")
        for match in EXTRA_READ.findall(path.read_text())
        for key in match
    }
    keys = set(CONN_FIELDS) | (read - {""}) | {endpoints.url_key for endpoints in ENDPOINTS.values()}
    assert len(keys) >= 15
    page = (DOCS / "connection.md").read_text()
    missing = {key for key in keys if f"`{key}`" not in page}
    assert not missing, f"document these extra keys in docs/connection.md: {sorted(missing)}"


def test_every_import_the_docs_show_works() -> None:
    shown = [(page.name, *m) for page in sorted(DOCS.glob("*.md")) for m in IMPORT.findall(page.read_text())]
    assert len(shown) >= 3
    for page, module_name, names in shown:
        module = importlib.import_module(module_name)
        for name in (n.strip() for n in names.split(",")):
            assert hasattr(module, name), f"docs/{page}: from {module_name} import {name}"
