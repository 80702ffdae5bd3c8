"""The minimal pipelined Redis client, against the real Redis server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from healthid_broker.login.resp import RespClient, RespError, _pack
from healthid_broker.login.sealing import Sealer
from healthid_broker.login.store import redis_store

pytestmark = [pytest.mark.redis, pytest.mark.anyio]


@pytest.fixture(params=[
    pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),  # what the broker runs on
])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


@pytest.fixture
async def prefix() -> AsyncIterator[str]:
    p = f"test-resp-{uuid.uuid4().hex}:"
    yield p
    check = Redis(host="127.0.0.1", port=6379)
    keys = [k async for k in check.scan_iter(match=p + "*")]
    if keys:
        await check.delete(*keys)
    await check.aclose()


def test_pack_is_resp2() -> None:
    assert _pack("SET", "k", b"v\r\n", 5) == (
        b"*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\nv\r\n\r\n$1\r\n5\r\n")


async def test_commands_match_redis_py(prefix: str) -> None:
    c = RespClient.from_url("redis://127.0.0.1:6379/0")
    ref = Redis(host="127.0.0.1", port=6379)
    try:
        k = prefix + "a"
        assert await c.set(k, b"\x00binary\r\n", px=60_000) is True
        assert await ref.get(k) == b"\x00binary\r\n"
        assert 0 < await ref.pttl(k) <= 60_000
        assert await c.get(k) == b"\x00binary\r\n"
        assert await c.set(k, b"x", px=1000, nx=True) is None  # exists: NX refuses
        assert await c.getdel(k) == b"\x00binary\r\n"
        assert await c.getdel(k) is None
        assert await c.get(k) is None
        await c.set(k, b"y")
        assert await c.delete(k) == 1
        assert await c.ping()
    finally:
        await c.aclose()
        await ref.aclose()


async def test_error_reply_raises(prefix: str) -> None:
    c = RespClient()
    try:
        with pytest.raises(RespError):
            await c._command("SET", prefix + "k", "v", "PX", -5)  # invalid expire time
        assert await c.ping()  # the connection survives an error reply
    finally:
        await c.aclose()


async def test_pipelined_concurrency_keeps_reply_order(prefix: str) -> None:
    c = RespClient()
    try:
        await asyncio.gather(*(c.set(f"{prefix}{i}", str(i).encode(), px=60_000)
                               for i in range(300)))
        values = await asyncio.gather(*(c.get(f"{prefix}{i}") for i in range(300)))
        assert values == [str(i).encode() for i in range(300)]
    finally:
        await c.aclose()


async def test_take_exactly_once_under_concurrency(prefix: str) -> None:
    c = RespClient()
    try:
        store = redis_store(c, Sealer.generate(), prefix=prefix)  # type: ignore[arg-type]
        await store.put("login.code", "k", b"once", ttl=30)
        results = await asyncio.gather(*(store.take("login.code", "k") for _ in range(50)))
        assert results.count(b"once") == 1
    finally:
        await c.aclose()


async def test_reconnects_after_the_server_drops_the_connection(prefix: str) -> None:
    c = RespClient()
    admin = Redis(host="127.0.0.1", port=6379)
    try:
        assert await c.ping()
        assert c._proto is not None and c._proto._transport is not None
        first = c._proto
        host, port = first._transport.get_extra_info("sockname")[:2]
        # kill exactly this client's connection (other tests' connections stay untouched)
        await admin.execute_command("CLIENT", "KILL", "ADDR", f"{host}:{port}")
        await asyncio.sleep(0.05)
        # the first command may see the dead connection; the client must recover
        for _ in range(3):
            try:
                assert await c.set(prefix + "k", b"v", px=10_000)
                break
            except ConnectionError:
                continue
        else:
            pytest.fail("the client did not reconnect")
        assert await c.get(prefix + "k") == b"v"
        assert first.closed and c._proto is not first  # it really was a new connection
    finally:
        await c.aclose()
        await admin.aclose()


async def test_unreachable_server_is_a_clear_error() -> None:
    c = RespClient(port=1, timeout=2)
    with pytest.raises(ConnectionError, match="cannot reach Redis"):
        await c.ping()


def test_url_parsing() -> None:
    c = RespClient.from_url("redis://user:p%40ss@cache.example:6380/3")
    assert (c._host, c._port, c._db, c._username, c._password) == (
        "cache.example", 6380, 3, "user", "p@ss")
    with pytest.raises(ValueError):
        RespClient.from_url("http://x")


@pytest.mark.slow
async def test_a_server_that_does_not_answer_times_out() -> None:
    # A listener that accepts and never replies: the watchdog must fail the command.
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(65536)
        await asyncio.sleep(10)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    c = RespClient(port=port, timeout=0.5)
    try:
        with pytest.raises(TimeoutError, match="did not answer"):
            await asyncio.wait_for(c.ping(), timeout=5)
    finally:
        await c.aclose()
        server.close()
