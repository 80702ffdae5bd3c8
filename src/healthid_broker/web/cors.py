"""CORS for single-page apps (Fetch standard, §3.2 "CORS protocol"), per application.

A single-page app is a public client whose code runs in a browser at some origin; it must
read the discovery document, the JWKS and the token endpoint's answer from the broker, which
is another origin. The origins allowed are exactly those of the application's *public*
clients' registered ``http``/``https`` redirect URIs (``scheme://host[:port]``, the default
port omitted, as browsers send ``Origin``). Confidential clients get none: their token
requests come from a server, never from a browser.

For the paths in :data:`CORS_PATHS`:

* a request whose ``Origin`` is allowed gets ``Access-Control-Allow-Origin: <that origin>``
  (never ``*``, never ``Access-Control-Allow-Credentials``: the broker uses no cookies
  toward apps);
* a preflight (``OPTIONS`` with ``Access-Control-Request-Method``) from an allowed origin is
  answered here with ``204``, the allowed methods and request headers;
* anything else — no ``Origin``, another origin, an unknown application — passes through
  unchanged: no CORS header at all, so the browser refuses to hand the answer to the page
  (a preflight from another origin meets the router's ``405``);
* every answer on these paths carries ``Vary: Origin``, so a shared cache never serves one
  origin's answer to another.

The origins are computed from the application's current configuration (the directory), so
a new or changed client's origin is allowed as soon as the broker sees the change.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from urllib.parse import urlsplit

from ..provider.directory import AppConfig
from .security import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CORS_PATHS", "Cors", "allowed_origins", "origin_of"]

CORS_PATHS: dict[str, tuple[str, ...]] = {
    ".well-known/openid-configuration": ("GET", "HEAD"),
    ".well-known/oauth-authorization-server": ("GET", "HEAD"),
    "jwks": ("GET", "HEAD"),
    "token": ("POST",),
    "par": ("POST",),
}
"""Per-application path below ``/<short-key>/`` → the methods offered cross-origin."""
ALLOWED_REQUEST_HEADERS = ("authorization", "content-type", "accept")
PREFLIGHT_MAX_AGE = 600

# /<short-key>/<path> and RFC 8414 §3.1's /.well-known/oauth-authorization-server/<short-key>
_APP_PATH = re.compile(r"/([a-z0-9-]{3,32})/(.+)")
_RFC8414_PATH = re.compile(r"/\.well-known/oauth-authorization-server/([a-z0-9-]{3,32})")
_DEFAULT_PORTS = {"http": 80, "https": 443}

Lookup = Callable[[str], Awaitable[AppConfig | None]]


def origin_of(uri: str) -> str | None:
    """The serialised origin of an ``http``/``https`` URI (``None`` for other schemes,
    e.g. a native app's private-use scheme, which has no web origin)."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    if port is None or port == _DEFAULT_PORTS[parts.scheme]:
        return f"{parts.scheme}://{host}"
    return f"{parts.scheme}://{host}:{port}"


def allowed_origins(app: AppConfig) -> frozenset[str]:
    """The origins of the active public clients' redirect URIs."""
    out: set[str] = set()
    for client in app.clients.values():
        if not client.public or not client.active:
            continue
        for uri in client.redirect_uris:
            origin = origin_of(uri)
            if origin is not None:
                out.add(origin)
    return frozenset(out)


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return bytes(v).decode("latin-1")
    return None


def _match(path: str) -> tuple[str, tuple[str, ...]] | None:
    """(short key, methods) for a CORS path, else ``None``."""
    m = _RFC8414_PATH.fullmatch(path)
    if m is not None:
        return m.group(1), CORS_PATHS[".well-known/oauth-authorization-server"]
    m = _APP_PATH.fullmatch(path)
    if m is not None and m.group(2) in CORS_PATHS:
        return m.group(1), CORS_PATHS[m.group(2)]
    return None


def _with_headers(send: Send, extra: Iterable[tuple[bytes, bytes]]) -> Send:
    extra = list(extra)

    async def _send(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", ()))
            names = {k.lower() for k, _ in headers}
            add = [kv for kv in extra if kv[0] != b"vary" or b"vary" not in names]
            if b"vary" in names:  # append Origin to the app's own Vary
                headers = [(k, v + b", Origin") if k.lower() == b"vary" else (k, v)
                           for k, v in headers]
            message["headers"] = [*headers, *add]
        await send(message)

    return _send


class Cors:
    """Pure ASGI middleware: CORS on :data:`CORS_PATHS` for each application's allowed
    origins (:func:`allowed_origins`), looked up with ``lookup`` (the provider's
    ``application``: active applications only)."""

    def __init__(self, app: ASGIApp, lookup: Lookup) -> None:
        self.app = app
        self.lookup = lookup

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        matched = _match(scope.get("path", ""))
        if matched is None:
            await self.app(scope, receive, send)
            return
        short_key, methods = matched
        vary = [(b"vary", b"Origin")]
        origin = _header(scope, b"origin")
        app = await self.lookup(short_key) if origin is not None else None
        if origin is None or app is None or origin not in allowed_origins(app):
            await self.app(scope, receive, _with_headers(send, vary))
            return
        acao = (b"access-control-allow-origin", origin.encode("latin-1"))
        requested = _header(scope, b"access-control-request-method")
        if scope.get("method") == "OPTIONS" and requested is not None:
            await self._preflight(send, acao, methods)
            return
        await self.app(scope, receive, _with_headers(send, [acao, *vary]))

    @staticmethod
    async def _preflight(send: Send, acao: tuple[bytes, bytes],
                         methods: tuple[str, ...]) -> None:
        headers = [
            acao,
            (b"access-control-allow-methods", ", ".join(methods).encode()),
            (b"access-control-allow-headers", ", ".join(ALLOWED_REQUEST_HEADERS).encode()),
            (b"access-control-max-age", str(PREFLIGHT_MAX_AGE).encode()),
            (b"vary", b"Origin, Access-Control-Request-Method, Access-Control-Request-Headers"),
            (b"content-length", b"0"),
        ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
