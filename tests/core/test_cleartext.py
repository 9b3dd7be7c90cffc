"""Plain http:// only to loopback, unless the connection opts in: the rule as a table."""

from __future__ import annotations

from typing import Any

import pytest

from airflow_provider_aac.core.cleartext import insecure_http_allowed, is_loopback_host, refuse_cleartext
from airflow_provider_aac.core.errors import AACConfigError


@pytest.mark.parametrize(
    ("url", "allowed", "refused"),
    [
        ("https://us1.alteryxcloud.com", False, False),
        ("https://pingauth.alteryxcloud.com/as/token", False, False),
        ("http://127.0.0.1:8080", False, False),
        ("http://127.0.0.2:8080/as/token", False, False),  # all of 127.0.0.0/8 is loopback
        ("http://[::1]:8080", False, False),
        ("http://localhost:8080", False, False),
        ("http://LOCALHOST.", False, False),
        ("http://aac.example.com", False, True),
        ("HTTP://aac.example.com", False, True),
        ("http://10.0.0.7:8080", False, True),
        ("http://127.0.0.1.example.com", False, True),  # a name, not an address
        ("http://localhost@aac.example.com", False, True),  # user info, not the host
        ("http://aac.example.com", True, False),
    ],
)
def test_refuse_cleartext(url: str, allowed: bool, refused: bool) -> None:
    if not refused:
        refuse_cleartext(url, what="API base URL", conn_id="aac_x", allowed=allowed)
        return
    with pytest.raises(AACConfigError) as info:
        refuse_cleartext(url, what="API base URL", conn_id="aac_x", allowed=allowed)
    message = str(info.value)
    assert "API base URL of connection 'aac_x'" in message and url in message
    assert "unencrypted" in message and "Nothing was sent" in message
    assert '"allow_insecure_http": true' in message and "Use https://" in message


@pytest.mark.parametrize(
    ("raw", "allowed"),
    [
        (None, False),
        ("", False),
        (False, False),
        ("false", False),
        (True, True),
        ("true", True),
        (" True ", True),
    ],
)
def test_the_opt_in_is_true_or_false(raw: Any, allowed: bool) -> None:
    extra = {} if raw is None else {"allow_insecure_http": raw}
    assert insecure_http_allowed(extra, conn_id="aac_x") is allowed


@pytest.mark.parametrize("raw", ["yes", 1, "1", ["true"]])
def test_an_opt_in_that_is_not_a_boolean_is_refused(raw: Any) -> None:
    with pytest.raises(AACConfigError, match=r"allow_insecure_http .* use true or false"):
        insecure_http_allowed({"allow_insecure_http": raw}, conn_id="aac_x")


def test_loopback_needs_no_name_lookup() -> None:
    assert is_loopback_host("127.255.0.1") and is_loopback_host("::1")
    assert not is_loopback_host(None) and not is_loopback_host("") and not is_loopback_host("aac.test")
