"""A small HTTP/1.1 client for the load generator (bench/login_load.py ``--client lean``).

The load generator shares the machine's two cores with the broker and the sandbox. httpx
costs it several CPU-milliseconds per login (four requests), more than the broker itself, so
on a 2-core machine the three processes crowd each other and every one of them pays more per
request (preemptions, cold caches). This client does only what a login needs — GET, POST of
a form with HTTP Basic, keep-alive connections per origin, answers framed by
``content-length`` or chunked, TLS with the sandbox's CA — so the measurement disturbs what
it measures less. It is bench code: it trusts the servers it talks to, and its own errors are
:class:`TransportError`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

__all__ = ["LeanClient", "Response", "TransportError"]


class TransportError(Exception):
    """The connection failed or the answer was not HTTP/1.1 as expected."""


class Response:
    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers  # lower-case names; a repeated header keeps its last value
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)


_Origin = tuple[str, str, int]
_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class LeanClient:
    """Keep-alive connections per origin, shared by the concurrent logins of one phase."""

    def __init__(self, *, verify: ssl.SSLContext, timeout: float = 30.0) -> None:
        self._tls = verify
        self._timeout = timeout
        self._idle: dict[_Origin, list[_Conn]] = {}

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for _r, w in conns:
                w.close()
        self._idle.clear()

    async def get(self, url: str) -> Response:
        return await self._request("GET", url, b"", {})

    async def post(self, url: str, *, auth: tuple[str, str], data: dict[str, str]) -> Response:
        basic = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        body = urlencode(data).encode("ascii")
        return await self._request("POST", url, body, {
            "authorization": f"Basic {basic}",
            "content-type": "application/x-www-form-urlencoded"})

    async def _request(self, method: str, url: str, body: bytes,
                       headers: dict[str, str]) -> Response:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise TransportError(f"not an http(s) URL: {url[:100]}")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        origin = (parts.scheme, parts.hostname, port)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        head = [f"{method} {target} HTTP/1.1", f"host: {parts.netloc}",
                "accept: */*", "user-agent: hidb-bench"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if method == "POST":
            head.append(f"content-length: {len(body)}")
        wire = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        idle = self._idle.setdefault(origin, [])
        reused = bool(idle)
        conn = idle.pop() if idle else await self._connect(origin)
        try:
            resp, keep = await asyncio.wait_for(self._exchange(conn, wire), self._timeout)
        except (OSError, asyncio.IncompleteReadError, TransportError, TimeoutError) as exc:
            conn[1].close()
            if reused and not isinstance(exc, TimeoutError):
                # a pooled connection the server had closed meanwhile: once more, fresh
                conn = await self._connect(origin)
                try:
                    resp, keep = await asyncio.wait_for(
                        self._exchange(conn, wire), self._timeout)
                except (OSError, asyncio.IncompleteReadError, TransportError,
                        TimeoutError) as exc2:
                    conn[1].close()
                    raise TransportError(f"{type(exc2).__name__}: {exc2}") from exc2
            else:
                raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        if keep:
            idle.append(conn)
        else:
            conn[1].close()
        return resp

    async def _connect(self, origin: _Origin) -> _Conn:
        scheme, host, port = origin
        try:
            return await asyncio.wait_for(asyncio.open_connection(
                host, port, ssl=self._tls if scheme == "https" else None,
                server_hostname=host if scheme == "https" else None), self._timeout)
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"cannot connect to {host}:{port}: {exc}") from exc

    @staticmethod
    async def _exchange(conn: _Conn, wire: bytes) -> tuple[Response, bool]:
        reader, writer = conn
        writer.write(wire)
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = lines[0].split(" ", 2)
        if len(status) < 2 or status[0] != "HTTP/1.1" or not status[1].isdigit():
            raise TransportError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers
                    break
                chunks.append(await reader.readexactly(size))
                await reader.readexactly(2)
            content = b"".join(chunks)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            content = await reader.readexactly(length) if length else b""
        elif int(status[1]) in (204, 304):
            content = b""
        else:  # a body up to the connection's end: never from the servers measured here
            raise TransportError("an answer framed by neither content-length nor chunked")
        keep = headers.get("connection", "").lower() != "close"
        return Response(int(status[1]), headers, content), keep
