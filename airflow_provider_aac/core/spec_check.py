"""Does an OpenAPI document offer everything the provider relies on (``core.api_contract``)?

Used by ``airflow aac doctor`` against the spec a tenant serves, and by the contract test
against the package's own transcription. Works on OpenAPI 3.0 and 3.1 documents as plain
dicts; it follows local ``$ref``s, ``allOf``, ``anyOf`` and ``oneOf``, and matches paths
whatever their template variables are called (``{id}`` or ``{planSnapshotRunId}``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from airflow_provider_aac.core.api_contract import RELIED_ON, ReliedOn

MISSING = "missing"
NOTE = "note"
_MAX_DEPTH = 32


@dataclass(frozen=True)
class Finding:
    severity: str  # MISSING: the provider needs it; NOTE: worth knowing, nothing breaks
    text: str


@dataclass
class OperationReport:
    entry: ReliedOn
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(finding.severity == MISSING for finding in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {
            "operation": self.entry.operation_id,
            "method": self.entry.method,
            "path": self.entry.path,
            "ok": self.ok,
            "missing": [f.text for f in self.findings if f.severity == MISSING],
            "notes": [f.text for f in self.findings if f.severity == NOTE],
        }


class _Resolver:
    def __init__(self, document: Mapping[str, Any]) -> None:
        self._document = document

    def resolve(self, node: Any) -> Any:
        for _ in range(_MAX_DEPTH):
            if not (isinstance(node, Mapping) and isinstance(node.get("$ref"), str)):
                return node
            reference = node["$ref"]
            if not reference.startswith("#/"):
                return {}
            target: Any = self._document
            for part in reference[2:].split("/"):
                part = part.replace("~1", "/").replace("~0", "~")
                target = target.get(part) if isinstance(target, Mapping) else None
            node = target
        return {}

    def members(self, schema: Any, depth: int = 0) -> Iterator[Mapping[str, Any]]:
        """The schema and everything it is made of (allOf, anyOf, oneOf), resolved."""
        schema = self.resolve(schema)
        if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
            return
        yield schema
        for key in ("allOf", "anyOf", "oneOf"):
            for part in schema.get(key) or ():
                yield from self.members(part, depth + 1)

    def properties(self, schema: Any) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for member in self.members(schema):
            found.update(member.get("properties") or {})
        return found

    def required(self, schema: Any) -> set[str]:
        return {name for member in self.members(schema) for name in member.get("required") or ()}

    def items(self, schema: Any) -> Any:
        return next((m["items"] for m in self.members(schema) if "items" in m), None)

    def enum(self, schema: Any) -> set[str] | None:
        values: set[str] = set()
        constrained = False
        for member in self.members(schema):
            if isinstance(member.get("enum"), list):
                constrained = True
                values |= {str(value) for value in member["enum"]}
            if "const" in member:
                constrained = True
                values.add(str(member["const"]))
        return values if constrained else None

    def field(self, schema: Any, dotted: str) -> tuple[Any, bool] | None:
        """The schema of a dotted field and whether its last step is required; None if absent."""
        required = True
        for step in dotted.split("."):
            in_array = step.endswith("[]")
            name = step[:-2] if in_array else step
            properties = self.properties(schema)
            if name not in properties:
                return None
            required = name in self.required(schema)
            schema = properties[name]
            if in_array:
                schema = self.items(schema)
                if schema is None:
                    return None
        return schema, required


def _template(path: str) -> str:
    return re.sub(r"\{[^}]*\}", "{}", path)


def find_operation(document: Mapping[str, Any], method: str, path: str) -> tuple[Any, Any] | None:
    """The path item and operation for ``method path``, or None."""
    paths = document.get("paths")
    if not isinstance(paths, Mapping):
        return None
    wanted = _template(path)
    for candidate, item in paths.items():
        if isinstance(item, Mapping) and _template(str(candidate)) == wanted:
            operation = item.get(method.lower())
            return (item, operation) if isinstance(operation, Mapping) else None
    return None


def success_schema(resolver: _Resolver, operation: Mapping[str, Any]) -> Any:
    """The JSON schema of the first 2xx answer, or None."""
    responses = operation.get("responses") or {}
    for code in sorted(str(c) for c in responses):
        if not code.startswith("2"):
            continue
        response = resolver.resolve(responses.get(code) if code in responses else responses.get(int(code)))
        content = (response or {}).get("content") or {}
        for media, body in content.items():
            if "json" in media:
                return (body or {}).get("schema")
    return None


def _parameter_names(resolver: _Resolver, item: Mapping[str, Any], operation: Mapping[str, Any]) -> set[str]:
    names = set()
    for parameter in [*(item.get("parameters") or ()), *(operation.get("parameters") or ())]:
        parameter = resolver.resolve(parameter)
        if isinstance(parameter, Mapping) and parameter.get("name"):
            where = parameter.get("in")
            names.add(f"{where}:{str(parameter['name']).lower() if where == 'header' else parameter['name']}")
    return names


def check_operation(document: Mapping[str, Any], entry: ReliedOn) -> OperationReport:
    report = OperationReport(entry)
    missing = report.findings.append
    resolver = _Resolver(document)
    found = find_operation(document, entry.method, entry.path)
    if found is None:
        missing(Finding(MISSING, f"{entry.method} {entry.path} is not in the spec"))
        return report
    item, operation = found
    names = _parameter_names(resolver, item, operation)
    for query in entry.query:
        if f"query:{query}" not in names:
            missing(Finding(MISSING, f"query parameter {query!r}"))
    for header in entry.headers:
        if f"header:{header.lower()}" not in names:
            missing(Finding(MISSING, f"header {header!r}"))
    if entry.body:
        content = (resolver.resolve(operation.get("requestBody")) or {}).get("content") or {}
        body_schema = next((b.get("schema") for m, b in content.items() if "json" in m), None)
        known = resolver.properties(body_schema)
        for name in entry.body:
            if name not in known:
                missing(Finding(MISSING, f"request body field {name!r}"))
    schema = success_schema(resolver, operation)
    for dotted in entry.reads:
        located = resolver.field(schema, dotted)
        if located is None:
            missing(Finding(MISSING, f"answer field {dotted!r}"))
        elif not located[1]:
            missing(Finding(NOTE, f"answer field {dotted!r} is optional in this spec"))
    absent = [dotted for dotted in entry.optional_reads if resolver.field(schema, dotted) is None]
    if absent:
        fields = ", ".join(repr(dotted) for dotted in absent)
        verb = "is" if len(absent) == 1 else "are"
        missing(
            Finding(
                NOTE,
                f"answer field{'s' * (len(absent) > 1)} {fields} (read when present) {verb} not in this spec",
            )
        )
    if entry.status_field is not None:
        _check_statuses(resolver, schema, entry, report)
    return report


def _check_statuses(resolver: _Resolver, schema: Any, entry: ReliedOn, report: OperationReport) -> None:
    where = entry.status_field or "the answer"
    status_schema = (
        schema if not entry.status_field else (resolver.field(schema, entry.status_field) or (None,))[0]
    )
    values = resolver.enum(status_schema)
    if values is None:
        report.findings.append(Finding(NOTE, f"{where} has no enum in this spec; statuses not checked"))
        return
    for status in entry.statuses:
        if status not in values:
            report.findings.append(Finding(MISSING, f"status {status!r} is not among {where}'s values"))
    unknown = sorted(values - set(entry.statuses) - _KNOWN_NON_TERMINAL)
    if unknown:
        report.findings.append(
            Finding(NOTE, f"{where} may be {', '.join(unknown)}, which the provider treats as still running")
        )


_KNOWN_NON_TERMINAL = {"Created", "Pending", "InProgress"}


def check(document: Mapping[str, Any], entries: Sequence[ReliedOn] = RELIED_ON) -> list[OperationReport]:
    return [check_operation(document, entry) for entry in entries]


def spec_version(document: Mapping[str, Any]) -> str | None:
    info = document.get("info")
    version = info.get("version") if isinstance(info, Mapping) else None
    return str(version) if version else None


def spec_from_answer(data: Any) -> Mapping[str, Any] | None:
    """The OpenAPI document in an answer to ``GET /v4/open-api-spec``: the body, or one object inside it."""
    if isinstance(data, Mapping) and isinstance(data.get("paths"), Mapping):
        return data
    if isinstance(data, Mapping):
        for value in data.values():
            if isinstance(value, Mapping) and isinstance(value.get("paths"), Mapping):
                return value
    return None


def summary(reports: Sequence[OperationReport], version: str | None) -> str:
    """One sentence for the connection's Test button."""
    spec = f"AAC's API spec {version}" if version else "AAC's API spec"
    broken = [report for report in reports if not report.ok]
    if not broken:
        return (
            f"{spec} has every endpoint, parameter and field the provider uses ({len(reports)} operations)."
        )
    named = "; ".join(
        f"{report.entry.label}: {', '.join(f.text for f in report.findings if f.severity == MISSING)}"
        for report in broken
    )
    return f"{spec} lacks what the provider needs: {named}."
