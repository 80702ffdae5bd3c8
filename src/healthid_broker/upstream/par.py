"""Pushed authorization request toward a sectoral IdP (RFC 9126) and the front channel.

The broker, as relying party, POSTs the authorization parameters over mutual TLS with
its self-signed client certificate (RFC 8705 §2.2) to the IdP's
``pushed_authorization_request_endpoint``:

    client_id=<RP entity id>, response_type=code, state, nonce, redirect_uri,
    code_challenge (RFC 7636 §4.2, S256, 43 chars), code_challenge_method=S256,
    scope, acr_values

``prompt``/``max_age`` are sent only when re-authentication is forced (A_23030).  The
IdP answers ``201 {request_uri, expires_in}`` (RFC 9126 §2.2; reference IdP: 90 s,
A_22993).  On ``401`` to the *first* PAR of a login the request is repeated once after a
short pause (A_23500: the IdP may not yet have fetched our fresh entity statement).

The broker generates its own ``state``, ``nonce`` and PKCE verifier toward the IdP
(:func:`new_auth_secrets`); it never forwards the application's values.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import os
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import anyio

from ..crypto.jose import b64u_encode
from ..http import ClientIdentity, HttpClient, HttpResponse, HttpTransportError
from ..ti_profile import ACR_HIGH, ACR_SUBSTANTIAL
from .errors import ParError, oauth_error_code, sanitize

__all__ = [
    "ACR_HIGH",
    "ACR_SUBSTANTIAL",
    "AuthSecrets",
    "ParRequest",
    "ParResponse",
    "authorization_redirect_url",
    "new_auth_secrets",
    "pkce_challenge",
    "push_authorization_request",
]

_ACRS = frozenset({ACR_HIGH, ACR_SUBSTANTIAL})

# RFC 7636 §4.1: code_verifier = 43*128unreserved; we use 32 random bytes → 43 chars.
_SECRET_BYTES = 32
_B64U_43 = re.compile(r"^[A-Za-z0-9_-]{43}$")
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")
_MAX_REQUEST_URI = 2048
_MAX_EXPIRES_IN = 3600
_VISIBLE_ASCII = re.compile(r"[!-~]+")  # RFC 9126 request_uri: visible ASCII, non-empty

RandomBytes = Callable[[int], bytes]
Sleep = Callable[[float], Awaitable[None]]


_token_bytes = secrets.token_bytes


@functools.lru_cache(maxsize=64)  # the IdPs' few endpoints
def is_https(url: str) -> bool:
    """Whether ``url`` is an https URL (PAR and token endpoints must be)."""
    return urlsplit(url).scheme == "https"


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 §4.2 S256: BASE64URL(SHA256(ASCII(code_verifier))) — always 43 chars."""
    if not _VERIFIER.match(verifier):
        raise ValueError("a PKCE code_verifier is 43-128 unreserved characters (RFC 7636 §4.1)")
    return b64u_encode(hashlib.sha256(verifier.encode("ascii")).digest())


@dataclass(frozen=True)
class AuthSecrets:
    """The broker's own ``state``, ``nonce`` and PKCE verifier for one upstream login.

    Kept only in the sealed login transaction; not shown in ``repr``.
    """

    state: str = field(repr=False)
    nonce: str = field(repr=False)
    code_verifier: str = field(repr=False)

    @property
    def code_challenge(self) -> str:
        return pkce_challenge(self.code_verifier)


