"""Client authentication at the broker's token endpoint (RFC 6749 §2.3, OIDC Core §9).

Supported methods, one per registered client:

* ``client_secret_basic`` — RFC 6749 §2.3.1: HTTP Basic whose user name and password are
  the ``application/x-www-form-urlencoded`` client id and secret. The secret itself is
  checked by a callable the tenancy service provides (hashes live there).
* ``private_key_jwt`` — RFC 7523 §2.2/§3 and OIDC Core §9: a JWT signed with a key from
  the client's registered JWKS; ``iss`` = ``sub`` = client id, ``aud`` contains the token
  endpoint URL or the issuer, ``exp`` required; usable until ``exp`` but at most
  :data:`MAX_ASSERTION_AHEAD` seconds (after ``iat``), ``jti`` required and single use
  (replay guard in the transient store, RFC 7523 §3 rule 7). Only **ES256** is accepted
  (``crypto.jose``; all TI keys are EC P-256, A_23196); RS256 assertions are refused with a
  clear message.
* ``none`` — public clients (mobile/SPA) identify with ``client_id`` only; the token
  endpoint must then insist on PKCE (RFC 7636, RFC 9700 §2.1.1).

RFC 6749 §2.3: a client MUST NOT use more than one method in a request, and §3.2:
parameters MUST NOT be repeated — both are refused. ``client_secret_post`` is not
offered (secrets do not belong in request bodies that end up in logs).
Every failure is an :class:`OAuthError` ``invalid_client`` (401) or ``invalid_request``;
no message quotes the presented id, secret or assertion.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import unquote_plus

from ..crypto.jose import JWK, JoseError, parse_jws, verify_jws
from ..login.errors import StoreError
from ..login.store import MAX_TTL, TransientStore
from .errors import OAuthError

__all__ = [
    "JWT_BEARER",
    "MAX_ASSERTION_AHEAD",
    "REPLAY_PURPOSE",
    "AuthenticatedClient",
    "ClientAuthMethod",
    "ClientLookup",
    "RegisteredClient",
    "SecretVerifier",
    "authenticate_client",
    "parse_client_secret_basic",
    "verify_client_assertion",
]

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"  # RFC 7523 §2.2
MAX_ASSERTION_AHEAD = 300.0
"""``exp`` may be at most this far in the future; must stay below the store's MAX_TTL so
the ``jti`` is remembered for the assertion's whole life."""
DEFAULT_LEEWAY = 30.0
REPLAY_PURPOSE = "client.jti"
_AUTH_PARAMS = ("client_id", "client_secret", "client_assertion", "client_assertion_type")
_BASIC_RE = re.compile(r"^[Bb][Aa][Ss][Ii][Cc] +([A-Za-z0-9+/]+={0,2}) *\Z")
_CTL_RE = re.compile(r"[\x00-\x1f\x7f]")


class ClientAuthMethod(StrEnum):
    CLIENT_SECRET_BASIC = "client_secret_basic"  # noqa: S105 - a method name
    PRIVATE_KEY_JWT = "private_key_jwt"
    NONE = "none"


@dataclass(frozen=True)
class RegisteredClient:
    """What the tenancy service knows about a client, as far as authentication goes."""

    client_id: str
    auth_method: ClientAuthMethod
    jwks: tuple[JWK, ...] = ()


@dataclass(frozen=True)
class AuthenticatedClient:
    client: RegisteredClient
    method: ClientAuthMethod

    @property
    def client_id(self) -> str:
        return self.client.client_id

    @property
    def public(self) -> bool:
        """Public clients (``none``) must be held to PKCE by the token endpoint."""
        return self.method is ClientAuthMethod.NONE


ClientLookup = Callable[[str], Awaitable[RegisteredClient | None]]
SecretVerifier = Callable[[RegisteredClient, str], Awaitable[bool]]


def _bad_basic(msg: str) -> OAuthError:
    return OAuthError.invalid_client(msg, basic=True)


