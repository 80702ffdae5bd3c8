"""Validation of the ID token a sectoral IdP returns (OIDC Core §3.1.3.7, TI profile).

Shape (gematik reference IdP): a JWE ``{alg: ECDH-ES, enc: A256GCM, cty: JWT,
kid: <RP enc kid>, epk}`` (RFC 7516, RFC 7518 §4.6/§5.3) around a JWS
``{alg: ES256, kid, x5c, typ: JWT}`` over the claims ``iss, sub, aud, iat, exp, nonce,
acr, amr`` plus the scope claims.

Checks, in order (A_23049, A_23005):

1. JWE header: ``alg``/``enc``/``cty`` exactly as above.  The ``kid`` selects which of
   the RP's encryption keys decrypts; several are valid during rotation (A_28209).
2. ID-token version (A_27505): ``version`` ``"2.0.0"`` when negotiated, absent means
   ``"1.0.0"``.  gematik's reference IdP (gsi-server ``IdTokenBuilder``) writes
   ``version`` into the *inner JWS* header — always, also ``"1.0.0"`` — while the TI
   profile text puts it into the JWE header; we read both, require them to agree when
   both are present, and reject any value outside ``accepted_versions``.
3. Signature: ES256 with the key of the IdP's verified signed JWKS named by ``kid``.
   An unknown ``kid`` raises :class:`UnknownSigningKey` so the caller can re-fetch the
   IdP's entity configuration and signed JWKS once and retry (A_22861).
4. ``iss`` == the IdP the user chose; ``aud`` == the RP entity id and exactly one
   audience (a string or a one-element list); ``iat``/``exp`` bracket ``now`` with a
   small leeway; ``nonce`` == the broker's nonce; ``sub`` present (non-empty string).
5. ``acr`` sufficient for the application's required level — see :func:`acr_sufficient`.
6. Optional claims may be missing or empty (A_23037); ``amr`` missing → ``()``.

Nothing from the token's personal claims ever reaches an error message; ``sub`` and the
claims dict are hidden from ``repr``.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..crypto.jose import (
    JWK,
    JoseError,
    JWSSignatureError,
    parse_jwe,
    parse_jws,
    verify_jws,
)
from .errors import IdTokenError, UnknownSigningKey, sanitize
from .par import ACR_HIGH, ACR_SUBSTANTIAL

__all__ = [
    "ACR_HIGH",
    "ACR_SUBSTANTIAL",
    "AMR_ALLOWING_SUBSTANTIAL",
    "CONSENT_CLAIM",
    "SUPPORTED_VERSIONS",
    "ValidatedIdToken",
    "acr_sufficient",
    "validate_id_token",
]

SUPPORTED_VERSIONS: tuple[str, ...] = ("1.0.0", "2.0.0")
DEFAULT_VERSION = "1.0.0"  # A_27505: no version header means 1.0.0
DEFAULT_LEEWAY = 60

# A_23202-02: substantial is accepted (for a limited period) when the user authenticated
# with the insurer's app without card/eID (mEW) or by SSO.
AMR_ALLOWING_SUBSTANTIAL = frozenset({"urn:telematik:auth:mEW", "urn:telematik:auth:sso"})
# A_27593: in ID tokens 2.0.0 the IdP reports mEW/sso as amr "urn:telematik:auth:other"
# and states the user's consent to the lower level in this claim (value a list, in the
# reference IdP ``["loa-substantial"]``; other implementations send a plain string).
CONSENT_CLAIM = "urn:telematik:auth:consent"
CONSENT_SUBSTANTIAL = "loa-substantial"
_ACRS = frozenset({ACR_HIGH, ACR_SUBSTANTIAL})
_MAX_SUB = 255  # OIDC Core §2: sub is at most 255 ASCII characters


@dataclass(frozen=True)
class ValidatedIdToken:
    """A validated ID token.  ``claims`` is everything the IdP sent; the caller
    minimises it to what the application may see and discards the rest (A_23050)."""

    iss: str
    sub: str = field(repr=False)
    acr: str
    amr: tuple[str, ...]
    auth_time: int | None
    version: str
    claims: dict[str, Any] = field(repr=False)


def _as_str_tuple(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,) if value else ()
    if isinstance(value, (list, tuple)):
        return tuple(v for v in value if isinstance(v, str))
    return ()


def acr_sufficient(
    required_acr: str, acr: object, amr: Iterable[str], claims: Mapping[str, Any]
) -> bool:
    """Is the authentication level ``acr`` (with ``amr``/claims) enough for ``required_acr``?

    * ``gematik-ehealth-loa-high`` satisfies either requirement.
    * ``gematik-ehealth-loa-substantial`` satisfies only a *substantial* requirement,
      and only when ``amr`` contains ``urn:telematik:auth:mEW`` or
      ``urn:telematik:auth:sso`` (A_23202-02, ID token 1.0.0) or the claim
      ``urn:telematik:auth:consent`` contains ``loa-substantial`` (A_27593, 2.0.0).
    * Anything else never satisfies.
    """
    if required_acr not in _ACRS:
        raise ValueError(f"required acr must be {ACR_HIGH} or {ACR_SUBSTANTIAL}")
    if acr == ACR_HIGH:
        return True
    if acr != ACR_SUBSTANTIAL or required_acr != ACR_SUBSTANTIAL:
        return False
    if AMR_ALLOWING_SUBSTANTIAL.intersection(amr):
        return True
    return CONSENT_SUBSTANTIAL in _as_str_tuple(claims.get(CONSENT_CLAIM))


def _version(value: object, where: str, accepted: Iterable[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in accepted:
        raise IdTokenError(
            f"ID token {where} names version {sanitize(value, 20)!r}; accepted: "
            f"{', '.join(accepted)} (A_27505)",
            reason="version",
        )
    return value


def _numeric(claims: Mapping[str, Any], name: str) -> float:
    v = claims.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise IdTokenError(f"ID token lacks a numeric '{name}'", reason="claims")
    return float(v)


def validate_id_token(
    token: str,
    *,
    decryption_keys: Iterable[JWK],
    signing_keys: Iterable[JWK],
    issuer: str,
    audience: str,
    nonce: str,
    required_acr: str,
    now: float,
    leeway: int = DEFAULT_LEEWAY,
    accepted_versions: Iterable[str] = SUPPORTED_VERSIONS,
) -> ValidatedIdToken:
    """Decrypt, verify and check the IdP's ID token; see the module docstring.

    ``decryption_keys``: the RP's current encryption keys (private; the JWE ``kid``
    picks one).  ``signing_keys``: :attr:`SignedJwks.signing_keys` of ``issuer``.
    ``audience``: the RP entity id (= its ``client_id``).
    ``nonce``: the broker's own nonce of the PAR.
    """
    accepted = tuple(accepted_versions)
    # 1. JWE header
    if not isinstance(token, str) or token.count(".") != 4:
        raise IdTokenError(
            "ID token is not a compact JWE (the RP requires encrypted ID tokens)",
            reason="header",
        )
    try:
        jwe = parse_jwe(token)
        jwe_header = jwe.header
    except JoseError as exc:
        raise IdTokenError(f"ID token JWE header is malformed: {exc}", reason="header") from exc
    if jwe_header.get("alg") != "ECDH-ES" or jwe_header.get("enc") != "A256GCM":
        raise IdTokenError(
            f"ID token is encrypted with alg={sanitize(jwe_header.get('alg'), 30)!r}, "
            f"enc={sanitize(jwe_header.get('enc'), 30)!r}; only ECDH-ES with A256GCM is "
            "accepted",
            reason="header",
        )
    cty = jwe_header.get("cty")
    if not isinstance(cty, str) or cty.upper() != "JWT":
        raise IdTokenError(
            f"ID token JWE cty is {sanitize(cty, 30)!r}, expected 'JWT' (a nested JWT)",
            reason="header",
        )
    # 2. version (JWE header)
    outer_version = _version(jwe_header.get("version"), "JWE header", accepted)
    # decrypt: the kid picks the RP key (several during rotation)
    try:
        plaintext = jwe.decrypt(decryption_keys)
    except JoseError as exc:
        raise IdTokenError(
            f"ID token does not decrypt with the RP's encryption keys: {exc}",
            reason="decryption",
        ) from exc
    # 3. inner JWS and its signature
    try:
        parsed = parse_jws(plaintext.decode("ascii"))
    except (UnicodeDecodeError, JoseError) as exc:
        raise IdTokenError(f"decrypted ID token is not a valid JWS: {exc}", reason="header") \
            from exc
    inner_version = _version(parsed.header.get("version"), "JWS header", accepted)
    if outer_version and inner_version and outer_version != inner_version:
        raise IdTokenError(
            "ID token JWE and JWS headers name different versions", reason="version"
        )
    version = outer_version or inner_version or DEFAULT_VERSION
    if version not in accepted:
        raise IdTokenError(
            f"ID token version {version} is not accepted (A_27505)", reason="version"
        )
    kid = parsed.kid
    if kid is None:
        raise IdTokenError("ID token JWS header has no kid", reason="header")
    keys = [k for k in signing_keys if k.kid == kid]
    if not keys:
        raise UnknownSigningKey(
            f"ID token is signed with kid {sanitize(kid, 80)!r}, which is not in the signed "
            f"JWKS of {sanitize(issuer)}; re-fetch its entity configuration and signed JWKS "
            "(A_22861)",
            kid=kid,
        )
    try:
        verify_jws(parsed, keys, require_kid=True)
    except JWSSignatureError as exc:
        raise IdTokenError(
            f"ID token signature does not verify with key {sanitize(kid, 80)!r} of "
            f"{sanitize(issuer)}",
            reason="signature",
        ) from exc
    try:
        claims = parsed.payload_json()
    except JoseError as exc:
        raise IdTokenError(f"ID token payload is unusable: {exc}", reason="claims") from exc

    # 4. issuer, audience, time window, nonce, subject
    if claims.get("iss") != issuer:
        raise IdTokenError(
            f"ID token iss {sanitize(claims.get('iss'))!r} is not the chosen IdP "
            f"{sanitize(issuer)!r}",
            reason="iss",
        )
    aud = claims.get("aud")
    if isinstance(aud, list):
        if len(aud) != 1:
            raise IdTokenError(
                f"ID token has {len(aud)} audiences; exactly one (the RP) is allowed",
                reason="aud",
            )
        aud = aud[0]
    if aud != audience:
        raise IdTokenError(
            f"ID token aud {sanitize(aud)!r} is not this RP {sanitize(audience)!r}",
            reason="aud",
        )
    iat = _numeric(claims, "iat")
    exp = _numeric(claims, "exp")
    if iat > now + leeway:
        raise IdTokenError(
            f"ID token is issued in the future (iat={int(iat)}, now={int(now)}); "
            "check the clocks",
            reason="not_yet_valid",
        )
    if exp <= now - leeway:
        raise IdTokenError(
            f"ID token expired at {int(exp)} (now={int(now)})", reason="expired"
        )
    got_nonce = claims.get("nonce")
    if not isinstance(got_nonce, str) or not hmac.compare_digest(
        got_nonce.encode("utf-8"), nonce.encode("utf-8")
    ):
        raise IdTokenError("ID token nonce does not match this login", reason="nonce")
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub) > _MAX_SUB:
        raise IdTokenError("ID token has no usable 'sub' (A_23035)", reason="claims")

    # 5. acr / amr
    acr = claims.get("acr")
    amr = _as_str_tuple(claims.get("amr"))
    if not isinstance(acr, str) or not acr_sufficient(required_acr, acr, amr, claims):
        raise IdTokenError(
            f"ID token acr {sanitize(acr, 60)!r} (amr {sanitize(list(amr), 160)}) is not "
            f"sufficient for the required {required_acr} (A_23202-02, A_27593)",
            reason="acr",
        )
    auth_time_raw = claims.get("auth_time")
    auth_time = (
        int(auth_time_raw)
        if isinstance(auth_time_raw, (int, float)) and not isinstance(auth_time_raw, bool)
        else None
    )
    return ValidatedIdToken(
        iss=issuer, sub=sub, acr=acr, amr=amr, auth_time=auth_time, version=version,
        claims=claims,
    )
