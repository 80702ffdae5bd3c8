"""ASGI middleware: the request checks uvicorn leaves to the application (T-27).

llhttp (through uvicorn) refuses malformed framing — both ``Content-Length`` and
``Transfer-Encoding``, unknown transfer codings, obsolete line folding, a space before a
header's colon — but hands on, as measured on uvicorn 0.54 / httptools 0.9:

* a request without ``Host``, or with two (RFC 9112 §3.2: 400);
* an HTTP/0.9 request line, or ``HTTP/2.0`` over HTTP/1 framing (answered as 1.x);
* an HTTP/1.0 request with ``Transfer-Encoding``, whose body llhttp then frames as chunked
  (RFC 9112 §6.1: a server MUST treat such a message as faulty and close the connection
  after answering);
* a request body of any size, and one that arrives a byte at a time for ever;
* a header section of any size when it arrives within one read (the protocol's bound in
  :mod:`.http_protocol` cuts off heads that do not end).

:class:`HttpGuard` answers each of these with 400, 431, 413, 415 or 408 and ``connection:
close`` before the application runs. It reads the (bounded) body within an overall
deadline and hands it to the application in one message, so no application code waits on
a slow client. ``multipart/form-data`` is refused (415): nothing of the broker takes an
upload. Nothing here parses HTTP; it reads the ASGI scope uvicorn built.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from .http_protocol import MAX_HEAD_BYTES
from .security import ASGIApp, Message, Receive, Scope, Send

__all__ = ["BODY_TIMEOUT", "MAX_BODY_BYTES", "HttpGuard", "Refusal", "plain_refusal"]


MAX_BODY_BYTES = 16 * 1024
"""A request body's bound (a token request is a few hundred bytes, RFC 6749 §4.1.3)."""
BODY_TIMEOUT = 10.0
"""Seconds from the application's first look at a request to its body's last byte."""

Refusal = Callable[[Scope, int, str], ASGIApp]
"""``(scope, status, description) → answer``: how the application words a refusal (JSON
toward apps, a page toward people)."""

_VERSIONS = frozenset({"1.0", "1.1"})
_CLOSE = (b"connection", b"close")


def plain_refusal(scope: Scope, status: int, description: str) -> ASGIApp:
    """The default refusal: an OAuth-style JSON error (RFC 6749 §5.2 shape)."""
    body = b'{"error":"invalid_request","error_description":"' + description.encode() + b'"}'

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})

    return answer


class _Refused(Exception):
    def __init__(self, status: int, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.description = description


class HttpGuard:
    """See the module's docstring. ``max_body`` bytes per request, ``body_timeout`` seconds
    for the whole body; ``refusal`` words the answers."""

    def __init__(self, app: ASGIApp, *, max_body: int = MAX_BODY_BYTES,
                 body_timeout: float = BODY_TIMEOUT, max_head: int = MAX_HEAD_BYTES,
                 refusal: Refusal = plain_refusal) -> None:
        self.app = app
        self.max_head = max_head
        self.max_body = max_body
        self.body_timeout = body_timeout
        self.refusal = refusal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no WebSockets; lifespan events are not used
        try:
            if self._check_head(scope):
                body = await self._read_body(receive)
            else:  # no body: the server has its end already (no deadline to arm)
                body = await self._read_body_now(receive)
        except _Refused as refused:
            await self._refuse(scope, receive, send, refused.status, refused.description)
            return
        except _Gone:
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if sent:
                return await receive()  # waits for the disconnect, as a server's would
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _check_head(self, scope: Scope) -> bool:
        """Refuse what the module's docstring lists; ``True`` when a body follows."""
        version = scope.get("http_version")
        if version not in _VERSIONS:
            raise _Refused(400, "only HTTP/1.0 and HTTP/1.1 are served here")
        hosts = 0
        length: bytes | None = None
        content_type = b""
        chunked = False
        size = len(scope.get("raw_path", b"")) + len(scope.get("query_string", b""))
        for name, value in scope["headers"]:
            size += len(name) + len(value) + 4  # ": " and CRLF
            if name == b"host":
                hosts += 1
            elif name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"content-type":
                content_type = value
        if size > self.max_head:
            raise _Refused(431, "the request's header section is too large")
        if hosts > 1 or (hosts == 0 and version == "1.1"):
            raise _Refused(400, "a request needs exactly one Host header")
        if chunked and version == "1.0":
            raise _Refused(400, "Transfer-Encoding is not defined for HTTP/1.0")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            raise _Refused(413, "the request body is too large")
        if content_type[:10].lower() == b"multipart/":
            raise _Refused(415, "multipart bodies are not accepted here")
        return chunked or (length is not None and length != b"0")

    async def _read_body_now(self, receive: Receive) -> bytes:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Gone
        body: bytes = message.get("body", b"")
        return body

    async def _read_body(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(self.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _Gone
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > self.max_body:
                        raise _Refused(413, "the request body is too large")
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            raise _Refused(408, "the request body did not arrive in time") from None
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int,
                      description: str) -> None:
        """The application's wording of the refusal, with ``connection: close`` (the rest of
        the request is not read, RFC 9112 §9.6)."""

        def closing(message: Message) -> Awaitable[None]:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), _CLOSE]
            return send(message)

        async def nothing() -> Message:
            return {"type": "http.disconnect"}

        await self.refusal(scope, status, description)(scope, nothing, closing)


class _Gone(Exception):
    """The client left before its body was complete."""
