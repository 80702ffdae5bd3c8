"""A minimal Redis client for the transient login store: one pipelined connection.

The store needs five commands — ``SET … PX [NX]``, ``GET``, ``GETDEL``, ``DEL`` (and
``PING``) — four of them per login. A general client's per-command machinery (connection
pool checkout, retry wrappers, argument inspection) cost about a fifth of the broker's CPU
per login (docs/performance.md). This client keeps one connection per process and
*pipelines*: every command is written at once and its reply future queued; one reader task
parses replies with hiredis (RESP2) and resolves the futures in order (Redis answers in
order on a connection). If the connection breaks, every pending command fails with
:class:`ConnectionError` and the next command connects again. Instead of a timer per
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
from typing import Any
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
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
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
        w, self._writer = self._writer, None
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(BaseException):
                await self._reader_task
            self._reader_task = None
        if w is not None:
            w.close()
            with contextlib.suppress(Exception):
                await w.wait_closed()
        self._fail_pending(ConnectionError("the Redis client was closed"))

    # ------------------------------------------------------------------ plumbing

    async def _command(self, *args: bytes | str | int) -> Any:
        writer = self._writer
        if writer is None or writer.is_closing():
            writer = await self._connect()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        # write + enqueue without an await in between: replies stay in command order
        writer.write(_pack(*args))
        self._pending.append((fut, loop.time() + self._timeout))
        return await fut

    async def _connect(self) -> asyncio.StreamWriter:
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            try:
                async with asyncio.timeout(self._timeout):
                    reader, writer = await asyncio.open_connection(
                        self._host, self._port, ssl=self._tls,
                        server_hostname=self._host if self._tls else None)
                    parser = hiredis.Reader()
                    hello: list[bytes] = []
                    if self._password is not None:
                        hello.append(_pack("AUTH", self._username, self._password)
                                     if self._username else _pack("AUTH", self._password))
                    if self._db:
                        hello.append(_pack("SELECT", self._db))
                    if hello:
                        writer.write(b"".join(hello))
                        for _ in hello:
                            reply = await self._read_one(reader, parser)
                            if isinstance(reply, hiredis.ReplyError):
                                writer.close()
                                raise ConnectionError(f"Redis refused the connection set-up: "
                                                      f"{reply}")
            except (OSError, TimeoutError) as exc:
                raise ConnectionError(f"cannot reach Redis at {self._host}:{self._port}: "
                                      f"{type(exc).__name__}") from exc
            self._writer = writer
            self._reader_task = asyncio.create_task(self._read_loop(reader, parser, writer))
            if self._watchdog is None or self._watchdog.done():
                self._watchdog = asyncio.create_task(self._watch())
            return writer

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(0.25, self._timeout / 4))
            if self._pending and self._pending[0][1] < loop.time():
                w, self._writer = self._writer, None
                if w is not None:
                    w.close()
                self._fail_pending(TimeoutError(
                    f"Redis did not answer within {self._timeout} s"))

    @staticmethod
    async def _read_one(reader: asyncio.StreamReader, parser: hiredis.Reader) -> Any:
        while True:
            reply = parser.gets()
            if reply is not False:
                return reply
            data = await reader.read(65536)
            if not data:
                raise ConnectionError("Redis closed the connection")
            parser.feed(data)

    async def _read_loop(self, reader: asyncio.StreamReader, parser: hiredis.Reader,
                         writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    raise ConnectionError("Redis closed the connection")
                parser.feed(data)
                while (reply := parser.gets()) is not False:
                    fut, _deadline = self._pending.popleft()
                    if fut.done():
                        continue  # its caller was cancelled; the reply is dropped
                    if isinstance(reply, hiredis.ReplyError):
                        fut.set_exception(RespError(str(reply)))
                    else:
                        fut.set_result(reply)
        except (ConnectionError, OSError, hiredis.ProtocolError, IndexError) as exc:
            if self._writer is writer:
                self._writer = None
            writer.close()
            self._fail_pending(ConnectionError(f"Redis connection lost: {type(exc).__name__}"))

    def _fail_pending(self, exc: Exception) -> None:
        while self._pending:
            fut, _deadline = self._pending.popleft()
            if not fut.done():
                fut.set_exception(exc)
