"""Scopes → claims of the TI profile and claim minimisation (T-07, docs/toms.md).

The mapping is the TI profile's scopes → claims table (docs/ti-profile.md; gematik's
``urn:telematik:*`` scopes).
:func:`minimise_claims` is the only way IdP claims reach an application: a claim passes
when its scope is both *allowed* for the application (its configured allow-list) and
*requested* in this authorization request. Everything else — including every protocol
claim of the IdP's ID token (``iss``, ``sub``, ``aud``, ``nonce`` …) — is dropped, so the
KVNR (``urn:telematik:claims:id``) reaches only an application that is configured for
``urn:telematik:versicherter`` AND asked for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..ti_profile import SCOPE_CLAIMS
from .errors import OAuthError

__all__ = [
    "KNOWN_SCOPES",
    "SCOPE_CLAIMS",
    "check_requested_scopes",
    "claims_for_scopes",
    "minimise_claims",
    "parse_scope",
]

KNOWN_SCOPES = frozenset(SCOPE_CLAIMS)


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


def check_requested_scopes(
    requested: Iterable[str], allowed: Iterable[str]
) -> tuple[str, ...]:
    """Validate an app's requested scopes (OIDC Core §3.1.2.1: ``openid`` required).

    Unknown scopes, and scopes outside the application's allow-list, are refused with
    ``invalid_scope`` (RFC 6749 §4.1.2.1) rather than silently dropped, so integration
    errors surface early. The message names the scope, which is not personal data.
    """
    req = tuple(dict.fromkeys(requested))
    allowed_set = frozenset(allowed)
    if "openid" not in req:
        raise OAuthError.invalid_scope("the scope must contain openid")
    for s in req:
        if s not in KNOWN_SCOPES:
            raise OAuthError.invalid_scope(_safe(f"unknown scope {s}"))
        if s not in allowed_set:
            raise OAuthError.invalid_scope(
                _safe(f"scope {s} is not enabled for this application")
            )
    return req


def _safe(text: str) -> str:
    return "".join(c for c in text if c not in '"\\' and 0x20 <= ord(c) <= 0x7E)[:200]


def claims_for_scopes(scopes: Iterable[str]) -> frozenset[str]:
    """All claim names the given scopes permit (unknown scopes permit nothing)."""
    out: set[str] = set()
    for s in scopes:
        out.update(SCOPE_CLAIMS.get(s, ()))
    return frozenset(out)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str | list | dict) and len(value) == 0)


def minimise_claims(
    idp_claims: Mapping[str, Any],
    allowed_scopes: Iterable[str],
    requested_scopes: Iterable[str],
) -> dict[str, Any]:
    """Return only the claims permitted by ``allowed ∩ requested`` scopes (T-07).

    Missing or empty claims are simply absent in the result (A_23037 tolerance).
    """
    effective = frozenset(allowed_scopes) & frozenset(requested_scopes)
    permitted = claims_for_scopes(effective)
    return {
        name: idp_claims[name]
        for name in sorted(permitted)
        if name in idp_claims and not _empty(idp_claims[name])
    }
