"""A small HTTP/1.1 server for ASGI applications, on asyncio and the httptools parser.

Why our own: every login passes three inbound requests through the server, and uvicorn's
protocol cost ≈ 110 µs of CPU per request on the 2-core reference machine against ≈ 65 µs
here (docs/performance.md) — a measurable part of the broker's CPU per login. Parsing is
llhttp's (httptools), the same parser uvicorn uses; this module only frames requests and
responses, and does what the broker needs and nothing more:

* HTTP/1.1 and 1.0, keep-alive, pipelining (answered in order), ``Expect: 100-continue``;
* request bodies by length or chunked, with flow control (reading pauses while more than
  :data:`BODY_BUFFER` bytes wait for the application);
* responses with a single body message get ``content-length``; streamed bodies without a
  length are sent chunked; ``HEAD``, 1xx, 204 and 304 carry no body; a ``date`` header;
* status line and headers go out in one write with the first body part;
* limits: a request target over :data:`MAX_TARGET` bytes → 414, a header section over
  :data:`MAX_HEADER_BYTES` → 431, a malformed request → 400, each closing the connection;
* timeouts from one sweep per second instead of a timer per request: idle keep-alive
  connections close after ``keep_alive`` seconds, a request whose header section is not
  complete after ``header_timeout`` seconds (slowloris), or whose body stops arriving for
  as long, is dropped;
* header names and values are checked before they reach the wire (no response splitting);
* an application error before the response starts becomes a bare 500 (the application's own
  guard normally answers first, web/security.py); later, the connection is closed;
* graceful stop: no new connections, in-flight requests may finish, idle ones close.

No WebSocket, no HTTP/2, no proxy headers, no lifespan events: the broker uses none of them.
An ``Upgrade`` request (and ``CONNECT``, which is refused) is served as plain HTTP/1.1 and the
connection closed afterwards (RFC 9110 §7.8 lets a server ignore ``Upgrade``); llhttp hands
whatever follows its header section to the "upgraded" protocol, so such a request reaches the
application without a body — as with uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import unquote

import httptools

__all__ = ["BODY_BUFFER", "MAX_HEADER_BYTES", "MAX_TARGET", "LeanServer"]

log = logging.getLogger("healthid_broker.web")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]

MAX_TARGET = 8 * 1024
MAX_HEADER_BYTES = 64 * 1024
BODY_BUFFER = 64 * 1024
SWEEP_INTERVAL = 1.0

_STATUS_LINES = {
    int(s): b"HTTP/1.1 %d %s\r\n" % (int(s), s.phrase.encode("ascii")) for s in http.HTTPStatus
}
# what bytes.translate deletes to leave nothing but the offending bytes behind
_TOKEN = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_CONTROLS = bytes([*range(0x09), *range(0x0A, 0x20), 0x7F])  # CR, LF, NUL, ... (not HTAB)
# header names the server writes itself (framing, date): the rest is formatted at start
_FRAMING = frozenset({b"content-length", b"connection", b"transfer-encoding", b"date"})
# Printable ASCII except "#": in a target of only these that starts with "/",
# httptools.parse_url finds nothing but the path before the first "?" and the query after
# it (tests/web/test_lean_server_parts.py checks this against parse_url).
_PLAIN_TARGET = bytes(range(0x21, 0x7F)).replace(b"#", b"")
_NO_BODY_STATUS = frozenset({204, 304})
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _status_line(status: int) -> bytes:
    line = _STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d \r\n" % status


def _fields(raw: Any) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """An application's response headers as checked, lower-cased header lines, and the
    framing ones (:data:`_FRAMING`, for :meth:`_Cycle._head`) apart, in their order."""
    names = [n for n, _v in raw]
    values = b"".join([v for _n, v in raw])
    # one pass over all names and one over all values (a bad byte anywhere is found either
    # way): no response splitting, no invalid field names (RFC 9110 §5.6.2 token, §5.5)
    if (not all(names) or b"".join(names).translate(None, _TOKEN)
            or len(values.translate(None, _CONTROLS)) != len(values)):
        raise _ResponseError("invalid header name or value")
    lines: list[bytes] = []
    framing: list[tuple[bytes, bytes]] = []
    for raw_name, value in raw:
        name = raw_name.lower()
        if name in _FRAMING:
            framing.append((name, value))
        else:
            lines += (name, b": ", value, b"\r\n")
    return b"".join(lines), framing


def _split_target(target: bytes) -> tuple[bytes, bytes]:
    """A request target's path and query, as httptools.parse_url finds them; a target it
    refuses is a 400."""
    if target[:1] == b"/" and not target.translate(None, _PLAIN_TARGET):
        path, _, query = target.partition(b"?")  # the common case, without parse_url's object
        return path, query
    try:
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        raise _Refused(400, b"Bad Request") from None
    return url.path or b"/", url.query or b""


def _plain_response(status: int, text: bytes) -> bytes:
    return (_status_line(status) + b"content-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(text), text))


class _Date:
    """The ``date`` header line that ends a response head, formatted once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = b"date: %s\r\n\r\n" % email.utils.formatdate(
                now, usegmt=True).encode("ascii")
        return self._line


