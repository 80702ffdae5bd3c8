"""The IdP's authorization response at the broker's callback (RFC 6749 §4.1.2, RFC 9207).

The sectoral IdP sends the browser back to the broker's ``redirect_uri`` with either
``code`` and ``state`` (success, RFC 6749 §4.1.2) or ``error`` and ``state`` (RFC 6749
§4.1.2.1), and — when it implements RFC 9207 — ``iss``, its issuer identifier.
``state`` has already selected the pending login (it is the store key); this module reads
the rest.

RFC 9207 §2.4, the order of the checks: ``iss`` first, for success *and* error responses,
so that a response from another IdP (mix-up attack, RFC 9207 §1) is refused before its
``code`` could be sent to the chosen IdP's token endpoint. ``iss`` is compared with the
chosen IdP's issuer by simple string comparison (RFC 3986 §6.2.1). A response without
``iss`` is accepted unless the IdP announced ``authorization_response_iss_parameter_supported``
in its metadata, in which case it is refused as well.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import (
    AuthorizationResponseError,
    IdpDeclined,
    IssuerMismatch,
    oauth_error_code,
    sanitize,
)

__all__ = ["MAX_CODE_LENGTH", "authorization_code"]

MAX_CODE_LENGTH = 2048
"""Longest ``code`` accepted; the reference IdP's codes are far shorter."""
_CODE = re.compile(r"[\x20-\x7e]+")  # RFC 6749 Appendix A.11: code = 1*VSCHAR


def authorization_code(response: Mapping[str, str], *, issuer: str, iss_required: bool) -> str:
    """The ``code`` of a successful authorization response from ``issuer``.

    Raises :class:`IssuerMismatch` when ``iss`` names another issuer (or is missing and
    ``iss_required``), :class:`IdpDeclined` for an error response (or one with neither
    ``code`` nor ``error``), :class:`AuthorizationResponseError` for a malformed ``code``.
    Messages carry no request value except a sanitised, bounded ``iss``/``error``.
    """
    iss = response.get("iss")
    if iss is None:
        if iss_required:
            raise IssuerMismatch(
                f"the authorization response carries no iss, although {sanitize(issuer)} "
                "announces authorization_response_iss_parameter_supported (RFC 9207 §2.4)")
    elif iss != issuer:
        raise IssuerMismatch(
            f"the authorization response names the issuer {sanitize(iss)!r}, but the login "
            f"was sent to {sanitize(issuer)} (RFC 9207 §2.4)")
    if "error" in response:
        error = oauth_error_code(response["error"])
        raise IdpDeclined(
            f"{sanitize(issuer)} answered with the error {error or '(malformed)'}",
            oauth_error=error)
    code = response.get("code")
    if code is None:
        raise IdpDeclined(f"{sanitize(issuer)} answered with neither code nor error")
    if len(code) > MAX_CODE_LENGTH or not _CODE.fullmatch(code):
        raise AuthorizationResponseError(
            f"the code in {sanitize(issuer)}'s authorization response is empty, longer than "
            f"{MAX_CODE_LENGTH} characters or not printable ASCII")
    return code
