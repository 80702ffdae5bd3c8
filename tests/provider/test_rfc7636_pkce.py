"""RFC 7636 PKCE: Appendix B test vector, S256 only, verifier syntax."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker.provider import pkce
from healthid_broker.provider.errors import OAuthError

# RFC 7636 Appendix B
B_VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
B_CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~"


def test_appendix_b_vector() -> None:
    assert pkce.s256(B_VERIFIER) == B_CHALLENGE
    pkce.verify(B_VERIFIER, B_CHALLENGE)
    pkce.check_challenge(B_CHALLENGE, "S256")


def test_wrong_verifier_is_invalid_grant() -> None:
    with pytest.raises(OAuthError) as e:
        pkce.verify(B_VERIFIER[:-1] + "Y", B_CHALLENGE)
    assert e.value.error == "invalid_grant" and not e.value.redirectable


def test_plain_refused() -> None:
    with pytest.raises(OAuthError, match="S256"):
        pkce.check_challenge(B_VERIFIER, "plain")
    with pytest.raises(OAuthError, match="S256"):
        pkce.check_challenge(B_CHALLENGE, None)
    with pytest.raises(OAuthError):
        pkce.verify(B_VERIFIER, B_VERIFIER, "plain")
    with pytest.raises(OAuthError, match="required"):
        pkce.check_challenge(None, "S256")
    with pytest.raises(OAuthError, match="43"):
        pkce.check_challenge(B_CHALLENGE + "A", "S256")
    with pytest.raises(OAuthError, match="required"):
        pkce.verify(None, B_CHALLENGE)


@settings(deadline=None)
@given(st.text(alphabet=UNRESERVED, min_size=43, max_size=128))
def test_valid_verifiers_round_trip(verifier: str) -> None:
    challenge = pkce.s256(verifier)
    pkce.check_challenge(challenge, "S256")
    pkce.verify(verifier, challenge)


@settings(deadline=None)
@given(st.one_of(
    st.text(alphabet=UNRESERVED, max_size=42),
    st.text(alphabet=UNRESERVED, min_size=129, max_size=200),
    st.text(min_size=43, max_size=128).filter(lambda s: any(c not in UNRESERVED for c in s)),
))
def test_bad_verifier_syntax_refused(verifier: str) -> None:
    with pytest.raises(OAuthError):
        pkce.verify(verifier, B_CHALLENGE)


def test_new_verifier_is_valid_and_random() -> None:
    v = pkce.new_verifier()
    assert pkce.VERIFIER_RE.match(v) and v != pkce.new_verifier()