class _ResponseError(Exception):
    """The application sent something that cannot go on the wire."""


class _Cycle:
    """One request and its response."""

    __slots__ = (
        "body", "body_buffered", "body_done", "chunked", "conn", "content_left",
        "disconnected", "expect_continue", "fields", "framing", "has_body", "head_only",
        "head_written", "keep_alive", "request_complete", "response_complete", "scope",
        "started", "status", "task", "waiter",
    )

    def __init__(self, conn: _Connection, scope: Scope, keep_alive: bool,
                 expect_continue: bool) -> None:
        self.conn = conn
        self.scope = scope
        self.keep_alive = keep_alive
        self.expect_continue = expect_continue
        self.head_only = scope["method"] == "HEAD"
        self.body: list[bytes] = []
        self.body_buffered = 0
        self.request_complete = False  # the parser has seen the whole request
        self.body_done = False  # ... and the application has read all of it
        self.disconnected = False
        self.waiter: asyncio.Future[None] | None = None
        self.started = False
        self.head_written = False
        self.response_complete = False
        self.status = 0
        self.fields = b""  # the response's header lines but framing and date
        self.framing: list[tuple[bytes, bytes]] = []
        self.task: asyncio.Task[None] | None = None
        self.has_body = True
        self.chunked = False
        self.content_left: int | None = None

    def wake(self) -> None:
        w = self.waiter
        if w is not None:
            self.waiter = None
            if not w.done():
                w.set_result(None)

    # ---------------------------------------------------------------- ASGI receive

    async def receive(self) -> Message:
        while True:
            if self.disconnected or self.response_complete:
                return {"type": "http.disconnect"}
            if not self.body_done and (self.body or self.request_complete):
                data = b"".join(self.body) if len(self.body) != 1 else self.body[0]
                self.body.clear()
                self.body_buffered = 0
                self.body_done = self.request_complete
                self.conn.body_consumed()
                return {"type": "http.request", "body": data, "more_body": not self.body_done}
            if self.expect_continue and not self.started:
                self.expect_continue = False  # RFC 9110 §10.1.1: the client waits for this
                self.conn.write(_CONTINUE)
            self.waiter = self.conn.loop.create_future()
            await self.waiter

    # ---------------------------------------------------------------- ASGI send

    async def send(self, message: Message) -> None:
        if self.disconnected:
            return
        kind = message["type"]
        if not self.started:
            if kind != "http.response.start":
                raise _ResponseError(f"expected http.response.start, got {kind!r}")
            status = message["status"]
            if not isinstance(status, int) or not 100 <= status <= 999:
                raise _ResponseError("invalid status")
            self.fields, self.framing = _fields(message.get("headers", ()))
            self.status, self.started = status, True
            return
        if kind != "http.response.body" or self.response_complete:
            raise _ResponseError(f"unexpected {kind!r}")
        body: bytes = message.get("body", b"")
        more: bool = message.get("more_body", False)
        out: list[bytes] = []
        if not self.head_written:
            out.append(self._head(body, more))
            self.head_written = True
        if self.has_body and not self.head_only:
            if self.chunked:
                if body:
                    out.append(b"%x\r\n%s\r\n" % (len(body), body))
                if not more:
                    out.append(b"0\r\n\r\n")
            elif body:
                if self.content_left is not None:
                    self.content_left -= len(body)
                    if self.content_left < 0:
                        raise _ResponseError("response body longer than its content-length")
                out.append(body)
        self.conn.write(b"".join(out) if len(out) != 1 else out[0])
        if more:
            await self.conn.drain()
            return
        if self.content_left and self.has_body and not self.head_only:
            raise _ResponseError("response body shorter than its content-length")
        self.response_complete = True
        self.wake()
        self.conn.response_done(self)

    def _head(self, body: bytes, more: bool) -> bytes:
        status = self.status
        self.has_body = status >= 200 and status not in _NO_BODY_STATUS
        length: int | None = None
        for name, value in self.framing:  # content-length and connection are written below
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise _ResponseError("invalid content-length") from None
                if length < 0:
                    raise _ResponseError("invalid content-length")
            elif name == b"connection" and b"close" in value.lower():
                self.keep_alive = False
            # transfer-encoding and date: framing and date are ours
        lines = [_status_line(status), self.fields]
        if self.has_body:
            if length is None and not more:
                if body or not self.head_only:
                    length = len(body)
            elif length is None:
                if self.scope["http_version"] == "1.0":
                    self.keep_alive = False  # no chunked coding in 1.0: the close ends it
                else:
                    self.chunked = not self.head_only
                    if self.chunked:
                        lines.append(b"transfer-encoding: chunked\r\n")
            if length is not None:
                lines.append(b"content-length: %d\r\n" % length)
            self.content_left = length
        if not self.request_complete:
            self.keep_alive = False  # answered before the request body ended: close after
        if not self.keep_alive or self.conn.closing or self.conn.draining:
            self.keep_alive = False
            lines.append(b"connection: close\r\n")
        lines.append(self.conn.server.date.line())
        return b"".join(lines)


