"""uvicorn's httptools protocol with the three per-connection bounds uvicorn does not have
(T-27, docs/decisions/0006-maintained-http-server.md).

uvicorn (0.54) parses with llhttp through httptools and serves ASGI; it has a keep-alive
timeout and a concurrency limit, but

* **no bound on the request head**: httptools collects a header line until its CRLF, so a
  line that never ends grows the process without limit (measured: 6.5 MB taken in without
  an answer);
* **no deadline for the request head**: a new connection, or one that sends its head a
  byte at a time, is kept for ever (the keep-alive timer runs only after a response and is
  dropped with the first byte of the next request);
* **no cap on open connections**: ``limit_concurrency`` answers 503 to requests once the
  count is reached — to those of connections already admitted as well — and never closes
  a connection that sends nothing.

This subclass adds exactly those three, around uvicorn's own callbacks; parsing, framing,
pipelining, flow control and the answers stay uvicorn's. A head over the bound is answered
with uvicorn's own 400 and the connection closed; a head past its deadline and a connection
over the cap are closed without an answer. Everything above the wire (Host, HTTP version,
body size and deadline, content types) is checked by the ASGI middleware in
:mod:`.http_guard`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

__all__ = [
    "HEAD_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_HEAD_BYTES",
    "BoundedConfig",
    "BoundedHttpToolsProtocol",
]

MAX_HEAD_BYTES = 64 * 1024
"""Bytes a request line and header section may take (they are a few hundred)."""
HEAD_TIMEOUT = 10.0
"""Seconds from the first byte of a request (or the connection's start) to its last header."""
MAX_CONNECTIONS = 1000
"""Open connections per process; more are closed as they are accepted."""


class BoundedConfig(uvicorn.Config):
    """``uvicorn.Config`` carrying the bounds of :class:`BoundedHttpToolsProtocol`."""

    def __init__(self, app: Any, *, max_head_bytes: int = MAX_HEAD_BYTES,
                 head_timeout: float = HEAD_TIMEOUT, max_connections: int = MAX_CONNECTIONS,
                 **kwargs: Any) -> None:
        if max_head_bytes < 1024 or head_timeout <= 0 or max_connections < 1:
            raise ValueError("the request-head bound, its deadline and the connection cap "
                             "must be positive (the head bound at least 1 KiB)")
        self.max_head_bytes = max_head_bytes
        self.head_timeout = head_timeout
        self.max_connections = max_connections
        super().__init__(app, **kwargs)


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """:class:`HttpToolsProtocol` with a head size bound, a head deadline and a connection
    cap; see the module's docstring."""

    def __init__(self, config: uvicorn.Config, server_state: ServerState,
                 app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not isinstance(config, BoundedConfig):
            raise TypeError("BoundedHttpToolsProtocol needs a BoundedConfig")
        super().__init__(config, server_state, app_state, _loop)
        self.access_log = False  # request lines carry query strings (T-01), whatever logging says
        self.max_head_bytes = config.max_head_bytes
        self.head_timeout = config.head_timeout
        self.max_connections = config.max_connections
        self.in_head = True  # waiting for, or reading, a request line and header section
        self.head_bytes = 0  # bytes received while in_head (an upper bound of the head's size)
        self.head_timer: asyncio.TimerHandle | None = None
        self.refused = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.max_connections:
            self.refused = True
            self.transport = transport  # uvicorn's connection_lost closes it again
            transport.close()
            return
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused or self.parser is None:
            return
        counted = self.in_head
        if counted:
            self.head_bytes += len(data)
            if self.head_timer is None:
                self._arm_head_timer()
        super().data_received(data)
        if not self.in_head or self.transport.is_closing():
            return
        if not counted:  # a new head began inside this chunk
            self.head_bytes += len(data)
            self._arm_head_timer()
        if self.head_bytes > self.max_head_bytes:
            self._cancel_head_timer()
            self.send_400_response("Request header section too large.")

    # uvicorn's parser callbacks, extended

    def on_headers_complete(self) -> None:
        self.in_head = False
        self.head_bytes = 0
        self._cancel_head_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.in_head = True

    # the head deadline

    def _arm_head_timer(self) -> None:
        if self.head_timer is None:
            self.head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timed_out(self) -> None:
        self.head_timer = None
        if self.in_head and not self.transport.is_closing():
            self.transport.close()
