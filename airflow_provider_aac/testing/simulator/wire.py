"""What every part of the simulator speaks: requests, responses, AAC's error body and routing.

The parts (token endpoint, /v4, admin) never see the HTTP server: they take a
:class:`Request` and give a :class:`Response`, so each can be read and tested without sockets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

DEFAULT_PAGE_LIMIT = 25  # AAC's OpenAPI spec v2025.23.2: "usually 25 by default"
# AAC's error names: ValidationFailed (400) and TooManyRequestsException (429) are the
# examples of AAC's OpenAPI spec v2025.23.2; AccessControlException (403),
# RouteNotFoundException and DataNotFoundException (404), GoneException (410) and the
# plain-text 401 were seen by live third-party probes. The others are the simulator's own.
EXCEPTION_NAMES = {
    400: "ValidationFailed",
    403: "AccessControlException",
    404: "DataNotFoundException",
    405: "MethodNotAllowedException",
    410: "GoneException",
    411: "LengthRequiredException",
    413: "PayloadTooLargeException",
    415: "UnsupportedMediaTypeException",
    429: "TooManyRequestsException",
    500: "InternalServerErrorException",
    502: "BadGatewayException",
    503: "ServiceUnavailableException",
}
ROUTE_NOT_FOUND = "RouteNotFoundException"
UNAUTHORIZED_BODY = b"Unauthorized"  # AAC answers a 401 in plain text (live probes)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower-cased, so lookups need not care about case
    body: bytes


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    drop_connection: bool = False  # close the socket without answering (a "lost" response)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(
        status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})}
    )


class ApiError(Exception):
    """Raised anywhere under /v4 (or /_sim) to answer with AAC's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        details: Any = None,
        headers: dict[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details
        self.headers = headers or {}
        self.name = name or EXCEPTION_NAMES.get(status, "Exception")

    def response(self) -> Response:
        if self.status == 401:
            return Response(401, UNAUTHORIZED_BODY, {"Content-Type": "text/plain", **self.headers})
        body = {"exception": {"name": self.name, "message": self.message, "details": self.details}}
        return json_response(self.status, body, self.headers)


Handler = Callable[[Request, re.Match[str]], Response]
Route = tuple[str, re.Pattern[str], Handler]  # method, path pattern, handler


def compile_routes(table: Sequence[tuple[str, str, Handler]]) -> list[Route]:
    return [(method, re.compile(pattern), handler) for method, pattern, handler in table]


def route(request: Request, routes: Sequence[Route]) -> Response:
    """Dispatch by path, then method: a known path with the wrong method is a 405, not a 404."""
    path_known = False
    for method, pattern, handler in routes:
        match = pattern.fullmatch(request.path)
        if match is None:
            continue
        if method == request.method:
            return handler(request, match)
        path_known = True
    if path_known:
        raise ApiError(405, f"{request.method} is not allowed on {request.path}")
    raise ApiError(404, f"No such path: {request.path}", name=ROUTE_NOT_FOUND)


# --------------------------------------------------------------------------- values on the wire


def iso(epoch: float) -> str:
    stamp = datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


def number(seconds: float) -> int | float:
    """Whole seconds as a JSON integer, as AAC sends them; fractions survive for tiny test TTLs."""
    return int(seconds) if float(seconds).is_integer() else seconds


def is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def embeds(request: Request) -> set[str]:
    """The names in ``?embed=a,b`` (repeatable), which AAC reads as one comma-separated list."""
    return {part.strip() for value in request.query.get("embed", []) for part in value.split(",")}


def _query_int(query: dict[str, list[str]], name: str, default: int) -> int:
    raw = query.get(name, [str(default)])[0]
    if not raw.isdigit():
        raise ApiError(400, f"'{name}' must be a non-negative integer", details={"parameter": name})
    return int(raw)


def page(items: list[dict[str, Any]], query: dict[str, list[str]]) -> dict[str, Any]:
    """A listing as AAC pages it: ``limit`` (default 25), ``offset``, a ``count`` only with ``includeCount=true``."""
    limit = _query_int(query, "limit", DEFAULT_PAGE_LIMIT)
    offset = _query_int(query, "offset", 0)
    listing: dict[str, Any] = {"data": items[offset : offset + limit]}
    if query.get("includeCount", ["false"])[0].strip().lower() == "true":
        listing["count"] = len(items)
    return listing


def json_body(request: Request, *, required: bool) -> dict[str, Any] | None:
    if not request.body.strip():
        if required:
            raise ApiError(400, "A JSON request body is required")
        return None
    if not request.headers.get("content-type", "").startswith("application/json"):
        raise ApiError(415, "Request bodies must be application/json")
    try:
        body = json.loads(request.body)
    except ValueError:
        raise ApiError(400, "The request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "The request body must be a JSON object")
    return body


def require_type(body: dict[str, Any] | None, key: str, kind: type, label: str) -> None:
    if body is not None and key in body and not isinstance(body[key], kind):
        raise ApiError(400, f"'{key}' must be {label}", details={"field": key})


def path_id(match: re.Match[str]) -> int:
    return int(match["id"])


_T = TypeVar("_T")


def find(table: dict[int, _T], ident: int, kind: str) -> _T:
    found = table.get(ident)
    if found is None:
        raise ApiError(404, f"{kind} {ident} not found", details={"id": ident})
    return found