class _Connection(asyncio.Protocol):
    """One client connection: parser callbacks in, ASGI cycles out."""

    def __init__(self, server: LeanServer) -> None:
        self.server = server
        self.loop = server.loop
        self.parser = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.closing = False
        self.draining = False  # the server stops: answer what is in flight, then close
        self.broken: tuple[int, bytes] | None = None  # unparseable input after a request
        self.reading = True
        self.write_ready: asyncio.Future[None] | None = None  # set while writing is paused
        self.cycle: _Cycle | None = None  # the request being parsed
        self.active: _Cycle | None = None  # the request being answered
        self.pipeline: deque[_Cycle] = deque()
        self.last_activity = time.monotonic()
        self.request_began: float | None = None  # header section in progress since
        self.header_bytes = 0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.expect_continue = False
        self.upgrade = False
        self.eof = False  # the client half-closed: answer what it asked, then close
        self.client: tuple[str, int] | None = None
        self.local: tuple[str, int] | None = None

    # ---------------------------------------------------------------- transport events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)
        peer = transport.get_extra_info("peername")
        here = transport.get_extra_info("sockname")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.local = (str(here[0]), int(here[1])) if isinstance(here, tuple) else None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.server.connections.discard(self)
        for c in (self.active, self.cycle, *self.pipeline):
            if c is not None:
                c.disconnected = True
                c.wake()
        self.pipeline.clear()
        self._writable()

    def data_received(self, data: bytes) -> None:
        self.last_activity = time.monotonic()
        if self.closing:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # served as plain HTTP/1.1; whatever follows the request is not read
            self.upgrade = True
            self.pause()
        except httptools.HttpParserError as exc:
            # an exception raised in a callback arrives wrapped (HttpParserCallbackError)
            why = exc.__context__
            if isinstance(why, _Refused):
                self.refuse(why.status, why.text)
            else:
                self.refuse(400, b"Bad Request")

    def eof_received(self) -> bool | None:
        """The client will send nothing more (a half-close). Requests already read are
        still answered; one whose body is incomplete never will be."""
        self.eof = True
        self.abandon_incomplete()
        active = self.active
        if active is None or active.disconnected:
            return None  # nothing to answer: the transport closes
        return True  # keep writing; response_done closes (ignored by TLS transports)

    def pause_writing(self) -> None:
        if self.write_ready is None:
            self.write_ready = self.loop.create_future()

    def resume_writing(self) -> None:
        self._writable()

    def _writable(self) -> None:
        w, self.write_ready = self.write_ready, None
        if w is not None and not w.done():
            w.set_result(None)

    async def drain(self) -> None:
        if self.write_ready is not None:
            await self.write_ready

    # ---------------------------------------------------------------- parser callbacks

    def on_message_begin(self) -> None:
        self.request_began = self.last_activity  # set by data_received, which calls us
        self.header_bytes = 0
        self.url = b""
        self.headers = []
        self.expect_continue = False

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > MAX_TARGET:
            raise _Refused(414, b"URI Too Long")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self.header_bytes + len(name) + len(value) + 4
        if size > MAX_HEADER_BYTES:
            raise _Refused(431, b"Request Header Fields Too Large")
        self.header_bytes = size
        name = name.lower()
        self.headers.append((name, value))
        if name == b"expect" and value.lower() == b"100-continue":
            self.expect_continue = True

    def on_headers_complete(self) -> None:
        self.request_began = None
        parser = self.parser
        raw_path, query = _split_target(self.url)
        try:
            path = raw_path.decode("ascii")
        except UnicodeDecodeError:
            raise _Refused(400, b"Bad Request") from None
        if "%" in path:
            path = unquote(path)
        version = parser.get_http_version()
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": version if version in ("1.0", "1.1") else "1.1",
            "method": parser.get_method().decode("ascii"),
            "scheme": self.server.scheme,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": self.headers,
            "client": self.client,
            "server": self.local,
        }
        keep_alive = bool(parser.should_keep_alive()) and not parser.should_upgrade()
        cycle = _Cycle(self, scope, keep_alive, self.expect_continue)
        self.cycle = cycle
        if self.active is None:
            self.start(cycle)
        else:  # pipelined: answered after the one in flight; read no further meanwhile
            self.pipeline.append(cycle)
            self.pause()

    def on_body(self, body: bytes) -> None:
        c = self.cycle
        if c is None or c.response_complete or c.disconnected:
            return  # answered already: the rest of the body is read and dropped
        c.body.append(body)
        c.body_buffered += len(body)
        if c.body_buffered > BODY_BUFFER:
            self.pause()
        c.wake()

    def on_message_complete(self) -> None:
        c = self.cycle
        if c is not None:
            c.request_complete = True
            c.wake()

    # ---------------------------------------------------------------- cycles

    def start(self, cycle: _Cycle) -> None:
        self.active = cycle
        # run() takes its task out of the set itself: no done-callback, which would cost an
        # extra event-loop callback per request (done already: an eager task factory ran it)
        cycle.task = task = self.loop.create_task(self.run(cycle))
        if not task.done():
            self.server.tasks.add(task)

    async def run(self, cycle: _Cycle) -> None:
        try:
            await self.server.app(cycle.scope, cycle.receive, cycle.send)
        except Exception as exc:  # noqa: BLE001 - a server must survive its app
            log.error("ASGI application failed: %s", type(exc).__name__)  # no message: PII
            self.fail(cycle)
            return
        except BaseException:  # cancelled (stop): the connection cannot go on
            self.close()
            raise
        finally:
            self.server.tasks.discard(cycle.task)
        if not cycle.response_complete:
            log.error("ASGI application returned without a complete response")
            self.fail(cycle)

    def fail(self, cycle: _Cycle) -> None:
        if not cycle.head_written and not cycle.disconnected:
            self.write(_plain_response(500, b"Internal Server Error"))
        self.close()

    def response_done(self, cycle: _Cycle) -> None:
        self.last_activity = time.monotonic()
        if self.active is cycle:
            self.active = None
        if not cycle.keep_alive or self.upgrade or self.closing or (
                self.eof and not self.pipeline):
            self.close()
            return
        if self.pipeline:
            self.start(self.pipeline.popleft())
            if not self.pipeline and self.broken is None:
                self.resume()  # the request now answered may still need its body
        elif self.broken is not None:
            self.write(_plain_response(*self.broken))
            self.close()
        else:
            self.resume()

    def body_consumed(self) -> None:
        if not self.pipeline and not self.upgrade and self.broken is None:
            self.resume()

    # ---------------------------------------------------------------- helpers

    def write(self, data: bytes) -> None:
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(data)

    def pause(self) -> None:
        if self.reading and self.transport is not None:
            self.reading = False
            self.transport.pause_reading()

    def resume(self) -> None:
        if not self.reading and self.transport is not None and not self.closing:
            self.reading = True
            self.transport.resume_reading()

    def abandon_incomplete(self) -> _Cycle | None:
        """The request being read will never be complete: its application gets nothing more
        (``http.disconnect``) and, if it was waiting in the pipeline, it is dropped."""
        parsing = self.cycle
        if parsing is None or parsing.request_complete:
            return None
        parsing.disconnected = True
        parsing.wake()
        if parsing in self.pipeline:
            self.pipeline.remove(parsing)
        return parsing

    def refuse(self, status: int, text: bytes) -> None:
        """The byte stream is unusable from here on (the parser stops at the error)."""
        self.pause()
        parsing = self.abandon_incomplete()
        if parsing is not None and parsing is self.active:  # the broken request is answered
            if not parsing.head_written:
                self.write(_plain_response(status, text))
            self.close()
            return
        if self.active is None:
            self.write(_plain_response(status, text))
            self.close()
        elif self.active.keep_alive or self.pipeline:
            # complete requests before the error are answered first (response_done)
            self.broken = (status, text)
        # else: bytes after "Connection: close" — ignored (RFC 9112 §9.6)

    def close(self) -> None:
        if not self.closing:
            self.closing = True
            if self.transport is not None:
                self.transport.close()

    def idle(self) -> bool:
        return self.active is None and not self.pipeline and self.request_began is None

    def sweep(self, now: float) -> None:
        began, active = self.request_began, self.active
        if began is not None and now - began > self.server.header_timeout:
            self.close()  # slowloris: the header section never ends
        elif (active is not None and not active.request_complete and self.reading
              and now - self.last_activity > self.server.header_timeout):
            self.close()  # a request body that stopped arriving
        elif self.idle() and now - self.last_activity > self.server.keep_alive:
            self.close()


