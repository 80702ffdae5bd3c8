"""A small, fast HTTP/1.1 client for the broker's outbound calls.

The broker makes few kinds of outbound requests — federation statements, the IdP list,
signed JWKS, and per login two POSTs over mutual TLS (PAR and the token request). On the
hot path a general-purpose client's per-request machinery dominated the broker's CPU per
login (docs/performance.md), so this client does only what those calls need:

* ``GET`` and form ``POST``; HTTP/1.1 over TLS (or plain http for tests on loopback);
* keep-alive connections pooled per (host, port, client identity), dropped after a short
  idle time (below common servers' keep-alive timeouts);
* responses parsed by ``httptools`` (llhttp): ``Content-Length``, chunked, or until close;
  informational (1xx) responses skipped; bodies larger than ``max_body`` refused;
* a timeout for connecting and one for each exchange (enforced by one watchdog task, to
  within a quarter of it); every failure is an :class:`HttpTransportError`;
* a request on a *reused* connection that fails before any response byte arrived is sent
  once more on a fresh connection (the server closed the idle connection — RFC 9112 §9.3.1);
* no redirects, cookies, proxies or compression — none of the federation's calls use them.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
import time
from collections.abc import Mapping
from typing import cast
from urllib.parse import urlsplit

import httptools

from . import ClientIdentity, HttpResponse, HttpTransportError, tls_client_context
from .forms import urlencode

__all__ = ["LeanHttpClient"]

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: far above any statement, list or token answer
DEFAULT_IDLE = 4.0  # seconds an idle connection is kept (uvicorn closes after 5 s)
_HEAD_LIMIT = 64 * 1024  # status line and headers


_SKIP_HEADERS = frozenset({"host", "user-agent", "content-length", "connection",
                           "transfer-encoding"})  # set by the client itself
_FORM_TYPE = "application/x-www-form-urlencoded"
_FORM_HEADERS: Mapping[str, str] = {"content-type": _FORM_TYPE}  # never mutated


class _Incomplete(Exception):
    """The connection ended before a whole response arrived."""

    def __init__(self, got_bytes: bool) -> None:
        super().__init__("connection closed before the response was complete")
        self.got_bytes = got_bytes


class _Response:
    """httptools callbacks for one exchange; 1xx responses are skipped."""

    def __init__(self, max_body: int) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.max_body = max_body
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body: list[bytes] = []
        self.size = 0
        self.headers_done = False
        self.keep_alive = False
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        val = value.decode("latin-1")
        self.headers[key] = f"{self.headers[key]}, {val}" if key in self.headers else val

    def on_headers_complete(self) -> None:
        self.headers_done = True
        # llhttp resets its flags after the message: read keep-alive while they are valid
        self.keep_alive = bool(self.parser.should_keep_alive())

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > self.max_body:
            raise HttpTransportError(f"response body larger than {self.max_body} bytes")
        self.body.append(body)

    def on_message_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200:  # informational (RFC 9110 §15.2): the real answer follows
            self.headers, self.body, self.size, self.headers_done = {}, [], 0, False
            return
        self.status = status
        self.complete = True

    @property
    def reads_until_close(self) -> bool:
        return (self.headers_done and "content-length" not in self.headers
                and "chunked" not in self.headers.get("transfer-encoding", "").lower())


class _Conn(asyncio.Protocol):
    """One keep-alive connection. Response bytes go from the event loop's callback straight
    into httptools; the request's future is resolved when the message is complete — no
    reader task and no stream buffers in between."""

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._transport: asyncio.Transport | None = None
        self._resp: _Response | None = None
        self._waiter: asyncio.Future[_Response] | None = None
        self._got_bytes = False
        self._head_bytes = 0
        self.closed = False
        self.idle_since = 0.0
        self.reused = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        resp, waiter = self._resp, self._waiter
        if resp is None or waiter is None or waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step
            return
        self._got_bytes = True
        if not resp.headers_done:
            self._head_bytes += len(data)
            if self._head_bytes > _HEAD_LIMIT:
                self.close()
                waiter.set_exception(HttpTransportError(
                    f"response head larger than {_HEAD_LIMIT} bytes"))
                return
        try:
            resp.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.close()
            if isinstance(exc.__context__, HttpTransportError):  # raised by a callback
                waiter.set_exception(HttpTransportError(str(exc.__context__)))
            else:
                waiter.set_exception(HttpTransportError(f"malformed HTTP response: {exc}"))
            return
        if resp.complete:
            self._resp = None
            # the parser holds resp's callbacks: drop the cycle so that both go by reference
            # counting now, not by the cyclic garbage collector later
            del resp.parser
            waiter.set_result(resp)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        resp, waiter = self._resp, self._waiter
        if waiter is None or waiter.done():
            return
        if resp is not None and resp.reads_until_close:  # RFC 9112 §6.3 rule 8
            resp.status = resp.parser.get_status_code()
            resp.keep_alive = False
            waiter.set_result(resp)
        else:
            waiter.set_exception(_Incomplete(self._got_bytes))

    # client side
    def send(self, payload: bytes) -> asyncio.Future[_Response]:
        if self._transport is None or self.closed:
            raise _Incomplete(False)
        self._resp = _Response(self._max_body)
        self._got_bytes = False
        self._head_bytes = 0
        self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(payload)
        return self._waiter

    def expire(self) -> None:
        """The request's time is up (the client's watchdog): fail it and drop the
        connection, which is out of step now."""
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(TimeoutError())
        self.close()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


@functools.lru_cache(maxsize=256)  # the same few endpoints again and again
def _start(method: str, url: str, user_agent: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, request line + host and user-agent headers) of an absolute
    http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)  # ValueError if invalid
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    host_header = parts.netloc.rsplit("@", 1)[-1]
    return (parts.scheme, parts.hostname, port,
            f"{method} {target} HTTP/1.1\r\nhost: {host_header}\r\nuser-agent: {user_agent}\r\n")


class LeanHttpClient:
    """:class:`healthid_broker.http.HttpClient` with pooled keep-alive connections."""

    def __init__(
        self,
        *,
        ca_file: str | None = None,
        timeout: float = 10.0,
        max_body: int = DEFAULT_MAX_BODY,
        idle: float = DEFAULT_IDLE,
        user_agent: str = "healthid-broker",
    ) -> None:
        self._ca_file = ca_file
        self._timeout = timeout
        self._max_body = max_body
        self._idle = idle
        self._ua = user_agent
        self._contexts: dict[bytes | None, ssl.SSLContext] = {}
        self._pools: dict[tuple[str, str, int, bytes | None], list[_Conn]] = {}
        # Deadlines of the exchanges in flight, enforced by one watchdog task per event loop
        # instead of a timer per request (docs/performance.md).
        self._deadlines: dict[_Conn, float] = {}
        self._watchdog: asyncio.Task[None] | None = None
        self._watchdog_loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ public API

    async def get(self, url: str, *, headers: Mapping[str, str] | None = None,
                  identity: ClientIdentity | None = None) -> HttpResponse:
        return await self._request("GET", url, headers, b"", identity)

    async def post_form(self, url: str, data: Mapping[str, str], *,
                        headers: Mapping[str, str] | None = None,
                        identity: ClientIdentity | None = None) -> HttpResponse:
        body = urlencode(data).encode("ascii")
        h = _FORM_HEADERS
        if headers:
            h = {"content-type": _FORM_TYPE}
            for k, v in headers.items():
                h[k.lower()] = v
        return await self._request("POST", url, h, body, identity)

    async def aclose(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        for pool in self._pools.values():
            for c in pool:
                c.close()
        self._pools.clear()

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None,
                      body: bytes = b"", identity: ClientIdentity | None = None) -> HttpResponse:
        return await self._request(method, url, headers, body, identity)

    # ------------------------------------------------------------------ internals

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        tick = min(0.5, self._timeout / 4)
        while self._deadlines:
            await asyncio.sleep(tick)
            now = loop.time()
            for conn, deadline in list(self._deadlines.items()):
                if deadline <= now:
                    self._deadlines.pop(conn, None)
                    conn.expire()

    def _context(self, identity: ClientIdentity | None) -> ssl.SSLContext:
        k = identity.cache_key if identity else None
        ctx = self._contexts.get(k)
        if ctx is None:
            ctx = tls_client_context(self._ca_file, identity)
            self._contexts[k] = ctx
        return ctx

    async def _connect(self, key: tuple[str, str, int, bytes | None],
                       identity: ClientIdentity | None, url: str) -> _Conn:
        scheme, host, port, _ = key
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self._timeout):
                _t, conn = await loop.create_connection(
                    lambda: _Conn(self._max_body), host, port,
                    ssl=self._context(identity) if scheme == "https" else None,
                    server_hostname=host if scheme == "https" else None)
        except (OSError, ssl.SSLError) as exc:
            raise HttpTransportError(f"{url}: cannot connect: {type(exc).__name__}: {exc}") \
                from exc
        return conn

    def _checkout(self, key: tuple[str, str, int, bytes | None]) -> _Conn | None:
        pool = self._pools.get(key)
        if not pool:
            return None
        now = time.monotonic()
        while pool:
            c = pool.pop()
            if not c.closed and now - c.idle_since < self._idle:
                c.reused = True
                return c
            c.close()
        return None

    async def _request(self, method: str, url: str, headers: Mapping[str, str] | None,
                       body: bytes, identity: ClientIdentity | None) -> HttpResponse:
        # One coroutine from the request head to the response: every await level costs on
        # each resume, and every login makes two requests.
        try:
            scheme, host, port, head = _start(method, url, self._ua)
        except ValueError:
            raise HttpTransportError(f"{method} {url}: not an absolute http(s) URL") from None
        if scheme == "http" and identity is not None:
            raise HttpTransportError(f"{method} {url}: a client certificate needs https")
        if headers:
            for k, v in headers.items():
                lk = k.lower()
                if lk in _SKIP_HEADERS or "\r" in v or "\n" in v:
                    continue
                head += f"{lk}: {v}\r\n"
        if body or method == "POST":
            head += f"content-length: {len(body)}\r\n"
        payload = f"{head}\r\n".encode("latin-1") + body
        key = (scheme, host, port, identity.cache_key if identity else None)
        loop = asyncio.get_running_loop()
        conn = self._checkout(key)
        reused = conn is not None
        try:
            while True:
                if conn is None:
                    conn = await self._connect(key, identity, url)
                self._deadlines[conn] = loop.time() + self._timeout
                if (self._watchdog is None or self._watchdog.done()
                        or self._watchdog_loop is not loop):
                    self._watchdog, self._watchdog_loop = loop.create_task(self._watch()), loop
                try:
                    resp = await conn.send(payload)
                except BaseException as exc:
                    self._deadlines.pop(conn, None)
                    conn.close()  # failed, timed out or cancelled: the connection is out of step
                    if not isinstance(exc, _Incomplete):
                        raise
                    if reused and not exc.got_bytes:
                        # stale keep-alive connection: the request never reached the server
                        reused, conn = False, None
                        continue
                    raise HttpTransportError(f"{url}: {exc}") from exc
                self._deadlines.pop(conn, None)
                break
        except TimeoutError as exc:
            raise HttpTransportError(f"{method} {url}: no answer within {self._timeout} s") \
                from exc
        if resp.keep_alive and not conn.closed:
            conn.idle_since = time.monotonic()
            pool = self._pools.get(key)
            if pool is None:
                self._pools[key] = [conn]
            else:
                pool.append(conn)
        else:
            conn.close()
        return HttpResponse(resp.status, resp.headers, b"".join(resp.body), url)
