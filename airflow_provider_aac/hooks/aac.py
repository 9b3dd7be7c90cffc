"""AACHook: AAC's ``/v4`` API with an access token that is always fresh enough.

The hook is thin on purpose. Token lifecycle: ``tokens.manager.TokenManager``; what an
answer means and when to retry: ``core.api.ApiCall``; the steps of an exchange with AAC:
``core.exchange``; the wire: ``transport``. The hook only drives exchanges: ``run_exchange``
(``requests``) and ``arun_exchange`` (``httpx``, for triggers) perform the IO that their one
shared step function (``hooks.driver.Drive``) asks for, and are the only places that send
requests, wait, or get and replace tokens for ``/v4``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

from airflow_provider_aac.compat import BaseHook, connection_tested_as
from airflow_provider_aac.core.api import DEFAULT_API_BACKOFF, ApiResponse, api_call
from airflow_provider_aac.core.errors import REJECTED_FRESH_TOKEN_HINT, AACApiError, reworded
from airflow_provider_aac.core.exchange import Exchange, HttpAnswer, Send
from airflow_provider_aac.core.retry import Backoff
from airflow_provider_aac.core.token_state import TokenState
from airflow_provider_aac.errors import AACError
from airflow_provider_aac.hooks.driver import Drive
from airflow_provider_aac.tokens.connection import (
    CONN_TYPE,
    DEFAULT_CONN_ID,
    environment_variable_defining,
    read_config,
)
from airflow_provider_aac.tokens.token_cache import run_token_work
from airflow_provider_aac.transport.httpx_edge import loop_http, send_with_httpx

if TYPE_CHECKING:
    import requests

    from airflow_provider_aac.tokens.manager import RefreshOutcome
    from airflow_provider_aac.transport.bound_session import AACSession

DEFAULT_TIMEOUT = 60.0

T = TypeVar("T")
SendAttempt = Callable[[Send, str, str], HttpAnswer]
"""Sends one attempt of a ``Send`` to the base URL with the access token; raises ``TransportFailure`` if no answer came."""


class AACHook(BaseHook):
    """Talk to Alteryx Analytics Cloud through one ``aac`` connection.

    :param aac_conn_id: the ``aac`` connection: host is the API base URL, the extra holds
        the token pair and the provider's bookkeeping.
    :param min_ttl: seconds an access token must still have to be used without a refresh
        (default: the connection's ``min_ttl``, else 300; never more than half its lifetime).
    :param timeout: seconds for each HTTP request to AAC.
    :param backoff: how often and how long to retry what is safe to retry.
    :param sleep: how ``request`` waits between attempts; tests pass one that records the
        waits instead of taking them, so retry timing is checked without slowing the suite.
    :param asleep: the same for ``arequest``, which must not block the triggerer's loop.
    """

    conn_name_attr = "aac_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "Alteryx Analytics Cloud"

    def __init__(
        self,
        aac_conn_id: str = DEFAULT_CONN_ID,
        *,
        min_ttl: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        backoff: Backoff = DEFAULT_API_BACKOFF,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.aac_conn_id = aac_conn_id
        self.min_ttl = min_ttl
        self.timeout = timeout
        self.backoff = backoff
        self._sleep = sleep
        self._asleep = asleep
        self._http: requests.Session | None = None
        # Imported here, not at the top: DAG files and triggers import this module, and the
        # refresh machinery (requests among it) is only needed once a hook is made.
        from airflow_provider_aac.tokens.manager import TokenManager

        self.tokens = TokenManager(aac_conn_id)

    @property
    def base_url(self) -> str:
        return read_config(self.aac_conn_id).base_url

    def get_access_token(self, min_ttl: float | None = None) -> str:
        """A valid access token; refreshes (safely, once across all workers) only when needed."""
        _, state = self.tokens.fresh(self.min_ttl if min_ttl is None else min_ttl)
        return state.access_token

    def refresh_tokens(self, force: bool = False, min_ttl: float | None = None) -> RefreshOutcome:
        """Refresh when the stored token is close to expiry, or now with ``force``."""
        return self.tokens.refresh(force=force, min_ttl=self.min_ttl if min_ttl is None else min_ttl)

    def get_conn(self) -> AACSession:
        """A ``requests.Session`` for the connection's ``/v4`` only, with a fresh token and ``request``'s retries.

        Any other URL is refused before the token is attached (``transport.bound_session``).
        """
        from airflow_provider_aac.transport.bound_session import AACSession

        return AACSession(self, self.base_url)

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> ApiResponse:
        """Call ``/v4``; retries 429 always and 5xx only where repeating is safe."""
        call = api_call(method, path, json=json, params=params, headers=headers, backoff=self.backoff)
        return self.run_exchange(call)

    def run_exchange(self, exchange: Exchange[T], send: SendAttempt | None = None) -> T:
        """The sync driver: performs with requests the IO each effect of ``exchange`` needs (``hooks.driver``).

        ``send`` replaces how a ``Send`` goes out (``get_conn``'s session sends its own request).
        """
        perform: dict[str, Callable[..., Any]] = {
            "token": lambda: self.tokens.fresh(self.min_ttl),
            "send": send or self._send,
            "sleep": self._sleep,
            "replace": self._replace_rejected,
        }
        drive = Drive(exchange, self.aac_conn_id)
        while (io := drive.next_io()) is not None:
            try:
                drive.done(perform[io.kind](*io.args))
            except Exception as err:
                drive.failed(err)
        return cast(T, drive.result)

    def _send(self, send: Send, base_url: str, access_token: str) -> HttpAnswer:
        import requests

        from airflow_provider_aac.transport.requests_edge import send_with_requests

        if self._http is None:
            self._http = requests.Session()
        return send_with_requests(self._http, send, base_url, access_token, self.timeout)

    async def aget_access_token(self, min_ttl: float | None = None) -> str:
        """As ``get_access_token``; token work runs off the event loop, so the triggerer never blocks."""
        _, state = await self.tokens.afresh(self.min_ttl if min_ttl is None else min_ttl)
        return state.access_token

    async def arequest(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> ApiResponse:
        """As ``request``, with httpx, for trigger code."""
        call = api_call(method, path, json=json, params=params, headers=headers, backoff=self.backoff)
        return await self.arun_exchange(call)

    async def arun_exchange(self, exchange: Exchange[T]) -> T:
        """The async driver: as ``run_exchange``, with the loop's one httpx client.

        Token work comes from memory on the loop, or runs on the provider's token-work
        threads (never asgiref's one shared thread, which other providers queue on).
        """
        http = loop_http()

        async def send(effect: Send, base_url: str, access_token: str) -> HttpAnswer:
            async with http.slots:
                return await send_with_httpx(http.client, effect, base_url, access_token, self.timeout)

        perform: dict[str, Callable[..., Awaitable[Any]]] = {
            "token": lambda: self.tokens.afresh(self.min_ttl),
            "send": send,
            "sleep": self._asleep,
            "replace": lambda *args: run_token_work(self._replace_rejected, *args),
        }
        drive = Drive(exchange, self.aac_conn_id)
        while (io := drive.next_io()) is not None:
            try:
                drive.done(await perform[io.kind](*io.args))
            except Exception as err:
                drive.failed(err)
        return cast(T, drive.result)

    def _replace_rejected(self, rejection: AACApiError, state: TokenState, base_url: str) -> TokenState:
        """The token state to resend with after AAC's 401 ``rejection``; raises it, reworded, if none."""
        self.log.info("AAC rejected the access token (401); replacing generation %d once.", state.generation)
        try:
            replacement = self.tokens.replace_rejected(state.generation)
        except AACError as err:
            raise reworded(err, f"{rejection} The token could not be replaced: {err}") from None
        if replacement is None:
            age = time.time() - (state.refreshed_at or time.time())
            hint = REJECTED_FRESH_TOKEN_HINT.format(age=age, base_url=base_url)
            raise reworded(rejection, f"{rejection} {hint}") from None
        return replacement

    def test_connection(self) -> tuple[bool, str]:
        """Call ``GET /v4/people/current``, then check the tenant's API spec as ``airflow aac doctor`` does.

        Never spends the refresh token where it cannot be stored. Airflow's Test button runs
        this on a temporary copy under a random id: the answer names the user's connection
        instead, and says why a due refresh was not made. The spec check is one request
        without retries (a few MB at most, read in seconds); a spec that cannot be read is
        said, not failed on, and a spec that lacks what the provider needs fails the test.
        """
        tested = connection_tested_as(self.aac_conn_id)
        try:
            person = self.request("GET", "/v4/people/current").data
        except AACError as err:
            return False, str(err) if tested is None else self._copy_failure(err, tested)
        who = (
            person.get("email") or person.get("name") or person.get("id")
            if isinstance(person, dict)
            else None
        )
        connected = f"Connected to AAC as {who}." if who else "Connected to AAC."
        complete, spec = self._spec_summary(tested or self.aac_conn_id)
        message = f"{connected} {spec}"
        return complete, message if tested is None else f"Connection {tested!r}: {message}"

    def _spec_summary(self, conn_id: str) -> tuple[bool, str]:
        """Whether the tenant's spec offers what the provider relies on, in one sentence."""
        from airflow_provider_aac.core.api_contract import OPEN_API_SPEC_PATH
        from airflow_provider_aac.core.spec_check import check, spec_from_answer, spec_version, summary

        doctor = f"For the full check: airflow aac doctor {conn_id}."
        try:
            answer = self.run_exchange(api_call("GET", OPEN_API_SPEC_PATH, backoff=Backoff(attempts=1)))
        except AACError as err:
            reason = f"AAC answered {err.status_code}" if isinstance(err, AACApiError) else type(err).__name__
            return True, f"Its API spec could not be read ({reason}). {doctor}"
        document = spec_from_answer(answer.data)
        if document is None:
            return True, f"Its API spec could not be read (no OpenAPI document). {doctor}"
        reports = check(document)
        complete = all(report.ok for report in reports)
        return complete, summary(reports, spec_version(document)) + ("" if complete else f" {doctor}")

    def _copy_failure(self, err: AACError, tested: str) -> str:
        copy_variable = environment_variable_defining(self.aac_conn_id)
        if copy_variable and copy_variable in str(err):
            return (
                f"Connection {tested!r}: the access token is due for a refresh, which a test cannot make: "
                "Airflow tests a temporary copy of the connection, where the rotated refresh token would "
                "be lost. Nothing was spent. The next task that uses the connection refreshes it; then "
                "test again."
            )
        return str(err).replace(repr(self.aac_conn_id), repr(tested))

    @classmethod
    def get_connection_form_widgets(cls) -> dict[str, Any]:
        """Airflow 3.0 and 3.1 ask the hook for the form; 3.2+ read ``conn-fields`` instead."""
        from airflow_provider_aac.compat import connection_form_widgets
        from airflow_provider_aac.get_provider_info import CONN_FIELDS

        return connection_form_widgets(CONN_FIELDS)

    @classmethod
    def get_ui_field_behaviour(cls) -> dict[str, Any]:
        """Airflow 3.0 and 3.1 ask the hook; 3.2+ read ``ui-field-behaviour`` instead."""
        from airflow_provider_aac.compat import ui_field_behaviour
        from airflow_provider_aac.get_provider_info import UI_FIELD_BEHAVIOUR

        return ui_field_behaviour(UI_FIELD_BEHAVIOUR)
