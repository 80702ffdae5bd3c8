"""Token request toward a sectoral IdP (OIDC Core §3.1.3, RFC 6749 §4.1.3, RFC 7636 §4.5).

Sent over mutual TLS with the RP's self-signed certificate (RFC 8705 §2.2,
``token_endpoint_auth_method=self_signed_tls_client_auth``):

    grant_type=authorization_code, code, code_verifier, client_id, redirect_uri

``redirect_uri`` must be the one of the PAR.  The answer is
``200 {id_token, access_token, token_type: "Bearer", expires_in}`` (RFC 6749 §5.1).
The ID token is a secret full of personal data: it is never logged, never put into an
exception message and hidden from ``repr`` (A_23050, GS-A_3813).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..http import ClientIdentity, HttpClient, HttpTransportError
from .errors import TokenError, oauth_error_code, sanitize
from .par import is_https

__all__ = ["TokenResponse", "redeem_code"]


@dataclass(frozen=True)
class TokenResponse:
    id_token: str = field(repr=False)
    access_token: str = field(repr=False)
    token_type: str
    expires_in: int | None


def _parse_ok(body: Any, endpoint: str) -> TokenResponse:
    if not isinstance(body, Mapping):
        raise TokenError(f"token answer of {sanitize(endpoint)} is not a JSON object",
                         status=200)
    id_token = body.get("id_token")
    if not isinstance(id_token, str) or not id_token:
        raise TokenError(f"token answer of {sanitize(endpoint)} has no id_token", status=200)
    access_token = body.get("access_token")
    if not isinstance(access_token, str) or not access_token:
        raise TokenError(f"token answer of {sanitize(endpoint)} has no access_token",
                         status=200)
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise TokenError(
            f"token answer of {sanitize(endpoint)} has token_type "
            f"{sanitize(token_type, 20)!r}, expected Bearer",
            status=200,
        )
    expires_in = body.get("expires_in")
    if expires_in is not None and (
        isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0
    ):
        raise TokenError(f"token answer of {sanitize(endpoint)} has an invalid expires_in",
                         status=200)
    return TokenResponse(id_token, access_token, "Bearer", expires_in)


async def redeem_code(
    http: HttpClient,
    token_endpoint: str,
    *,
    code: str,
    code_verifier: str,
    client_id: str,
    redirect_uri: str,
    identity: ClientIdentity,
) -> TokenResponse:
    """Exchange the authorization ``code`` for tokens over mTLS with ``identity``."""
    if not is_https(token_endpoint):
        raise TokenError(f"token endpoint {sanitize(token_endpoint)} is not an https URL")
    if not code:
        raise TokenError("the IdP's redirect carried no authorization code")
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": code_verifier,
        "client_id": client_id,
        "redirect_uri": redirect_uri,
    }
    try:
        resp = await http.post_form(
            token_endpoint, form, headers={"accept": "application/json"}, identity=identity
        )
    except HttpTransportError as exc:
        raise TokenError(f"token endpoint {sanitize(token_endpoint)} unreachable: "
                         f"{sanitize(exc, 200)}") from exc
    try:
        body: Any = resp.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if resp.status == 200:
        if body is None:
            raise TokenError(f"token answer of {sanitize(token_endpoint)} is not JSON",
                             status=200)
        return _parse_ok(body, token_endpoint)
    where = sanitize(token_endpoint)
    code_ = oauth_error_code(body.get("error")) if isinstance(body, Mapping) else None
    desc = ""
    if isinstance(body, Mapping):
        d = body.get("error_description")
        if isinstance(d, str) and d:
            desc = f": {sanitize(d)}"
    raise TokenError(
        f"token request to {where} failed with HTTP {resp.status} "
        f"({code_ or 'no OAuth error code'}){desc}",
        oauth_error=code_,
        status=resp.status,
    )
