"""RFC 9207 and RFC 6749 §4.1.2: the IdP's authorization response at the callback."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker.upstream.authorization_response import MAX_CODE_LENGTH, authorization_code
from healthid_broker.upstream.errors import (
    AuthorizationResponseError,
    IdpDeclined,
    IssuerMismatch,
)

ISSUER = "https://idp.example/kk"


def test_success_with_and_without_iss() -> None:
    assert authorization_code({"code": "abc", "state": "s"}, issuer=ISSUER,
                              iss_required=False) == "abc"
    assert authorization_code({"code": "abc", "iss": ISSUER}, issuer=ISSUER,
                              iss_required=True) == "abc"


def test_missing_iss_refused_when_the_idp_announced_it() -> None:
    with pytest.raises(IssuerMismatch, match="carries no iss"):
        authorization_code({"code": "abc"}, issuer=ISSUER, iss_required=True)


@pytest.mark.parametrize("iss", [
    "https://idp.example/kk/", "https://IDP.example/kk", "https://evil.example/kk",
    "http://idp.example/kk", "", " https://idp.example/kk",
])
def test_near_misses_are_mismatches(iss: str) -> None:
    # RFC 9207 §2.4: simple string comparison, no normalisation
    with pytest.raises(IssuerMismatch):
        authorization_code({"code": "abc", "iss": iss}, issuer=ISSUER, iss_required=False)


def test_iss_is_checked_before_the_error_of_an_error_response() -> None:
    # RFC 9207 §2.4: error responses carry iss too, and it is compared first
    with pytest.raises(IssuerMismatch):
        authorization_code({"error": "access_denied", "iss": "https://evil.example"},
                           issuer=ISSUER, iss_required=False)
    with pytest.raises(IdpDeclined) as declined:
        authorization_code({"error": "access_denied", "iss": ISSUER}, issuer=ISSUER,
                           iss_required=True)
    assert declined.value.oauth_error == "access_denied"


def test_error_responses() -> None:
    with pytest.raises(IdpDeclined) as exc:
        authorization_code({"error": "server_error", "code": "abc"}, issuer=ISSUER,
                           iss_required=False)
    assert exc.value.oauth_error == "server_error"  # an error wins over a code
    with pytest.raises(IdpDeclined) as exc:
        authorization_code({"error": "bad error\n"}, issuer=ISSUER, iss_required=False)
    assert exc.value.oauth_error is None
    assert "\n" not in str(exc.value)
    with pytest.raises(IdpDeclined, match="neither code nor error"):
        authorization_code({"state": "s"}, issuer=ISSUER, iss_required=False)


@pytest.mark.parametrize("code", ["", "a\nb", "ä", "x" * (MAX_CODE_LENGTH + 1)])
def test_malformed_codes_are_refused(code: str) -> None:
    with pytest.raises(AuthorizationResponseError) as exc:
        authorization_code({"code": code}, issuer=ISSUER, iss_required=False)
    assert not isinstance(exc.value, IdpDeclined | IssuerMismatch)


@settings(max_examples=300, deadline=None)
@given(
    response=st.dictionaries(st.sampled_from(["code", "error", "iss", "state", "x"]),
                             st.text(max_size=3000), max_size=5),
    required=st.booleans(),
)
def test_any_response_gives_a_code_or_an_upstream_error(
    response: dict[str, str], required: bool,
) -> None:
    """Hostile input: either the code comes back, or one of the typed errors — and a code
    is never returned for a response whose iss is present and not the chosen IdP's."""
    try:
        code = authorization_code(response, issuer=ISSUER, iss_required=required)
    except AuthorizationResponseError as exc:
        message = str(exc)
        assert len(message) < 400 and message.isprintable()
        if "iss" in response and response["iss"] != ISSUER:
            assert isinstance(exc, IssuerMismatch)
        return
    assert code == response["code"]
    assert "error" not in response
    if required or "iss" in response:
        assert response["iss"] == ISSUER