class _Refused(Exception):
    def __init__(self, status: int, text: bytes) -> None:
        super().__init__(status)
        self.status = status
        self.text = text


class LeanServer:
    """Serves one ASGI app on one listening socket."""

    def __init__(self, app: ASGIApp, *, keep_alive: float = 5.0,
                 header_timeout: float = 10.0) -> None:
        self.app = app
        self.keep_alive = keep_alive
        self.header_timeout = header_timeout
        self.loop = asyncio.get_running_loop()
        self.connections: set[_Connection] = set()
        self.tasks: set[asyncio.Task[None]] = set()
        self.date = _Date()
        self.scheme = "http"
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def listen(self, *, host: str, port: int = 0, sock: socket.socket | None = None,
                     ssl_context: ssl.SSLContext | None = None) -> int:
        """Start serving; returns the port."""
        self.scheme = "https" if ssl_context is not None else "http"
        if sock is not None:
            server = await self.loop.create_server(
                lambda: _Connection(self), sock=sock, ssl=ssl_context, backlog=512)
        else:
            server = await self.loop.create_server(
                lambda: _Connection(self), host, port, ssl=ssl_context, backlog=512,
                reuse_address=True)
        self._server = server
        self._sweeper = self.loop.create_task(self._sweep())
        return int(server.sockets[0].getsockname()[1])

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(min(SWEEP_INTERVAL, self.keep_alive / 2, self.header_timeout / 2))
            now = time.monotonic()
            for c in list(self.connections):
                c.sweep(now)

    async def stop(self, grace: float = 2.0) -> None:
        """No new connections; in-flight requests get ``grace`` seconds; then all close."""
        if self._server is not None:
            self._server.close()
        for c in list(self.connections):
            if c.idle():
                c.close()
            else:
                c.draining = True  # the response in flight says "connection: close"
        if self.tasks:
            await asyncio.wait(list(self.tasks), timeout=grace)
        for c in list(self.connections):
            c.close()
        for t in list(self.tasks):
            t.cancel()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
