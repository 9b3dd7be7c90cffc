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


DOCS_SITE = "https://airflow-provider-aac.readthedocs.io/"
DOCS_PAGE = re.compile(re.escape(DOCS_SITE) + r"en/latest/(?P<page>[\w/-]+)\.html(?P<anchor>#\S*)?$")
LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)|<(?P<auto>https?://[^>\s]+)>")
DOCS = README.parent / "docs"


def _links() -> list[str]:
    return [m.group("target") or m.group("auto") for m in LINK.finditer(README.read_text())]


def test_the_readme_has_no_relative_links() -> None:
    """The README is the package index page, where a relative link leads nowhere."""
    relative = [link for link in _links() if not link.startswith("https://")]
    assert not relative, relative


def test_every_docs_site_link_names_a_page_the_docs_build_makes() -> None:
    """Checked against docs/ (each page is docs/<page>.md, built to <page>.html), without the network."""
    from airflow_provider_aac.get_provider_info import DOCS_URL

    assert DOCS_URL == DOCS_SITE
    docs_links = [link for link in _links() if link.startswith(DOCS_SITE)]
    assert len(docs_links) >= 10, docs_links
    built = DOCS / "_build" / "html"
    for link in docs_links:
        match = DOCS_PAGE.match(link)
        assert match, f"{link}: not a page of the docs site (…/en/latest/<page>.html)"
        assert match["anchor"] is None, f"{link}: anchors are not checked here; link the page"
        page = match["page"]
        assert (DOCS / f"{page}.md").is_file(), f"{link}: no docs/{page}.md"
        assert f"\n{page}\n" in (DOCS / "index.md").read_text(), f"{link}: docs/{page}.md is in no toctree"
        if built.is_dir():
            assert (built / f"{page}.html").is_file(), f"{link}: make docs built no {page}.html"
