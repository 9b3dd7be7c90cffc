"""Sphinx configuration: Markdown pages (MyST) and the API reference from the docstrings."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))
sys.path.insert(0, str(DOCS / "_ext"))

# autodoc imports Airflow, which writes airflow.cfg and logs into AIRFLOW_HOME: keep them out of the tree.
AIRFLOW_HOME = tempfile.mkdtemp(prefix="aac-docs-airflow-home-")
atexit.register(shutil.rmtree, AIRFLOW_HOME, ignore_errors=True)
os.environ["AIRFLOW_HOME"] = AIRFLOW_HOME
os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")

from airflow_provider_aac import __version__  # noqa: E402

project = "airflow-provider-aac"
author = "airflow-provider-aac contributors"
copyright = "the airflow-provider-aac contributors"
release = version = __version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.graphviz",
    "aac_error_messages",
]
# The diagrams (docs/diagrams/*.dot) are drawn at build time by graphviz's dot (Debian's graphviz).
graphviz_output_format = "svg"
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
source_suffix = {".md": "markdown"}
exclude_patterns = ["_build", "_ext"]
root_doc = "index"

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
autoclass_content = "both"

html_theme = "furo"
html_title = f"airflow-provider-aac {release}"

# Nitpicky, except for what cannot resolve offline: Airflow's, the standard library's and
# HTTP libraries' classes (no intersphinx: the build must not need the network), names
# imported only for type checking, and the provider's internal modules, which the
# reference does not document.
nitpicky = True
nitpick_ignore_regex = [
    ("py:class", r"(airflow|requests|httpx|collections\.abc|datetime|typing)\..*"),
    ("py:class", r"Context|TaskInstanceKey|BaseOperator|XComArg|RunKind|RunState|RefreshOutcome|Backoff"),
    ("py:(class|func|mod|obj)", r"airflow_provider_aac\.(core|resume|runs|tokens)(\..*)?"),
    ("py:class", r"airflow_provider_aac\.hooks\.aac\.T"),
    ("py:class", r"WarningCallback|A task callback.*"),
]