def new_auth_secrets(randbytes: RandomBytes = secrets.token_bytes) -> AuthSecrets:
    """Fresh ``state``, ``nonce`` and ``code_verifier`` (256 bits each, base64url).

    ``randbytes`` is injectable for tests; production uses :func:`secrets.token_bytes`.
    """
    if randbytes is _token_bytes:
        # secrets.token_bytes is os.urandom: one call (one getrandom syscall), not three
        raw = os.urandom(3 * _SECRET_BYTES)
        return AuthSecrets(state=b64u_encode(raw[:_SECRET_BYTES]),
                           nonce=b64u_encode(raw[_SECRET_BYTES:2 * _SECRET_BYTES]),
                           code_verifier=b64u_encode(raw[2 * _SECRET_BYTES:]))
    vals = []
    for _ in range(3):
        raw = randbytes(_SECRET_BYTES)
        if len(raw) != _SECRET_BYTES:
            raise ValueError("the random source returned the wrong number of bytes")
        vals.append(b64u_encode(raw))
    return AuthSecrets(state=vals[0], nonce=vals[1], code_verifier=vals[2])


@dataclass(frozen=True)
class ParRequest:
    """Everything the PAR form carries.  ``prompt``/``max_age``: only to force
    re-authentication (A_23030); otherwise leave them ``None``."""

    endpoint: str
    client_id: str
    redirect_uri: str
    scope: str
    acr_values: str
    state: str = field(repr=False)
    nonce: str = field(repr=False)
    code_challenge: str
    prompt: str | None = None
    max_age: int | None = None

    @classmethod
    def build(
        cls,
        *,
        endpoint: str,
        client_id: str,
        redirect_uri: str,
        scope: str,
        acr_values: str,
        auth: AuthSecrets,
        prompt: str | None = None,
        max_age: int | None = None,
    ) -> ParRequest:
        req = cls(endpoint, client_id, redirect_uri, scope, acr_values, auth.state,
                  auth.nonce, auth.code_challenge, prompt, max_age)
        req.check()
        return req

    def check(self) -> None:
        """Refuse a request the IdP would reject anyway (and say why, without secrets)."""
        if not is_https(self.endpoint):
            raise ParError(f"PAR endpoint {sanitize(self.endpoint)} is not an https URL")
        if "openid" not in self.scope.split(" "):
            raise ParError("the PAR scope must contain 'openid'")
        if self.acr_values not in _ACRS:
            raise ParError(
                f"acr_values {sanitize(self.acr_values)!r} is not {ACR_HIGH} or {ACR_SUBSTANTIAL}"
            )
        if not _B64U_43.match(self.code_challenge):
            raise ParError("code_challenge must be a 43-character S256 value (RFC 7636 §4.2)")
        if not self.state or not self.nonce:
            raise ParError("state and nonce must not be empty")
        if self.max_age is not None and (isinstance(self.max_age, bool) or self.max_age < 0):
            raise ParError("max_age must be a non-negative integer")

    def form(self) -> dict[str, str]:
        """The form body, exactly the parameters of the TI profile (RFC 9126 §2.1)."""
        out = {
            "client_id": self.client_id,
            "response_type": "code",
            "state": self.state,
            "nonce": self.nonce,
            "redirect_uri": self.redirect_uri,
            "code_challenge": self.code_challenge,
            "code_challenge_method": "S256",
            "scope": self.scope,
            "acr_values": self.acr_values,
        }
        if self.prompt is not None:
            out["prompt"] = self.prompt
        if self.max_age is not None:
            out["max_age"] = str(self.max_age)
        return out


@dataclass(frozen=True)
class ParResponse:
    request_uri: str
    expires_in: int


def _parse_created(resp: HttpResponse, endpoint: str) -> ParResponse:
    try:
        body: Any = resp.json()
    except (ValueError, UnicodeDecodeError) as exc:
        raise ParError(f"PAR answer of {sanitize(endpoint)} is not JSON",
                       status=resp.status) from exc
    if not isinstance(body, Mapping):
        raise ParError(f"PAR answer of {sanitize(endpoint)} is not a JSON object",
                       status=resp.status)
    uri = body.get("request_uri")
    if (
        not isinstance(uri, str)
        or len(uri) > _MAX_REQUEST_URI
        or not _VISIBLE_ASCII.fullmatch(uri)
    ):
        raise ParError(f"PAR answer of {sanitize(endpoint)} has no usable request_uri",
                       status=resp.status)
    exp = body.get("expires_in")
    if isinstance(exp, bool) or not isinstance(exp, int) or not 0 < exp <= _MAX_EXPIRES_IN:
        raise ParError(
            f"PAR answer of {sanitize(endpoint)} has no usable expires_in (positive integer "
            f"seconds, at most {_MAX_EXPIRES_IN})",
            status=resp.status,
        )
    return ParResponse(uri, exp)