def parse_client_secret_basic(authorization: str) -> tuple[str, str]:
    """Decode ``Authorization: Basic …`` into (client_id, client_secret), RFC 6749 §2.3.1.

    Both parts are form-urlencoded inside Basic, so a raw ``:`` can appear only as the
    separator: more than one is ambiguous and refused. Empty parts, invalid base64,
    invalid UTF-8 and control characters are refused.
    """
    m = _BASIC_RE.match(authorization)
    if m is None:
        raise _bad_basic("the Authorization header is not HTTP Basic with base64 credentials")
    try:
        decoded = base64.b64decode(m.group(1), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise _bad_basic("the Basic credentials are not valid base64 of UTF-8 text") from None
    if decoded.count(":") != 1:
        raise _bad_basic(
            "the Basic credentials must be client_id:client_secret with both parts "
            "form-urlencoded (RFC 6749 2.3.1), exactly one ':'"
        )
    raw_id, raw_secret = decoded.split(":")
    try:
        client_id = unquote_plus(raw_id, errors="strict")
        secret = unquote_plus(raw_secret, errors="strict")
    except UnicodeDecodeError:
        raise _bad_basic("the Basic credentials contain invalid percent-encoding") from None
    if not client_id or not secret:
        raise _bad_basic("the Basic credentials need a non-empty client_id and client_secret")
    if _CTL_RE.search(client_id) or _CTL_RE.search(secret):
        raise _bad_basic("the Basic credentials contain control characters")
    return client_id, secret


def _num(payload: dict[str, Any], name: str) -> float | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise OAuthError.invalid_client(f"the client assertion's {name} must be a number")
    return float(value)


async def verify_client_assertion(
    assertion: str,
    client: RegisteredClient,
    *,
    audiences: Sequence[str],
    now: float,
    replay: TransientStore,
    leeway: float = DEFAULT_LEEWAY,
    max_ahead: float = MAX_ASSERTION_AHEAD,
) -> None:
    """Verify a ``private_key_jwt`` assertion (RFC 7523 §3, OIDC Core §9).

    ``audiences``: the accepted ``aud`` values — the token endpoint URL and the issuer.
    The ``jti`` is recorded in ``replay`` until the assertion expires (at the latest
    ``iat + max_ahead``); a second use is refused.
    """
    if max_ahead + leeway > MAX_TTL:
        raise ValueError("max_ahead + leeway must fit in the transient store's TTL limit")
    try:
        parsed = parse_jws(assertion)
    except JoseError as exc:
        msg = "the client assertion must be an ES256-signed JWT"
        if '"RS256"' in str(exc) or "'RS256'" in str(exc):
            msg = "the client assertion uses RS256; only ES256 (EC P-256) is accepted"
        raise OAuthError.invalid_client(msg) from None
    keys = [k for k in client.jwks if k.use in (None, "sig")]
    if not keys:
        raise OAuthError.invalid_client("the client has no registered signing key")
    try:
        verify_jws(parsed, keys, require_kid=False)
        payload = parsed.payload_json()
    except JoseError:
        raise OAuthError.invalid_client(
            "the client assertion's signature does not verify with the client's keys"
        ) from None
    if payload.get("iss") != client.client_id or payload.get("sub") != client.client_id:
        raise OAuthError.invalid_client("the client assertion's iss and sub must be the client_id")
    aud = payload.get("aud")
    auds = [aud] if isinstance(aud, str) else aud
    if not isinstance(auds, list) or not any(
        isinstance(a, str) and a in audiences for a in auds
    ):
        raise OAuthError.invalid_client(
            "the client assertion's aud must contain the token endpoint URL or the issuer"
        )
    exp = _num(payload, "exp")
    if exp is None:
        raise OAuthError.invalid_client("the client assertion needs exp")
    nbf = _num(payload, "nbf")
    if nbf is not None and now + leeway < nbf:
        raise OAuthError.invalid_client("the client assertion is not valid yet (nbf)")
    iat = _num(payload, "iat")
    if iat is not None and iat > now + leeway:
        raise OAuthError.invalid_client("the client assertion's iat is in the future")
    # An assertion is usable for at most ``max_ahead`` seconds. Many client libraries set
    # exp = iat + 1 h (Authlib does); such an assertion is accepted while it is fresh, i.e.
    # its effective expiry is iat + max_ahead, and its jti is remembered until then.
    effective_exp = exp
    if exp - now > max_ahead:
        if iat is None:
            raise OAuthError.invalid_client(
                f"the client assertion's exp is more than {max_ahead:.0f} s in the future "
                "and it has no iat"
            )
        effective_exp = min(exp, iat + max_ahead)
    if now >= effective_exp + leeway:
        raise OAuthError.invalid_client(
            "the client assertion has expired" if effective_exp == exp
            else f"the client assertion is older than {max_ahead:.0f} s (iat)"
        )
    jti = payload.get("jti")
    if not isinstance(jti, str) or not 0 < len(jti) <= 256:
        raise OAuthError.invalid_client("the client assertion needs a jti (1-256 characters)")
    ttl = min(MAX_TTL, max(1.0, effective_exp + leeway - now))
    try:
        fresh = await replay.add_if_absent(REPLAY_PURPOSE, f"{client.client_id}\n{jti}", ttl)
    except StoreError:
        raise OAuthError(
            "temporarily_unavailable", "replay protection is unavailable; try again"
        ) from None
    if not fresh:
        raise OAuthError.invalid_client("the client assertion was already used (jti replay)")


def _single(form: Sequence[tuple[str, str]]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in form:
        if name in _AUTH_PARAMS:
            if name in out:
                raise OAuthError.invalid_request(
                    f"the parameter {name} must not be repeated (RFC 6749 3.2)"
                )
            out[name] = value
    return out


async def authenticate_client(
    *,
    authorization: Sequence[str],
    form: Sequence[tuple[str, str]],
    lookup: ClientLookup,
    verify_secret: SecretVerifier,
    token_endpoint: str,
    issuer: str,
    now: float,
    replay: TransientStore,
    leeway: float = DEFAULT_LEEWAY,
    par_endpoint: str | None = None,
) -> AuthenticatedClient:
    """Authenticate the client of a token request (or of a pushed authorization request:
    then ``par_endpoint`` is a further accepted assertion ``aud``, RFC 9126 §2).

    ``authorization``: every ``Authorization`` header value (normally zero or one);
    ``form``: the request body's parameters in order, repeats included
    (e.g. Starlette ``FormData.multi_items()``).
    """
    if len(authorization) > 1:
        raise OAuthError.invalid_request("only one Authorization header is allowed")
    params = _single(form)
    header = authorization[0] if authorization else None
    has_assertion = "client_assertion" in params or "client_assertion_type" in params
    if "client_secret" in params:
        raise OAuthError.invalid_client(
            "client_secret in the request body is not supported; use HTTP Basic"
        )
    if header is not None and has_assertion:
        raise OAuthError.invalid_request(
            "use exactly one client authentication method (RFC 6749 2.3)"
        )

    if header is not None:
        client_id, secret = parse_client_secret_basic(header)
        if "client_id" in params and params["client_id"] != client_id:
            raise OAuthError.invalid_request("client_id differs from the Basic credentials")
        client = await lookup(client_id)
        if client is None or client.auth_method is not ClientAuthMethod.CLIENT_SECRET_BASIC:
            raise _bad_basic("client authentication failed")
        if not await verify_secret(client, secret):
            raise _bad_basic("client authentication failed")
        return AuthenticatedClient(client, ClientAuthMethod.CLIENT_SECRET_BASIC)

    if has_assertion:
        if params.get("client_assertion_type") != JWT_BEARER:
            raise OAuthError.invalid_client(f"client_assertion_type must be {JWT_BEARER}")
        assertion = params.get("client_assertion")
        if not assertion:
            raise OAuthError.invalid_client("client_assertion is missing")
        try:
            sub = parse_jws(assertion).payload_json().get("sub")
        except JoseError:
            raise OAuthError.invalid_client(
                "the client assertion must be an ES256-signed JWT"
            ) from None
        if not isinstance(sub, str) or not sub:
            raise OAuthError.invalid_client("the client assertion's sub must be the client_id")
        if "client_id" in params and params["client_id"] != sub:
            raise OAuthError.invalid_request("client_id differs from the assertion's sub")
        client = await lookup(sub)
        if client is None or client.auth_method is not ClientAuthMethod.PRIVATE_KEY_JWT:
            raise OAuthError.invalid_client("client authentication failed")
        await verify_client_assertion(
            assertion, client,
            audiences=(token_endpoint, issuer, *([par_endpoint] if par_endpoint else [])),
            now=now, replay=replay,
            leeway=leeway,
        )
        return AuthenticatedClient(client, ClientAuthMethod.PRIVATE_KEY_JWT)

    public_id = params.get("client_id")
    if not public_id:
        raise OAuthError.invalid_client("no client authentication and no client_id")
    client = await lookup(public_id)
    if client is None or client.auth_method is not ClientAuthMethod.NONE:
        raise OAuthError.invalid_client("client authentication failed")
    return AuthenticatedClient(client, ClientAuthMethod.NONE)
