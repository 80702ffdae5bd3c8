"""Tokens the broker issues to applications.

* :func:`pairwise_subject` — per-application pairwise ``sub`` (OIDC Core §8.1): stable
  for the same person at the same IdP, unlinkable across applications. The person's
  pseudonym at the IdP is the pair (``iss``, ``sub``) (A_23035), so both enter the MAC.
* :func:`build_id_token` — the app's ID token (OIDC Core §2, §3.1.3.6): a JWS with
  ``typ=JWT`` and ``kid``, ES256 by default, RS256 or PS256 (RSA ≥ 3072 bit) for a client
  that registered that ``id_token_signed_response_alg``; optionally nested in a JWE
  (ECDH-ES + A256GCM, ``cty=JWT``, OIDC Core §10.2: sign then encrypt) to the client's
  encryption key.
* :func:`new_access_token` — opaque random (256 bit) bearer token, lifetime ≤ 600 s and
  by construction no personal data (A_23078, A_23079).
* :func:`new_authorization_code` — random (256 bit), single use via the login store's
  atomic ``take``, lifetime ≤ 60 s (RFC 6749 §4.1.2).
"""

from __future__ import annotations

import functools
import hashlib
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..crypto.app_signing import DEFAULT_ID_TOKEN_ALG, RSASigningKey, sign_jws_rsa
from ..crypto.jose import JWK, b64u_encode, encrypt_jwe, sign_jws
from ..crypto.mac import HmacSha256

__all__ = [
    "ACCESS_TOKEN_MAX_LIFETIME",
    "AUTH_CODE_MAX_LIFETIME",
    "ID_TOKEN_LIFETIME",
    "RESERVED_CLAIMS",
    "AccessToken",
    "TokenError",
    "at_hash",
    "build_id_token",
    "new_access_token",
    "new_authorization_code",
    "pairwise_subject",
]

ACCESS_TOKEN_MAX_LIFETIME = 600  # A_23079: ≤ 10 minutes
AUTH_CODE_MAX_LIFETIME = 60
ID_TOKEN_LIFETIME = 300
_MIN_SECRET = 32

RESERVED_CLAIMS = frozenset(
    {"iss", "sub", "aud", "azp", "iat", "exp", "nbf", "jti", "nonce", "auth_time", "acr",
     "amr", "at_hash", "c_hash", "sid"}
)


class TokenError(ValueError):
    """A token could not be built from the given inputs (a configuration/programming bug)."""


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def pairwise_subject(secret: bytes, idp_iss: str, idp_sub: str) -> str:
    """HMAC-SHA256(secret_app, len‖iss‖len‖sub), base64url — 43 characters.

    ``secret`` is the application's pairwise secret (≥ 32 bytes, from tenancy). The
    length prefixes make (iss, sub) unambiguous ("a","bc" ≠ "ab","c").
    """
    if len(secret) < _MIN_SECRET:
        raise TokenError("the pairwise secret must be at least 32 bytes")
    if not idp_iss or not idp_sub:
        raise TokenError("the IdP's iss and sub are both required for a pairwise subject")
    return b64u_encode(_keyed(secret).digest(_lp(idp_iss.encode()) + _lp(idp_sub.encode())))


@functools.lru_cache(maxsize=256)  # one per application
def _keyed(secret: bytes) -> HmacSha256:
    return HmacSha256(secret)


def at_hash(access_token: str) -> str:
    """OIDC Core §3.1.3.6 ``at_hash`` for ES256, RS256 and PS256 (all SHA-256): the left
    half of SHA-256, base64url."""
    return b64u_encode(hashlib.sha256(access_token.encode("ascii")).digest()[:16])


