"""Tests for core/errors.py."""

from __future__ import annotations

from airflow_provider_aac.core.errors import AACApiError, AACNotFoundError, reworded
from airflow_provider_aac.core.exchange import TransportFailure


def test_aacs_status_decides_whether_an_api_error_is_retryable() -> None:
    assert AACApiError("x", status_code=409).retryable
    assert not AACApiError("x", status_code=422).retryable
    assert not AACNotFoundError("x").retryable  # a 404 whatever the status field says
    assert AACApiError("x").retryable  # no status: the answer may have been lost


def test_reworded_keeps_a_required_keyword_only_field() -> None:
    err = TransportFailure("connection reset", request_sent=True)
    new = reworded(err, "The refresh may have reached AAC: connection reset")
    assert type(new) is TransportFailure
    assert new.request_sent is True
    assert str(new) == "The refresh may have reached AAC: connection reset"
    assert new.args == ("The refresh may have reached AAC: connection reset",)
    assert str(err) == "connection reset"  # the original is untouched


def test_reworded_keeps_aacs_fields() -> None:
    err = AACNotFoundError(
        "AAC plan 7 was not found.",
        status_code=404,
        aac_name="NotFound",
        aac_message="Plan 7 not found",
        request_id="req-123",
    )
    err.add_note("a note")
    new = reworded(err, "AAC plan 7 was not found. Check the plan id.")
    assert type(new) is AACNotFoundError and isinstance(new, AACApiError)
    assert (new.status_code, new.aac_name, new.aac_message, new.request_id) == (
        404,
        "NotFound",
        "Plan 7 not found",
        "req-123",
    )
    assert str(new) == "AAC plan 7 was not found. Check the plan id."
    assert new.__notes__ == ["a note"] and new.__notes__ is not err.__notes__
    assert new.__traceback__ is None and new.__cause__ is None


def test_a_reworded_error_raises_with_its_own_traceback_and_cause() -> None:
    err = TransportFailure("timed out", request_sent=False)
    try:
        try:
            raise err
        except TransportFailure as caught:
            raise reworded(caught, "Timed out before sending.") from caught
    except TransportFailure as raised:
        assert raised is not err
        assert raised.__cause__ is err
        assert raised.__traceback__ is not None
        assert raised.request_sent is False and str(raised) == "Timed out before sending."
