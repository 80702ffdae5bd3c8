"""Scope → claims mapping and claim minimisation (T-07) as properties."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker.provider.claims import (
    KNOWN_SCOPES,
    SCOPE_CLAIMS,
    STANDARD_SCOPE_CLAIMS,
    claims_for_scopes,
    grant_scopes,
    minimise_claims,
    parse_scope,
    scopes_offered,
    upstream_scopes,
)
from healthid_broker.provider.errors import OAuthError

KVNR = "urn:telematik:claims:id"
ALL_USER_CLAIMS = sorted({c for cs in SCOPE_CLAIMS.values() for c in cs})
PROTOCOL = ["iss", "sub", "aud", "nonce", "acr", "amr", "exp", "iat", "at_hash"]

scopes = st.sets(st.sampled_from([*sorted(KNOWN_SCOPES), "other", "phone"]))
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
    telematik = claims_for_scopes(allowed & requested & set(SCOPE_CLAIMS))
    derived = {
        claim: sources for scope in requested & set(STANDARD_SCOPE_CLAIMS)
        for claim, sources in STANDARD_SCOPE_CLAIMS[scope].items()}
    # only permitted claims, with the IdP's values, never protocol claims
    assert set(out) <= telematik | set(derived)
    for k, v in out.items():
        if k in telematik:
            assert v == claims[k]
        else:  # a standard claim: the value of an allowed source claim
            assert any(src in allowed and claims.get(c) == v for src, c in derived[k])
    assert not set(out) & set(PROTOCOL)
    # every permitted, present, non-empty claim passes
    for k in telematik:
        if k in claims and claims[k] not in (None, ""):
            assert k in out
    for k, sources in derived.items():
        if any(src in allowed and claims.get(c) not in (None, "") for src, c in sources):
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


def test_grant_scopes() -> None:
    allowed = {"openid", "urn:telematik:email", "urn:telematik:given_name"}
    assert grant_scopes(["openid", "urn:telematik:email", "openid"], allowed) == (
        "openid", "urn:telematik:email",
    )
    # unknown values are ignored (OIDC Core §3.1.2.1), known but not allowed ones dropped
    # (RFC 6749 §3.3); a standard scope stays when one of its sources is allowed
    assert grant_scopes(["openid", "phone", "x\"y", "urn:telematik:versicherter",
                         "profile", "email"], allowed) == ("openid", "profile", "email")
    assert grant_scopes(["openid", "profile", "email"], {"openid"}) == ("openid",)
    for req in (["urn:telematik:email"], [], ["profile", "email"]):
        with pytest.raises(OAuthError, match="openid") as e:
            grant_scopes(req, allowed)
        assert e.value.error == "invalid_scope" and e.value.redirectable


@settings(deadline=None)
@given(st.lists(st.sampled_from([*sorted(KNOWN_SCOPES), "phone", "address", "x"]),
                max_size=12), scopes)
def test_grant_properties(requested: list[str], allowed: set[str]) -> None:
    if "openid" not in requested:
        with pytest.raises(OAuthError):
            grant_scopes(requested, allowed)
        return
    granted = grant_scopes(requested, allowed)
    assert granted[0] == "openid" or "openid" in granted
    assert set(granted) <= KNOWN_SCOPES & set(requested)
    up = upstream_scopes(granted, allowed)
    # the IdP is only ever asked for telematik scopes the client may have
    assert up[0] == "openid" and set(up) <= {"openid"} | (allowed & set(SCOPE_CLAIMS))
    # what the IdP is asked for yields every claim the granted scopes release
    full = {c: "v" for c in ALL_USER_CLAIMS}
    from_upstream = {c: "v" for c in claims_for_scopes(set(up)) if c in full}
    assert minimise_claims(from_upstream, allowed, granted) == minimise_claims(
        full, allowed, granted)


def test_standard_claims_are_derived() -> None:
    idp = {"urn:telematik:claims:display_name": "Erika Mustermann",
           "urn:telematik:claims:given_name": "Erika",
           "urn:telematik:claims:family_name": "Mustermann",
           "urn:telematik:claims:email": "erika@example.org", "birthdate": "1964-08-12",
           KVNR: "X110411675"}
    every = set(SCOPE_CLAIMS)
    assert minimise_claims(idp, every, {"openid", "profile", "email"}) == {
        "birthdate": "1964-08-12", "email": "erika@example.org", "family_name": "Mustermann",
        "given_name": "Erika", "name": "Erika Mustermann"}
    # named as asked: telematik names only for telematik scopes
    assert minimise_claims(idp, every, {"openid", "urn:telematik:given_name", "profile"}
                           )["urn:telematik:claims:given_name"] == "Erika"
    # within what the client may have: no email source allowed, no email
    assert minimise_claims(idp, {"openid", "urn:telematik:given_name"},
                           {"openid", "profile", "email"}) == {"given_name": "Erika"}


def test_scopes_offered() -> None:
    assert scopes_offered({"openid", "urn:telematik:versicherter"}) == (
        "openid", "urn:telematik:versicherter")
    assert scopes_offered({"openid", "urn:telematik:email"}) == (
        "openid", "urn:telematik:email", "email")
    assert scopes_offered(SCOPE_CLAIMS)[-2:] == ("profile", "email")
