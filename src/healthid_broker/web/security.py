"""Security headers on every response (T-21) and the catch-all error guard.

The guard turns any unhandled exception into a generic answer — JSON for API paths, a friendly
page otherwise — with no stack trace and no personal data (GS-A_3813, T-27).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

log = logging.getLogger("healthid_broker.web")

CSP = (
    "default-src 'none'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
    "form-action 'self' http: https:; frame-ancestors 'none'; base-uri 'none'"
)

_BASE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_BASE_NAMES = frozenset(k for k, _ in _BASE_HEADERS)
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
_NO_STORE = (b"cache-control", b"no-store")
# What the guard appends when the app set none of _BASE_NAMES (the common case), indexed by
# whether it set cache-control: one list concatenation per response.
_PLAIN_BLOCKS = ([*_BASE_HEADERS, _NO_STORE], _BASE_HEADERS)
_TLS_BLOCKS = ([*_BASE_HEADERS, _HSTS, _NO_STORE], [*_BASE_HEADERS, _HSTS])


def incident_id(scope: Scope) -> str:
    """One incident id per failed request, shared by the error answer and the log line."""
    incident: str | None = scope.get("healthid.incident")
    if incident is None:
        incident = uuid.uuid4().hex[:12]
        scope["healthid.incident"] = incident
    return incident


def _merged(headers: list[tuple[bytes, bytes]], present: set[bytes],
            hsts: bool) -> list[tuple[bytes, bytes]]:
    """The app's headers and ours, where the app set some of ours itself (the chooser's
    CSP): the app's win."""
    out = list(headers)
    out.extend(kv for kv in _BASE_HEADERS if kv[0] not in present)
    if hsts:
        out.append(_HSTS)
    if b"cache-control" not in present:
        out.append(_NO_STORE)
    return out


class Guard:
    """Outermost middleware: security headers on every response (T-21) and the catch-all
    error answer — an unhandled exception becomes a generic 500 with an incident id, no
    stack trace and no input echoed (GS-A_3813, T-27). One wrapper for both, because it
    runs on every request."""

    def __init__(self, app: ASGIApp, *, hsts: bool = True) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hsts = self.hsts and scope.get("scheme") == "https"
        blocks = _TLS_BLOCKS if hsts else _PLAIN_BLOCKS
        started = False

        def _send(message: Message) -> Awaitable[None]:
            # a plain function handing back the server's awaitable: no coroutine of its own
            # per message (this runs twice for every response)
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = message.get("headers", ())
                if type(headers) is not list:
                    headers = list(headers)  # read twice below
                present = {k.lower() for k, _ in headers}
                if present.isdisjoint(_BASE_NAMES):
                    message["headers"] = [*headers, *blocks[b"cache-control" in present]]
                else:
                    message["headers"] = _merged(headers, present, hsts)
            return send(message)

        try:
            await self.app(scope, receive, _send)
        except Exception as exc:  # noqa: BLE001 — the guard must catch everything
            incident = incident_id(scope)
            # Type name only: exception texts may quote input.
            log.error("unhandled %s on %s (incident %s)", type(exc).__name__,
                      scope.get("path", "?"), incident)
            if started:  # the app's error handler already answered (with this incident id)
                return
            body = (
                b'{"error":"server_error","error_description":"internal error, incident '
                + incident.encode() + b'"}'
            )
            await _send({"type": "http.response.start", "status": 500, "headers": [
                (b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
