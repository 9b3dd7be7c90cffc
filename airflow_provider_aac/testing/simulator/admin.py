"""``/_sim``: the admin routes scripts use when they cannot call the simulator in-process."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from airflow_provider_aac.testing.simulator.wire import (
    ApiError,
    Request,
    Response,
    Route,
    compile_routes,
    json_body,
    json_response,
    require_type,
    route,
)

MintPair = Callable[..., dict[str, Any]]


class AdminApi:
    def __init__(
        self,
        *,
        stats: Callable[[], dict[str, int]],
        reset_stats: Callable[[], None],
        mint_pair: MintPair,
        disable: Callable[[str], None],
    ) -> None:
        self._stats = stats
        self._reset_stats = reset_stats
        self._mint_pair = mint_pair
        self._disable = disable
        self._routes: list[Route] = compile_routes(
            [
                ("GET", r"/_sim/stats", self._get_stats),
                ("POST", r"/_sim/reset", self._reset),
                ("POST", r"/_sim/mint", self._mint),
                ("POST", r"/_sim/disable", self._disable_token),
            ]
        )

    def handle(self, request: Request) -> Response:
        return route(request, self._routes)

    def _get_stats(self, request: Request, match: re.Match[str]) -> Response:
        return json_response(200, self._stats())

    def _reset(self, request: Request, match: re.Match[str]) -> Response:
        self._reset_stats()
        return json_response(200, self._stats())

    def _mint(self, request: Request, match: re.Match[str]) -> Response:
        body = json_body(request, required=False) or {}
        require_type(body, "client_id", str, "a string")
        for key in ("refresh_ttl", "access_ttl"):
            if key in body and (not isinstance(body[key], (int, float)) or isinstance(body[key], bool)):
                raise ApiError(400, f"'{key}' must be a number of seconds", details={"field": key})
        try:
            pair = self._mint_pair(
                client_id=body.get("client_id"),
                refresh_ttl=body.get("refresh_ttl"),
                access_ttl=body.get("access_ttl"),
            )
        except ValueError as error:
            raise ApiError(400, str(error)) from None
        return json_response(200, pair)

    def _disable_token(self, request: Request, match: re.Match[str]) -> Response:
        """An admin's Disable in AAC; the body names the refresh token (never echoed back)."""
        body = json_body(request, required=True) or {}
        require_type(body, "refresh_token", str, "a string")
        if not body.get("refresh_token"):
            raise ApiError(400, "'refresh_token' is required", details={"field": "refresh_token"})
        try:
            self._disable(body["refresh_token"])
        except KeyError:
            raise ApiError(404, "No such refresh token") from None
        return json_response(200, {"disabled": True})
