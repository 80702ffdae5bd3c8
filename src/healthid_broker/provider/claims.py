"""Scopes → claims toward the applications, and claim minimisation (T-07, docs/toms.md).

Two kinds of scope reach the broker:

* the TI profile's ``urn:telematik:*`` scopes (docs/ti-profile.md §7): their claims keep
  gematik's names (``urn:telematik:claims:*``, and ``birthdate``);
* the standard scopes ``profile`` and ``email`` (OIDC Core §5.4): their claims are the
  standard ones (``name``, ``given_name``, ``family_name``, ``birthdate``, ``email``),
  each *derived* from one telematik claim and released only when the client may have that
  telematik scope (:data:`STANDARD_SCOPE_CLAIMS`; the table in docs/integration.md).

:func:`grant_scopes` decides what a request gets (OIDC Core §3.1.2.1: values the broker
does not know are ignored; RFC 6749 §3.3: a known scope the client may not use is dropped
from the grant, and the token response names the granted scope).
:func:`minimise_claims` is the only way IdP claims reach an application: a claim passes
when its scope is both *allowed* for the client and *granted* in this request. Everything
else — including every protocol claim of the IdP's ID token (``iss``, ``sub``, ``aud``,
``nonce`` …) — is dropped, so the KVNR (``urn:telematik:claims:id``) reaches only a client
that is configured for ``urn:telematik:versicherter`` AND asked for it; no standard scope
ever releases it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..ti_profile import SCOPE_CLAIMS
from .errors import OAuthError

__all__ = [
    "KNOWN_SCOPES",
    "SCOPE_CLAIMS",
    "STANDARD_SCOPE_CLAIMS",
    "claims_for_scopes",
    "grant_scopes",
    "minimise_claims",
    "parse_scope",
    "scopes_offered",
    "upstream_scopes",
]

# OIDC Core §5.4 standard scope → standard claim → the telematik (scope, claim) pairs it is
# derived from, in order of preference (the first one present is used).
STANDARD_SCOPE_CLAIMS: Mapping[str, Mapping[str, tuple[tuple[str, str], ...]]] = {
    "profile": {
        "name": (("urn:telematik:display_name", "urn:telematik:claims:display_name"),),
        "given_name": (("urn:telematik:given_name", "urn:telematik:claims:given_name"),),
        "family_name": (("urn:telematik:family_name", "urn:telematik:claims:family_name"),),
        "birthdate": (("urn:telematik:geburtsdatum", "birthdate"),),
    },
    "email": {
        "email": (("urn:telematik:email", "urn:telematik:claims:email"),),
    },
}

KNOWN_SCOPES = frozenset(SCOPE_CLAIMS) | frozenset(STANDARD_SCOPE_CLAIMS)


def parse_scope(scope: str | None) -> tuple[str, ...]:
    """Split a ``scope`` parameter (RFC 6749 §3.3: space-delimited, order irrelevant).

    Returns the scopes de-duplicated in first-seen order.
    """
    if scope is None:
        return ()
    seen: dict[str, None] = {}
    for token in scope.split(" "):
        if token:
            seen.setdefault(token, None)
    return tuple(seen)


def _sources(standard_scope: str) -> frozenset[str]:
    """The telematik scopes a standard scope derives its claims from."""
    return frozenset(scope for sources in STANDARD_SCOPE_CLAIMS[standard_scope].values()
                     for scope, _claim in sources)


def scopes_offered(allowed: Iterable[str]) -> tuple[str, ...]:
    """The scopes a client (or application) with these telematik scopes can be granted:
    ``openid``, the allowed telematik scopes, and each standard scope at least one of
    whose source scopes is allowed (for discovery's ``scopes_supported``)."""
    allowed_set = frozenset(allowed)
    out = ["openid", *sorted(s for s in allowed_set if s in SCOPE_CLAIMS and s != "openid")]
    out += [s for s in STANDARD_SCOPE_CLAIMS if _sources(s) & allowed_set]
    return tuple(out)


def grant_scopes(requested: Iterable[str], allowed: Iterable[str]) -> tuple[str, ...]:
    """The scopes granted for a request, in the order requested.

    ``openid`` is required (OIDC Core §3.1.2.1; ``invalid_scope`` otherwise). Values the
    broker does not know are ignored (OIDC Core §3.1.2.1); a known scope outside the
    client's allow-list is dropped (RFC 6749 §3.3), a standard scope kept when at least one
    of its source scopes is allowed (it then yields only the claims of allowed sources).
    """
    req = tuple(dict.fromkeys(requested))
    if "openid" not in req:
        raise OAuthError.invalid_scope("the scope must contain openid")
    allowed_set = frozenset(allowed)
    granted: list[str] = []
    for s in req:
        if s == "openid" or (s in SCOPE_CLAIMS and s in allowed_set) or (
                s in STANDARD_SCOPE_CLAIMS and _sources(s) & allowed_set):
            granted.append(s)
    return tuple(granted)


def upstream_scopes(granted: Iterable[str], allowed: Iterable[str]) -> tuple[str, ...]:
    """The telematik scopes to ask the IdP for: the granted telematik scopes and the
    allowed sources of the granted standard scopes (``openid`` first)."""
    allowed_set = frozenset(allowed)
    out: dict[str, None] = {"openid": None}
    for s in granted:
        if s in SCOPE_CLAIMS:
            out.setdefault(s, None)
        elif s in STANDARD_SCOPE_CLAIMS:
            for source in sorted(_sources(s) & allowed_set):
                out.setdefault(source, None)
    return tuple(out)


def claims_for_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """All claim names the given scopes permit, by the names the app receives them under
    (unknown scopes permit nothing)."""
    out: set[str] = set()
    for s in scopes:
        out.update(SCOPE_CLAIMS.get(s, ()))
        out.update(STANDARD_SCOPE_CLAIMS.get(s, {}))
    return frozenset(out)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


def minimise_claims(
    idp_claims: Mapping[str, Any],
    allowed_scopes: Iterable[str],
    requested_scopes: Iterable[str],
) -> dict[str, Any]:
    """Return only the claims permitted by ``allowed ∩ requested`` scopes (T-07), named as
    the scope that asked for them names them.

    Telematik scopes pass their claims when the scope is allowed and requested; a standard
    claim is derived from its telematik source when the standard scope is requested and the
    source's scope is allowed. Missing or empty claims are simply absent in the result
    (A_23037 tolerance).
    """
    allowed = frozenset(allowed_scopes)
    requested = frozenset(requested_scopes)
    out: dict[str, Any] = {}
    telematik = {c for s in allowed & requested for c in SCOPE_CLAIMS.get(s, ())}
    for name in sorted(telematik):
        if name in idp_claims and not _empty(idp_claims[name]):
            out[name] = idp_claims[name]
    for scope in sorted(requested & frozenset(STANDARD_SCOPE_CLAIMS)):
        for claim, sources in STANDARD_SCOPE_CLAIMS[scope].items():
            for source_scope, source_claim in sources:
                value = idp_claims.get(source_claim)
                if source_scope in allowed and not _empty(value):
                    out.setdefault(claim, value)
                    break
    return dict(sorted(out.items()))
