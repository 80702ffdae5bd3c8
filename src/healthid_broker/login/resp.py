"""A minimal Redis client for the transient login store: one pipelined connection.

The store needs five commands — ``SET … PX [NX]``, ``GET``, ``GETDEL``, ``DEL`` (and
``PING``) — four of them per login. A general client's per-command machinery (connection
pool checkout, retry wrappers, argument inspection) cost about a fifth of the broker's CPU
per login (docs/performance.md). This client keeps one connection per process and
*pipelines*: every command is written at once and its reply future queued; the reader (an
asyncio protocol, no task) parses replies with hiredis (RESP2) as they arrive and resolves
the futures in order (Redis answers in order on a connection). If the connection breaks,
every pending command fails with :class:`ConnectionError` and the next command connects
again. Instead of a timer per
command, a watchdog looks at the oldest pending command a few times a second; when it has
waited longer than ``timeout`` the connection is dropped, which fails every pending
command (replies come in order, so nothing behind the oldest can be answered sooner).

Its method names and return types match ``redis.asyncio.Redis`` for these commands, so
:class:`~healthid_broker.login.store.RedisBackend` accepts either client.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ssl
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import hiredis

__all__ = ["RespClient", "RespError"]


class RespError(Exception):
    """Redis answered with an error reply."""


def _pack(*args: bytes | str | int) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class _RespProtocol(asyncio.Protocol):
    """Feeds replies straight from the event loop's callback into hiredis and resolves the
    waiting commands in order — no reader task, no stream buffers."""

    def __init__(self, client: RespClient) -> None:
        self._client = client
        self._parser = hiredis.Reader()
        self._transport: asyncio.Transport | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement the interface without subclassing asyncio.Transport
        self._transport = cast(asyncio.Transport, transport)

    def write(self, data: bytes) -> None:
        if self._transport is None or self.closed:
            raise ConnectionError("Redis connection is closed")
        self._transport.write(data)

    def data_received(self, data: bytes) -> None:
        self._parser.feed(data)
        try:
            while (reply := self._parser.gets()) is not False:
                self._client._reply(reply)
        except hiredis.ProtocolError:
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._client._lost(self, exc)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class RespClient:
    """``redis://[user:password@]host[:port][/db]`` or ``rediss://…`` (TLS)."""

    decode_responses = False  # like redis-py's default: values are bytes

    def __init__(self, *, host: str = "127.0.0.1", port: int = 6379, db: int = 0,
                 username: str | None = None, password: str | None = None,
                 tls: ssl.SSLContext | None = None, timeout: float = 5.0) -> None:
        self._host, self._port, self._db = host, port, db
        self._username, self._password = username, password
        self._tls = tls
        self._timeout = timeout
        self._proto: _RespProtocol | None = None
        self._pending: collections.deque[tuple[asyncio.Future[Any], float]] = (
            collections.deque())
        self._watchdog: asyncio.Task[None] | None = None
        self._connecting: asyncio.Lock | None = None

    @classmethod
    def from_url(cls, url: str, **kw: Any) -> RespClient:
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss"):
            raise ValueError("a Redis URL starts with redis:// or rediss://")
        db = int(parts.path.lstrip("/") or 0)
        tls = ssl.create_default_context() if parts.scheme == "rediss" else None
        return cls(host=parts.hostname or "127.0.0.1", port=parts.port or 6379, db=db,
                   username=unquote(parts.username) if parts.username else None,
                   password=unquote(parts.password) if parts.password else None,
                   tls=tls, **kw)

    # ------------------------------------------------------------------ commands

    async def set(self, key: str, value: bytes, *, px: int | None = None,
                  nx: bool = False) -> bool | None:
        args: list[bytes | str | int] = ["SET", key, value]
        if px is not None:
            args += ["PX", px]
        if nx:
            args.append("NX")
        reply = await self._command(*args)
        return True if reply == b"OK" else None

    async def get(self, key: str) -> bytes | None:
        reply: bytes | None = await self._command("GET", key)
        return reply

    async def getdel(self, key: str) -> bytes | None:
        reply: bytes | None = await self._command("GETDEL", key)
        return reply

    async def delete(self, *keys: str) -> int:
        reply: int = await self._command("DEL", *keys)
        return reply

    async def ping(self) -> bool:
        return bool(await self._command("PING") == b"PONG")

    async def aclose(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(BaseException):
                await self._watchdog
            self._watchdog = None
        proto, self._proto = self._proto, None
        if proto is not None:
            proto.close()
        self._fail_pending(ConnectionError("the Redis client was closed"))

    # ------------------------------------------------------------------ plumbing

    async def _command(self, *args: bytes | str | int) -> Any:
        proto = self._proto
        if proto is None or proto.closed:
            proto = await self._connect()
        return await self._send(proto, _pack(*args))

    def _send(self, proto: _RespProtocol, packed: bytes) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        # write + enqueue without an await in between: replies stay in command order
        proto.write(packed)
        self._pending.append((fut, loop.time() + self._timeout))
        return fut

    async def _connect(self) -> _RespProtocol:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._proto is not None and not self._proto.closed:
                return self._proto
            loop = asyncio.get_running_loop()
            try:
                async with asyncio.timeout(self._timeout):
                    _t, proto = await loop.create_connection(
                        lambda: _RespProtocol(self), self._host, self._port, ssl=self._tls,
                        server_hostname=self._host if self._tls else None)
            except (OSError, TimeoutError) as exc:
                raise ConnectionError(f"cannot reach Redis at {self._host}:{self._port}: "
                                      f"{type(exc).__name__}") from exc
            hello: list[bytes] = []
            if self._password is not None:
                hello.append(_pack("AUTH", self._username, self._password)
                             if self._username else _pack("AUTH", self._password))
            if self._db:
                hello.append(_pack("SELECT", self._db))
            try:
                for cmd in hello:
                    await self._send(proto, cmd)
            except RespError as exc:
                proto.close()
                raise ConnectionError(f"Redis refused the connection set-up: {exc}") from exc
            self._proto = proto
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = asyncio.create_task(self._watch())
            return proto

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(0.25, self._timeout / 4))
            if self._pending and self._pending[0][1] < loop.time():
                proto, self._proto = self._proto, None
                if proto is not None:
                    proto.close()
                self._fail_pending(TimeoutError(
                    f"Redis did not answer within {self._timeout} s"))

    def _reply(self, reply: Any) -> None:
        if not self._pending:
            raise hiredis.ProtocolError("a reply nobody asked for")
        fut, _deadline = self._pending.popleft()
        if fut.done():
            return  # its caller was cancelled; the reply is dropped
        if isinstance(reply, hiredis.ReplyError):
            fut.set_exception(RespError(str(reply)))
        else:
            fut.set_result(reply)

    def _lost(self, proto: _RespProtocol, exc: BaseException | None) -> None:
        if self._proto is proto:
            self._proto = None
        detail = type(exc).__name__ if exc is not None else "closed by the server"
        self._fail_pending(ConnectionError(f"Redis connection lost: {detail}"))

    def _fail_pending(self, exc: Exception) -> None:
        while self._pending:
            fut, _deadline = self._pending.popleft()
            if not fut.done():
                fut.set_exception(exc)
