"""Reading a pair for ``connect``: the formats a script may give, and the mistakes a person makes."""

from __future__ import annotations

from pathlib import Path

import pytest

from airflow_provider_aac.cli.connect import region_of
from airflow_provider_aac.cli.token_input import parse_pair, read_pair
from airflow_provider_aac.errors import AACConfigError


def test_json_and_two_lines_give_the_same_pair() -> None:
    from_json = parse_pair('{"access_token": "a.b.c", "refresh_token": "r1"}', where="stdin")
    from_lines = parse_pair("\n  Bearer a.b.c \n\nr1\n", where="stdin")
    assert from_json == from_lines
    assert (from_json.access_token, from_json.refresh_token) == ("a.b.c", "r1")
    assert "a.b.c" not in repr(from_json) and "r1" not in repr(from_json)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("only-one-line", "Expected two tokens in stdin, found 1 lines"),
        ('{"access_token": "a.b.c"}', "No refresh token in stdin"),
        ("{not json", "are not valid JSON"),
    ],
)
def test_a_malformed_pair_is_refused_with_the_format(text: str, says: str) -> None:
    with pytest.raises(AACConfigError, match=says) as raised:
        parse_pair(text, where="stdin")
    assert "the access token on the first line" in str(raised.value)


@pytest.mark.parametrize(
    ("url", "region"),
    [
        ("https://us1.alteryxcloud.com", "us1"),
        ("https://api.eu1.alteryxcloud.com", "eu1"),
        ("https://pingauth-au1.alteryxcloud.com/as", "au1"),
        ("https://pingauth.alteryxcloud.com/as", "us1"),
        ("http://127.0.0.1:8080/as", None),
        (None, None),
    ],
)
def test_the_region_comes_from_an_aac_host_name(url: str | None, region: str | None) -> None:
    assert region_of(url) == region


def test_the_same_token_twice_is_refused() -> None:
    with pytest.raises(AACConfigError, match="are the same; paste both tokens AAC showed"):
        parse_pair("same\nsame", where="stdin")


def test_a_file_is_read_and_a_missing_one_is_named(tmp_path: Path) -> None:
    tokens = tmp_path / "pair.json"
    tokens.write_text('{"access_token": "a.b.c", "refresh_token": "r1"}')
    assert read_pair(from_stdin=False, from_file=str(tokens)).refresh_token == "r1"
    with pytest.raises(AACConfigError, match=r"Cannot read .*missing\.json: No such file or directory"):
        read_pair(from_stdin=False, from_file=str(tmp_path / "missing.json"))
    with pytest.raises(AACConfigError, match="Use --stdin or --from-file, not both"):
        read_pair(from_stdin=True, from_file=str(tokens))