def build_id_token(
    *,
    signing_key: JWK | RSASigningKey,
    issuer: str,
    client_id: str,
    subject: str,
    now: float,
    claims: Mapping[str, Any] | None = None,
    nonce: str | None = None,
    auth_time: int | None = None,
    acr: str | None = None,
    amr: Sequence[str] = (),
    access_token: str | None = None,
    lifetime: int = ID_TOKEN_LIFETIME,
    encryption_key: JWK | None = None,
    alg: str = DEFAULT_ID_TOKEN_ALG,
) -> str:
    """Build (and optionally encrypt) the app's ID token, signed with ``alg`` (ES256 with
    an EC ``signing_key``; RS256 or PS256 with an :class:`RSASigningKey`).

    ``claims`` are the minimised user claims; they may not shadow a protocol claim.
    With ``encryption_key`` the result is a JWE with ``cty=JWT`` wrapping the JWS.
    """
    if signing_key.private_key is None or not signing_key.kid:
        raise TokenError("the ID-token signing key needs a private part and a kid")
    if not 0 < lifetime <= 3600:
        raise TokenError("ID token lifetime must be in (0, 3600] s")
    extra = dict(claims or {})
    clash = RESERVED_CLAIMS & extra.keys()
    if clash:
        raise TokenError(f"user claims must not set protocol claims: {sorted(clash)}")
    iat = int(now)
    payload: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": client_id,
        "azp": client_id,
        "iat": iat,
        "exp": iat + lifetime,
    }
    if nonce is not None:
        payload["nonce"] = nonce
    if auth_time is not None:
        payload["auth_time"] = int(auth_time)
    if acr is not None:
        payload["acr"] = acr
    if amr:
        payload["amr"] = list(amr)
    if access_token is not None:
        payload["at_hash"] = at_hash(access_token)
    payload.update(extra)
    if isinstance(signing_key, RSASigningKey):
        jws = sign_jws_rsa(payload, signing_key, alg, typ="JWT")
    elif alg == DEFAULT_ID_TOKEN_ALG:
        jws = sign_jws(payload, signing_key, typ="JWT")
    else:
        raise TokenError(f"{alg} needs an RSA signing key")
    if encryption_key is None:
        return jws
    if encryption_key.use not in (None, "enc"):
        raise TokenError("the client's ID-token encryption key is not an enc key")
    return encrypt_jwe(jws.encode("ascii"), encryption_key, cty="JWT")


@dataclass(frozen=True)
class AccessToken:
    """An opaque bearer token. ``value`` is random; nothing about the person is in it."""

    value: str
    expires_in: int

    def response(self, id_token: str, scope: str | None = None) -> dict[str, Any]:
        """The token endpoint's JSON body (OIDC Core §3.1.3.3); ``scope`` is the granted
        scope (RFC 6749 §5.1, required where it differs from the requested one, §3.3)."""
        body: dict[str, Any] = {
            "access_token": self.value,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "id_token": id_token,
        }
        if scope is not None:
            body["scope"] = scope
        return body


def new_access_token(
    *, lifetime: int = 300, random: Callable[[int], bytes] = secrets.token_bytes
) -> AccessToken:
    """Opaque access token: 32 random bytes (256 bit), lifetime ≤ 600 s (A_23079)."""
    if not 0 < lifetime <= ACCESS_TOKEN_MAX_LIFETIME:
        raise TokenError(
            f"access token lifetime must be in (0, {ACCESS_TOKEN_MAX_LIFETIME}] s (A_23079)"
        )
    raw = random(32)
    if len(raw) < 32:
        raise TokenError("the random source returned fewer than 32 bytes")
    return AccessToken(b64u_encode(raw), lifetime)


def new_authorization_code(random: Callable[[int], bytes] = secrets.token_bytes) -> str:
    """Authorization code: 32 random bytes, base64url (43 chars). Single use and ≤ 60 s
    are enforced by storing it with :meth:`LoginStore.put_code` and redeeming via
    :meth:`LoginStore.take_code`."""
    raw = random(32)
    if len(raw) < 32:
        raise TokenError("the random source returned fewer than 32 bytes")
    return b64u_encode(raw)


