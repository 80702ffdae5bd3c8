"""Scope → claims mapping and claim minimisation (T-07) as properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker.provider.claims import (
    KNOWN_SCOPES,
    SCOPE_CLAIMS,
    check_requested_scopes,
    claims_for_scopes,
    minimise_claims,
    parse_scope,
)
from healthid_broker.provider.errors import OAuthError

KVNR = "urn:telematik:claims:id"
ALL_USER_CLAIMS = sorted({c for cs in SCOPE_CLAIMS.values() for c in cs})
PROTOCOL = ["iss", "sub", "aud", "nonce", "acr", "amr", "exp", "iat", "at_hash"]

scopes = st.sets(st.sampled_from([*sorted(KNOWN_SCOPES), "other", "profile"]))
idp_claims = st.dictionaries(
    st.sampled_from(ALL_USER_CLAIMS + PROTOCOL + ["x-extra"]),
    st.one_of(st.text(max_size=20), st.integers(), st.none()),
)


def test_profile_mapping() -> None:
    assert SCOPE_CLAIMS["urn:telematik:versicherter"] == (
        KVNR, "urn:telematik:claims:organization", "urn:telematik:claims:profession",
    )
    assert SCOPE_CLAIMS["urn:telematik:geburtsdatum"] == ("birthdate",)
    assert SCOPE_CLAIMS["openid"] == ()
    assert len(SCOPE_CLAIMS) == 9


@settings(deadline=None)
@given(idp_claims, scopes, scopes)
def test_minimisation_properties(claims: dict[str, Any], allowed: set[str],
                                 requested: set[str]) -> None:
    out = minimise_claims(claims, allowed, requested)
    permitted = claims_for_scopes(allowed & requested)
    # only permitted claims, with the IdP's values, never protocol claims
    assert set(out) <= permitted
    assert all(out[k] == claims[k] for k in out)
    assert not set(out) & set(PROTOCOL)
    # every permitted, present, non-empty claim passes
    for k in permitted:
        if k in claims and claims[k] not in (None, ""):
            assert k in out
    # the KVNR only when versicherter is allowed AND requested
    if KVNR in out:
        assert "urn:telematik:versicherter" in allowed
        assert "urn:telematik:versicherter" in requested


def test_kvnr_needs_both() -> None:
    claims = {KVNR: "X110411675", "birthdate": "1990-01-01"}
    v = "urn:telematik:versicherter"
    assert KVNR not in minimise_claims(claims, {v}, {"openid"})
    assert KVNR not in minimise_claims(claims, {"openid"}, {v})
    assert minimise_claims(claims, {v}, {v}) == {KVNR: "X110411675"}


@settings(deadline=None)
@given(st.lists(st.sampled_from([*sorted(KNOWN_SCOPES), ""]), max_size=12))
def test_parse_scope(tokens: list[str]) -> None:
    parsed = parse_scope(" ".join(tokens))
    assert list(parsed) == list(dict.fromkeys(t for t in tokens if t))


def test_check_requested_scopes() -> None:
    allowed = {"openid", "urn:telematik:email"}
    assert check_requested_scopes(["openid", "urn:telematik:email", "openid"], allowed) == (
        "openid", "urn:telematik:email",
    )
    for req, msg in ((["urn:telematik:email"], "openid"),
                     (["openid", "profile"], "unknown scope profile"),
                     (["openid", "urn:telematik:versicherter"], "not enabled"),
                     (["openid", 'x"y\\'], "unknown scope xy")):
        with pytest.raises(OAuthError, match=msg) as e:
            check_requested_scopes(req, allowed)
        assert e.value.error == "invalid_scope" and e.value.redirectable
