"""Typed errors of the relying-party side toward the sectoral IdPs.

Every message says what is wrong and where, so an operator can act on it — and never
carries personal data: no KVNR, names, birthdate, e-mail, ``sub``, ``nonce`` or ID token
(GS-A_3813, A_23050).  Text that comes from an IdP (OAuth ``error_description``, entity
identifiers inside a token) is passed through :func:`sanitize` before it reaches a
message: printable ASCII only, bounded length.
"""

from __future__ import annotations

import re

__all__ = [
    "AuthorizationResponseError",
    "IdTokenError",
    "IdpDeclined",
    "IdpListError",
    "IssuerMismatch",
    "ParError",
    "SignedJwksError",
    "TokenError",
    "UnknownSigningKey",
    "UpstreamError",
    "oauth_error_code",
    "sanitize",
]

_MAX_TEXT = 120
_NOT_PRINTABLE = re.compile(r"[^ -~]")
# RFC 6749 §5.2: error = 1*( %x20-21 / %x23-5B / %x5D-7E ); we additionally refuse spaces.
_ERROR_CODE = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]{1,64}$")


def sanitize(text: object, limit: int = _MAX_TEXT) -> str:
    """Printable ASCII only, at most ``limit`` characters (``…`` marks a cut)."""
    s = _NOT_PRINTABLE.sub("?", str(text))
    return s if len(s) <= limit else s[: limit - 1] + "…"


def oauth_error_code(value: object) -> str | None:
    """The IdP's OAuth ``error`` value if it is a well-formed code (RFC 6749 §5.2)."""
    if isinstance(value, str) and _ERROR_CODE.match(value):
        return value
    return None


class UpstreamError(Exception):
    """Base class of every failure talking to, or accepting data from, a sectoral IdP.

    ``oauth_error`` is the IdP's OAuth error code when it sent a well-formed one;
    ``status`` the HTTP status of the failing answer, when there was one.
    """

    def __init__(
        self, message: str, *, oauth_error: str | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.oauth_error = oauth_error
        self.status = status


class IdpListError(UpstreamError):
    """The federation master's IdP list is unreachable, malformed or wrongly signed."""


class SignedJwksError(UpstreamError):
    """An IdP's signed JWKS is unreachable, malformed or wrongly signed."""


class ParError(UpstreamError):
    """The pushed authorization request (RFC 9126) failed or was answered wrongly."""


class AuthorizationResponseError(UpstreamError):
    """The IdP's authorization response (the browser's redirect back to the broker,
    RFC 6749 §4.1.2) is unusable: no well-formed ``code``, or an unreadable pending login."""


class IdpDeclined(AuthorizationResponseError):
    """The IdP answered with an error response (RFC 6749 §4.1.2.1), e.g. the person
    cancelled. ``oauth_error`` is its ``error`` code when well-formed."""


class IssuerMismatch(AuthorizationResponseError):
    """RFC 9207 §2.4: the response's ``iss`` is not the chosen IdP's issuer, or is missing
    although the IdP announced ``authorization_response_iss_parameter_supported``. The
    response may come from another IdP (mix-up attack); its ``code`` is never redeemed."""


class TokenError(UpstreamError):
    """The token request (authorization code exchange) failed or was answered wrongly."""


class IdTokenError(UpstreamError):
    """The ID token is rejected.  ``reason`` is a short, stable code for events/metrics
    (``decryption``, ``header``, ``signature``, ``iss``, ``aud``, ``expired``,
    ``not_yet_valid``, ``nonce``, ``acr``, ``version``, ``claims``)."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class UnknownSigningKey(IdTokenError):
    """The ID token's ``kid`` names no key of the IdP's signed JWKS.

    A_22861: the caller re-fetches the IdP's entity configuration and signed JWKS once
    and validates again; only if the key is still unknown does the login fail.
    """

    def __init__(self, message: str, *, kid: str | None) -> None:
        super().__init__(message, reason="unknown_kid")
        self.kid = kid

