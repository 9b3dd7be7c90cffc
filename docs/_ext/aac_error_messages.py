"""The ``aac-error-messages`` directive: every message the code raises for one error class.

The errors page explains each class by hand (cause, fix); the messages themselves are read
from the source at build time, so the page lists every ``raise`` there is and cannot drift.
An error class importable from ``airflow_provider_aac.errors`` (exported in ``__all__`` or
not) that the page never lists fails the build (under ``-W``), and so does a directive
naming a class that is not importable from there.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

import airflow_provider_aac
from airflow_provider_aac import errors

LOG = logging.getLogger(__name__)
PACKAGE = Path(airflow_provider_aac.__file__).resolve().parent
SKIPPED = ("testing",)
NAMED_HELPERS = {
    "new_pair_hint": "<the steps to generate and store a new pair>",
    "NEW_PAIR_STEPS": "<the steps to generate and store a new pair>",
    "REJECTED_FRESH_TOKEN_HINT": "<why a 401 on a fresh token is not about its age>",
}


def documented_errors() -> set[str]:
    """Every error class a user can import from ``airflow_provider_aac.errors``."""
    return {
        name
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.AACError)
    }


@dataclass(frozen=True)
class Message:
    """One raise site: the message as words and ``{slots}`` filled in at run time."""

    parts: tuple[tuple[bool, str], ...]  # (is_slot, text)
    module: str

    @property
    def has_words(self) -> bool:
        return any(not slot and text.strip() for slot, text in self.parts)


def _slot(node: ast.AST) -> tuple[bool, str]:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in NAMED_HELPERS:
        return (True, NAMED_HELPERS[node.func.id])
    if isinstance(node, ast.Name) and node.id in NAMED_HELPERS:
        return (True, NAMED_HELPERS[node.id])
    source = ast.unparse(node)
    readable = len(source) <= 30 and " " not in source
    return (True, "{" + (source if readable else "...") + "}")


def _parts(node: ast.AST) -> list[tuple[bool, str]]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [(False, node.value)]
    if isinstance(node, ast.JoinedStr):
        out: list[tuple[bool, str]] = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                out.append((False, str(value.value)))
            elif isinstance(value, ast.FormattedValue):
                out.append(_slot(value.value))
        return out
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _parts(node.left) + _parts(node.right)
    return [_slot(node)]


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def collect_messages(package: Path = PACKAGE) -> dict[str, list[Message]]:
    """Every ``ErrorClass("...")`` call in the package (outside ``testing/``), by class name."""
    public = documented_errors()
    found: dict[str, list[Message]] = defaultdict(list)
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package.parent)
        if relative.parts[1] in SKIPPED:
            continue
        module = ".".join(relative.with_suffix("").parts)
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = _called_name(node)
            if name not in public:
                continue
            message = Message(tuple(_parts(node.args[0])), module)
            if message not in found[name]:
                found[name].append(message)
    return found


class ErrorMessages(SphinxDirective):
    """``{aac-error-messages} AACConfigError``: a list of that class's messages, with their modules."""

    required_arguments = 1

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        if name not in documented_errors():
            LOG.warning(
                "aac-error-messages: %s is not an error class of airflow_provider_aac.errors",
                name,
                location=self.get_location(),
            )
            return []
        listed = self.env.domaindata.setdefault("aac_errors", {}).setdefault("listed", {})
        listed[name] = self.env.docname
        messages = [m for m in _messages(self.env).get(name, []) if m.has_words]
        if not messages:
            return [
                nodes.paragraph(
                    text="The provider raises this class with messages built elsewhere "
                    "(from the wrapped error), or subclasses only."
                )
            ]
        items = nodes.bullet_list()
        for message in messages:
            paragraph = nodes.paragraph()
            for is_slot, text in message.parts:
                paragraph += nodes.literal(text=text) if is_slot else nodes.Text(text)
            paragraph += nodes.Text(" (")
            paragraph += nodes.literal(text=message.module)
            paragraph += nodes.Text(")")
            items += nodes.list_item("", paragraph)
        return [items]


def _messages(env: BuildEnvironment) -> dict[str, list[Message]]:
    cached = getattr(env, "_aac_error_messages", None)
    if cached is None:
        cached = collect_messages()
        env._aac_error_messages = cached  # type: ignore[attr-defined]
    return cached


def _purge(app: Sphinx, env: BuildEnvironment, docname: str) -> None:
    listed = env.domaindata.get("aac_errors", {}).get("listed", {})
    for name in [n for n, doc in listed.items() if doc == docname]:
        del listed[name]


def _merge(app: Sphinx, env: BuildEnvironment, docnames: Any, other: BuildEnvironment) -> None:
    env.domaindata.setdefault("aac_errors", {}).setdefault("listed", {}).update(
        other.domaindata.get("aac_errors", {}).get("listed", {})
    )


def _check_every_error_listed(app: Sphinx, env: BuildEnvironment) -> None:
    listed = env.domaindata.get("aac_errors", {}).get("listed", {})
    missing = sorted(documented_errors() - {"AACError"} - set(listed))
    if missing:
        LOG.warning(
            "the errors page lists no messages for %s: add an aac-error-messages directive",
            ", ".join(missing),
        )


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("aac-error-messages", ErrorMessages)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-check-consistency", _check_every_error_listed)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "env_version": 1}
