"""OAuthError: codes, statuses, redirect rules (RFC 6749 §4.1.2.1, §5.2)."""

from __future__ import annotations

import pytest

from healthid_broker.provider.errors import OAuthError


def test_redirectable_and_state_echo() -> None:
    e = OAuthError.invalid_scope("unknown scope foo")
    assert e.redirectable and e.status == 400
    assert e.redirect_params("xyz") == {
        "error": "invalid_scope", "error_description": "unknown scope foo", "state": "xyz",
    }
    assert "state" not in e.redirect_params(None)


def test_not_redirectable_by_default() -> None:
    e = OAuthError.invalid_request("redirect_uri is not registered")
    with pytest.raises(ValueError, match=r"4\.1\.2\.1"):
        e.redirect_params("s")


def test_invalid_client_basic_has_www_authenticate() -> None:
    e = OAuthError.invalid_client("client authentication failed", basic=True)
    assert e.status == 401
    assert e.headers()["WWW-Authenticate"].startswith("Basic")
    assert e.headers()["Cache-Control"] == "no-store"
    assert "WWW-Authenticate" not in OAuthError.invalid_client("x").headers()


def test_rejects_unknown_codes_and_bad_description_chars() -> None:
    with pytest.raises(ValueError):
        OAuthError("made_up", "x")
    for bad in ('quote "x"', "back\\slash", "newline\n", "umlaut ä"):
        with pytest.raises(ValueError, match=r"5\.2"):
            OAuthError("invalid_request", bad)
    assert OAuthError.invalid_grant("x").to_dict() == {
        "error": "invalid_grant", "error_description": "x",
    }