def _error_from(resp: HttpResponse, endpoint: str) -> ParError:
    code: str | None = None
    desc = ""
    try:
        body: Any = resp.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    if isinstance(body, Mapping):
        code = oauth_error_code(body.get("error"))
        d = body.get("error_description")
        if isinstance(d, str) and d:
            desc = f": {sanitize(d)}"
    what = code or "no OAuth error code"
    return ParError(
        f"PAR to {sanitize(endpoint)} failed with HTTP {resp.status} ({what}){desc}",
        oauth_error=code,
        status=resp.status,
    )


async def push_authorization_request(
    http: HttpClient,
    request: ParRequest,
    identity: ClientIdentity,
    *,
    first_par: bool = True,
    retry_pause: float = 1.0,
    sleep: Sleep = anyio.sleep,
) -> ParResponse:
    """Send the PAR over mTLS with ``identity`` (the RP's self-signed certificate).

    ``first_par``: this is the first PAR of the login — only then is a ``401`` repeated,
    once, after ``retry_pause`` seconds (A_23500).
    """
    request.check()
    attempts = 2 if first_par else 1
    for attempt in range(attempts):
        try:
            resp = await http.post_form(
                request.endpoint,
                request.form(),
                headers={"accept": "application/json"},
                identity=identity,
            )
        except HttpTransportError as exc:
            raise ParError(f"PAR endpoint {sanitize(request.endpoint)} unreachable: "
                           f"{sanitize(exc, 200)}") from exc
        if resp.status == 401 and attempt + 1 < attempts:
            await sleep(retry_pause)  # A_23500
            continue
        if resp.status == 201:
            return _parse_created(resp, request.endpoint)
        if resp.status == 200:
            raise ParError(
                f"PAR to {sanitize(request.endpoint)} answered 200; RFC 9126 §2.2 requires 201",
                status=200,
            )
        raise _error_from(resp, request.endpoint)
    raise AssertionError("unreachable")


def authorization_redirect_url(
    authorization_endpoint: str,
    client_id: str,
    request_uri: str,
    *,
    allow_loopback_http: bool = False,
) -> str:
    """Front channel (RFC 9126 §4): ``authorization_endpoint?client_id=…&request_uri=…``.

    The endpoint must be ``https``; ``allow_loopback_http`` additionally admits plain
    ``http`` to a loopback host (``localhost``, ``127.0.0.0/8``, ``::1``) — for the local
    sandbox only.  Existing query parameters of the endpoint (from metadata) are kept.
    """
    sep = _query_separator(authorization_endpoint, allow_loopback_http)
    q = urlencode({"client_id": client_id, "request_uri": request_uri})
    return f"{authorization_endpoint}{sep}{q}"


@functools.lru_cache(maxsize=64)  # one per IdP: checked once, not on every login
def _query_separator(authorization_endpoint: str, allow_loopback_http: bool) -> str:
    parts = urlsplit(authorization_endpoint)
    ok_scheme = parts.scheme == "https" or (
        allow_loopback_http and parts.scheme == "http" and _is_loopback(parts.hostname)
    )
    if not ok_scheme or not parts.hostname or parts.fragment or parts.username is not None:
        raise ParError(
            f"authorization_endpoint {sanitize(authorization_endpoint)} is not an https URL"
        )
    return "&" if parts.query else "?"


def _is_loopback(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
