"""Entity statements (OpenID Federation 1.0 §3): build, sign, parse and verify.

An entity statement is a JWS with ``typ=entity-statement+jwt`` signed with ES256 by a
key of its issuer.  The issuer's keys are, for an *entity configuration* (``iss == sub``),
its own ``jwks``; for a *subordinate statement*, the keys of the superior, i.e. the
``jwks`` of the superior's entity configuration.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..crypto.jose import JWK, JoseError, JWSSignatureError, parse_jws, sign_jws, verify_jws
from .errors import StatementError, StatementExpired, UnknownKey

ENTITY_STATEMENT_TYP = "entity-statement+jwt"
ENTITY_STATEMENT_CONTENT_TYPE = "application/entity-statement+jwt"
DEFAULT_LEEWAY = 60  # seconds of clock skew tolerated on iat / exp


@dataclass(frozen=True)
class EntityStatement:
    """A parsed entity statement. ``claims`` is the full payload as received."""

    claims: dict[str, Any]
    jwt: str
    kid: str

    @property
    def iss(self) -> str:
        return str(self.claims["iss"])

    @property
    def sub(self) -> str:
        return str(self.claims["sub"])

    @property
    def iat(self) -> int:
        return int(self.claims["iat"])

    @property
    def exp(self) -> int:
        return int(self.claims["exp"])

    @property
    def is_configuration(self) -> bool:
        return self.iss == self.sub

    @property
    def authority_hints(self) -> list[str]:
        return list(self.claims.get("authority_hints") or [])

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.claims.get("metadata") or {})

    @property
    def metadata_policy(self) -> dict[str, Any]:
        return dict(self.claims.get("metadata_policy") or {})

    @property
    def constraints(self) -> dict[str, Any]:
        return dict(self.claims.get("constraints") or {})

    def keys(self) -> list[JWK]:
        return jwks_to_keys(self.claims.get("jwks"), owner=self.sub)


def jwks_to_keys(jwks: Any, *, owner: str = "entity") -> list[JWK]:
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise StatementError(f"jwks of {owner} is not an object with a 'keys' list")
    out = []
    for i, k in enumerate(jwks["keys"]):
        try:
            out.append(JWK.from_dict(k))
        except JoseError as exc:
            raise StatementError(f"key #{i} in jwks of {owner} is unusable: {exc}") from exc
    return out


def keys_to_jwks(keys: Iterable[JWK]) -> dict[str, Any]:
    return {"keys": [k.public_dict() for k in keys]}


def sign_statement(claims: Mapping[str, Any], key: JWK) -> str:
    """Sign ``claims`` as an entity statement with ``key`` (which must carry a kid)."""
    if not key.kid:
        raise StatementError("federation signing keys need a kid")
    return sign_jws(dict(claims), key, typ=ENTITY_STATEMENT_TYP)


def _require(claims: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> None:
    if name not in claims:
        raise StatementError(f"entity statement lacks the claim '{name}'")
    v = claims[name]
    if isinstance(v, bool) or not isinstance(v, kind):
        raise StatementError(f"entity statement claim '{name}' has the wrong type")


def decode_statement(token: str) -> EntityStatement:
    """Parse ``token`` and check its shape, *without* verifying the signature."""
    try:
        parsed = parse_jws(token, expected_typ=ENTITY_STATEMENT_TYP)
        claims = parsed.payload_json()
    except JoseError as exc:
        raise StatementError(f"not an entity statement: {exc}") from exc
    if parsed.kid is None:
        raise StatementError("entity statement header has no kid")
    for name in ("iss", "sub"):
        _require(claims, name, str)
    for name in ("iat", "exp"):
        _require(claims, name, (int, float))
    for name in ("metadata", "metadata_policy", "constraints", "jwks"):
        if name in claims and not isinstance(claims[name], dict):
            raise StatementError(f"claim '{name}' of {claims['sub']} must be an object")
    if "authority_hints" in claims:
        ah = claims["authority_hints"]
        if not isinstance(ah, list) or not all(isinstance(a, str) for a in ah):
            raise StatementError(f"authority_hints of {claims['sub']} must be a list of strings")
    if claims["iss"] == claims["sub"] and "jwks" not in claims:
        raise StatementError(f"entity configuration of {claims['sub']} has no jwks")
    return EntityStatement(claims, token, parsed.kid)


def check_times(stmt: EntityStatement, now: float, leeway: int = DEFAULT_LEEWAY) -> None:
    who = f"statement by {stmt.iss} about {stmt.sub}" if not stmt.is_configuration \
        else f"entity configuration of {stmt.sub}"
    if stmt.iat > now + leeway:
        raise StatementExpired(f"{who} is issued in the future (iat={stmt.iat}, now={int(now)})")
    if stmt.exp <= now - leeway:
        raise StatementExpired(f"{who} expired at {stmt.exp} (now={int(now)})")


def verify_statement(
    token: str | EntityStatement,
    keys: Iterable[JWK],
    *,
    now: float,
    leeway: int = DEFAULT_LEEWAY,
    signer: str | None = None,
) -> EntityStatement:
    """Parse, verify the signature against ``keys`` and check ``iat``/``exp``.

    ``signer`` names the issuer of ``keys`` for error messages.
    """
    stmt = decode_statement(token) if isinstance(token, str) else token
    try:
        parsed = parse_jws(stmt.jwt, expected_typ=ENTITY_STATEMENT_TYP)
        verify_jws(parsed, keys, require_kid=True)
    except JWSSignatureError as exc:
        msg = str(exc)
        if msg.startswith("no key with kid"):
            raise UnknownKey(
                f"no key {stmt.kid!r} in {signer or stmt.iss}'s keys (statement about {stmt.sub})"
            ) from exc
        raise StatementError(
            f"signature of the statement by {stmt.iss} about {stmt.sub} does not verify: {msg}"
        ) from exc
    except JoseError as exc:
        raise StatementError(f"statement by {stmt.iss} about {stmt.sub}: {exc}") from exc
    check_times(stmt, now, leeway)
    return stmt


def verify_self_signed(
    token: str | EntityStatement, *, now: float, leeway: int = DEFAULT_LEEWAY
) -> EntityStatement:
    """Verify an entity configuration with its own ``jwks`` (only trust-worthy once a
    superior's statement has vouched for one of those keys, or the key is pinned)."""
    stmt = decode_statement(token) if isinstance(token, str) else token
    if not stmt.is_configuration:
        raise StatementError(f"statement by {stmt.iss} about {stmt.sub} is not self-signed")
    return verify_statement(stmt, stmt.keys(), now=now, leeway=leeway, signer=stmt.iss)


# --------------------------------------------------------------------------- typed kinds


@dataclass(frozen=True)
class EntityConfiguration(EntityStatement):
    """An entity configuration (OpenID Federation 1.0 §3, ``iss == sub``), published by an
    entity about itself at ``<entity id>/.well-known/openid-federation`` (§9)."""

    @classmethod
    def from_statement(cls, stmt: EntityStatement) -> EntityConfiguration:
        if not stmt.is_configuration:
            raise StatementError(
                f"statement by {stmt.iss} about {stmt.sub} is not an entity configuration"
            )
        return cls(stmt.claims, stmt.jwt, stmt.kid)

    @property
    def entity_id(self) -> str:
        return self.sub

    @property
    def federation_entity(self) -> dict[str, Any]:
        fe = self.metadata.get("federation_entity") or {}
        if not isinstance(fe, dict):
            raise StatementError(f"metadata.federation_entity of {self.sub} must be an object")
        return fe

    @property
    def fetch_endpoint(self) -> str:
        """``metadata.federation_entity.federation_fetch_endpoint`` (§5.1.1, §8.1)."""
        ep = self.federation_entity.get("federation_fetch_endpoint")
        if not isinstance(ep, str) or not ep:
            raise StatementError(
                f"entity configuration of {self.sub} has no "
                "metadata.federation_entity.federation_fetch_endpoint"
            )
        return ep


@dataclass(frozen=True)
class SubordinateStatement(EntityStatement):
    """A subordinate statement (§3, ``iss != sub``): a superior vouches for the subject's
    federation keys (``jwks``) and may add ``metadata``, ``metadata_policy`` and
    ``constraints`` for the subject and everything below it."""

    @classmethod
    def from_statement(cls, stmt: EntityStatement) -> SubordinateStatement:
        if stmt.is_configuration:
            raise StatementError(
                f"expected a subordinate statement about {stmt.sub}, got its entity configuration"
            )
        if "jwks" not in stmt.claims:
            raise StatementError(f"statement by {stmt.iss} about {stmt.sub} has no jwks")
        return cls(stmt.claims, stmt.jwt, stmt.kid)

    @property
    def metadata_policy_crit(self) -> list[str]:
        """``metadata_policy_crit`` (§3): additional policy operators that must be understood."""
        crit = self.claims.get("metadata_policy_crit") or []
        if not isinstance(crit, list) or not all(isinstance(c, str) for c in crit):
            raise StatementError(
                f"metadata_policy_crit in the statement by {self.iss} about {self.sub} "
                "must be a list of strings"
            )
        return list(crit)
