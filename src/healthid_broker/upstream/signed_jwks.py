"""An IdP's signed JWKS (OpenID Federation 1.0 §5.2.1 ``signed_jwks_uri``; TI profile).

Served as ``application/jwk-set+json``: a JWS (``alg=ES256``, ``kid``) over
``{iss, iat, keys}`` signed with one of the IdP's *federation* keys — the ``jwks`` of its
entity configuration, which itself must chain to the pinned master key (A_23040).  The
``keys`` are the IdP's ID-token signing keys (``use=sig``, EC P-256 per A_23196, with
``x5c``) and possibly other keys.

Rules applied here:

* the signature must verify with a federation key named by the header ``kid``;
* ``iss`` must be the IdP's entity id; ``iat`` must not lie in the future;
  ``exp``, when present, must not have passed;
* every key must be EC P-256 (A_23196) — a set with any other key is rejected as a
  whole, so a misconfigured IdP is noticed instead of silently half-working;
* a ``typ`` that belongs to another federation object (entity statement, IdP list) is
  refused, so a signed object of one kind cannot be replayed as another;
* the content type must be ``application/jwk-set+json`` (also accepted:
  ``application/jwt`` and ``application/jose``); a plain ``application/json`` JWKS is
  unsigned and therefore refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..crypto.jose import JWK, JoseError
from ..http import HttpClient
from .errors import SignedJwksError, sanitize
from .signed import fetch_compact_jws, verify_federation_jws

__all__ = [
    "SIGNED_JWKS_CONTENT_TYPES",
    "SignedJwks",
    "fetch_signed_jwks",
    "verify_signed_jwks",
]

SIGNED_JWKS_CONTENT_TYPES = frozenset(
    {"application/jwk-set+json", "application/jwt", "application/jose"}
)
_FOREIGN_TYPS = frozenset({"entity-statement+jwt", "idp-list+jwt", "trust-mark+jwt"})
DEFAULT_LEEWAY = 60


@dataclass(frozen=True)
class SignedJwks:
    """The verified key set of one IdP."""

    iss: str
    iat: int
    keys: tuple[JWK, ...]

    @property
    def signing_keys(self) -> tuple[JWK, ...]:
        """The ID-token signing keys: ``use=sig`` and a ``kid`` (the ID token names it)."""
        return tuple(k for k in self.keys if k.use == "sig" and k.kid)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def verify_signed_jwks(
    token: str,
    federation_keys: Iterable[JWK],
    *,
    idp: str,
    now: float,
    leeway: int = DEFAULT_LEEWAY,
) -> SignedJwks:
    """Verify a signed JWKS of ``idp`` with its (already trusted) federation keys."""
    who = sanitize(idp)
    parsed, claims = verify_federation_jws(
        token, federation_keys, what=f"signed JWKS of {who}", issuer=idp, issuer_role="IdP",
        error=SignedJwksError)
    typ = parsed.header.get("typ")
    if isinstance(typ, str) and typ.lower() in _FOREIGN_TYPS:
        raise SignedJwksError(f"signed JWKS of {who} has the typ {sanitize(typ)!r} of "
                              "another federation object")
    iat = claims.get("iat")
    if not _num(iat):
        raise SignedJwksError(f"signed JWKS of {who} lacks a numeric 'iat'")
    assert isinstance(iat, (int, float))
    if iat > now + leeway:
        raise SignedJwksError(f"signed JWKS of {who} is issued in the future (iat={int(iat)})")
    exp = claims.get("exp")
    if exp is not None:
        if not _num(exp):
            raise SignedJwksError(f"signed JWKS of {who} has a non-numeric 'exp'")
        assert isinstance(exp, (int, float))
        if exp <= now - leeway:
            raise SignedJwksError(f"signed JWKS of {who} expired at {int(exp)}")
    raw_keys = claims.get("keys")
    if not isinstance(raw_keys, list) or not raw_keys:
        raise SignedJwksError(f"signed JWKS of {who} has no non-empty 'keys' list")
    keys: list[JWK] = []
    for i, raw in enumerate(raw_keys):
        try:
            keys.append(JWK.from_dict(raw))
        except JoseError as exc:
            raise SignedJwksError(f"key #{i} in the signed JWKS of {who}: {exc}") from exc
    if not any(k.use == "sig" and k.kid for k in keys):
        raise SignedJwksError(f"signed JWKS of {who} has no signing key (use=sig with kid)")
    return SignedJwks(idp, int(iat), tuple(keys))


async def fetch_signed_jwks(
    http: HttpClient,
    url: str,
    federation_keys: Iterable[JWK],
    *,
    idp: str,
    now: float,
    leeway: int = DEFAULT_LEEWAY,
) -> SignedJwks:
    """GET ``signed_jwks_uri`` (from the IdP's verified metadata) and verify the answer."""
    token = await fetch_compact_jws(http, url, what=f"signed JWKS of {sanitize(idp)}",
                                    error=SignedJwksError,
                                    content_types=SIGNED_JWKS_CONTENT_TYPES)
    return verify_signed_jwks(token, federation_keys, idp=idp, now=now, leeway=leeway)
