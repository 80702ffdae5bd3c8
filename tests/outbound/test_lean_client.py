"""The lean HTTP/1.1 client against scripted servers on loopback: framing (length, chunked,
until close), informational responses, keep-alive reuse, a stale pooled connection, size
limit, malformed answers and timeouts — plus a real TLS server."""

from __future__ import annotations

import asyncio
import gc
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httptools
import pytest

from healthid_broker.crypto.keys import LocalCA, cert_pem
from healthid_broker.http import HttpTransportError
from healthid_broker.http.lean import LeanHttpClient, _Response

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@pytest.fixture(params=[
    pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),  # what the broker runs on
])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


class Server:
    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[bytes] = []

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length) if length else b""
        self.requests.append(head + body)
        return head + body


Script = Callable[[Server, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(script: Script,
                 ssl_ctx: ssl.SSLContext | None = None) -> tuple[Server, asyncio.Server, int]:
    state = Server()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        try:
            await script(state, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    srv = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_ctx)
    return state, srv, srv.sockets[0].getsockname()[1]


def _answer(raw: bytes, *, linger: float = 0.0) -> Script:
    """A server script: read one request, write ``raw``, stay connected ``linger`` seconds."""
    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await st.read_request(r)
        w.write(raw)
        await w.drain()
        if linger:
            await asyncio.sleep(linger)

    return script


@pytest.fixture
async def client() -> AsyncIterator[LeanHttpClient]:
    c = LeanHttpClient(timeout=2)
    yield c
    await c.aclose()


async def test_content_length_and_keep_alive_reuse(client: LeanHttpClient) -> None:
    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await st.read_request(r)
            w.write(b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 11\r\n\r\n{\"ok\":true}")
            await w.drain()

    st, srv, port = await _serve(script)
    async with srv:
        for _ in range(3):
            r = await client.post_form(f"http://127.0.0.1:{port}/par",
                                       {"scope": "openid urn:x", "uri": "https://a/b?c"})
            assert r.status == 201 and r.json() == {"ok": True}
            assert r.content_type == "application/json"
        assert st.connections == 1  # one kept-alive connection for three requests
        body = st.requests[0].split(b"\r\n\r\n", 1)[1]
        assert body == b"scope=openid+urn%3Ax&uri=https%3A%2F%2Fa%2Fb%3Fc"
        assert b"content-type: application/x-www-form-urlencoded" in st.requests[0]


async def test_request_bytes_exact(client: LeanHttpClient) -> None:
    st, srv, port = await _serve(_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
    async with srv:
        await client.post_form(
            f"http://u:p@127.0.0.1:{port}/p?q=1", {"k": "v w"},
            headers={"Accept": "a", "accept": "b", "Content-Type": "text/plain", "Host": "x",
                     "connection": "close", "x-bad": "1\r\nx-injected: 1", "X-Ok": "2"})
        await client.get(f"http://127.0.0.1:{port}")
    assert st.requests == [
        b"POST /p?q=1 HTTP/1.1\r\nhost: 127.0.0.1:%d\r\nuser-agent: healthid-broker\r\n"
        b"content-type: text/plain\r\naccept: b\r\nx-ok: 2\r\ncontent-length: 5\r\n\r\nk=v+w"
        % port,
        b"GET / HTTP/1.1\r\nhost: 127.0.0.1:%d\r\nuser-agent: healthid-broker\r\n\r\n" % port,
    ]


async def test_exchanges_leave_no_reference_cycles(client: LeanHttpClient) -> None:
    # the parser and its callbacks' owner are freed by reference counting, not by the GC
    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await st.read_request(r)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await w.drain()

    st, srv, port = await _serve(script)
    async with srv:
        gc.collect()
        gc.disable()
        gc.set_debug(gc.DEBUG_SAVEALL)
        try:
            for _ in range(3):  # on one connection: each exchange replaces the last one's state
                assert (await client.get(f"http://127.0.0.1:{port}/x")).content == b"ok"
            gc.collect()
            left = [o for o in gc.garbage
                    if isinstance(o, (_Response, httptools.HttpResponseParser))]
        finally:
            gc.set_debug(0)
            gc.garbage.clear()
            gc.enable()
    assert st.connections == 1 and left == []


async def test_chunked_and_informational(client: LeanHttpClient) -> None:
    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await st.read_request(r)
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        await w.drain()
        await asyncio.sleep(1)

    _st, srv, port = await _serve(script)
    async with srv:
        r = await client.get(f"http://127.0.0.1:{port}/x")
        assert (r.status, r.content) == (200, b"hello world")


async def test_body_until_close(client: LeanHttpClient) -> None:
    _st, srv, port = await _serve(_answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"))
    async with srv:
        r = await client.get(f"http://127.0.0.1:{port}/x")
        assert r.content == b"all of it"


async def test_stale_pooled_connection_is_retried_once(client: LeanHttpClient) -> None:
    # keep-alive promised, but the server closes the idle connection right away
    st, srv, port = await _serve(_answer(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
    async with srv:
        assert (await client.get(f"http://127.0.0.1:{port}/a")).content == b"ok"
        await asyncio.sleep(0.05)
        assert (await client.get(f"http://127.0.0.1:{port}/b")).content == b"ok"
        assert st.connections == 2


async def test_oversized_body_refused() -> None:
    c = LeanHttpClient(max_body=1000)

    _st, srv, port = await _serve(
        _answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000))
    async with srv:
        with pytest.raises(HttpTransportError, match="larger than 1000 bytes"):
            await c.get(f"http://127.0.0.1:{port}/x")
    await c.aclose()


@pytest.mark.parametrize("answer", [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
])
async def test_malformed_answers(client: LeanHttpClient, answer: bytes) -> None:
    _st, srv, port = await _serve(_answer(answer, linger=1))
    async with srv:
        with pytest.raises(HttpTransportError, match="malformed"):
            await client.get(f"http://127.0.0.1:{port}/x")


async def test_truncated_answer_is_an_error(client: LeanHttpClient) -> None:
    _st, srv, port = await _serve(
        _answer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort"))
    async with srv:
        with pytest.raises(HttpTransportError, match="closed before the response"):
            await client.get(f"http://127.0.0.1:{port}/x")


async def test_silent_server_times_out() -> None:
    c = LeanHttpClient(timeout=0.3)

    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await st.read_request(r)
        await asyncio.sleep(5)

    _st, srv, port = await _serve(script)
    async with srv:
        for _ in range(2):  # the watchdog serves every exchange, also after one timed out
            started = time.monotonic()
            with pytest.raises(HttpTransportError, match="no answer within"):
                await c.get(f"http://127.0.0.1:{port}/x")
            # enforced by a watchdog that looks every timeout/4 seconds
            assert 0.3 <= time.monotonic() - started < 0.3 * 1.25 + 0.2
    await c.aclose()


async def test_unreachable_and_bad_urls(client: LeanHttpClient) -> None:
    with pytest.raises(HttpTransportError, match="cannot connect"):
        await client.get("http://127.0.0.1:1/x")
    with pytest.raises(HttpTransportError, match="not an absolute"):
        await client.get("ftp://example.org/x")


async def test_tls_with_certificate_verification(tmp_path: Path) -> None:
    ca = LocalCA.create()
    issued = ca.issue_server_cert(["127.0.0.1"])
    issued.write(tmp_path / "s.pem", tmp_path / "s.key")
    (tmp_path / "ca.pem").write_bytes(cert_pem(ca.cert))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "s.pem", tmp_path / "s.key")

    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await st.read_request(r)
            w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nTLS")
            await w.drain()

    _st, srv, port = await _serve(script, ctx)
    async with srv:
        trusting = LeanHttpClient(ca_file=str(tmp_path / "ca.pem"))
        assert (await trusting.get(f"https://127.0.0.1:{port}/x")).content == b"TLS"
        await trusting.aclose()
        stranger = LeanHttpClient()  # system trust store: the local CA is unknown
        with pytest.raises(HttpTransportError, match="cannot connect"):
            await stranger.get(f"https://127.0.0.1:{port}/x")
        await stranger.aclose()


async def test_endless_headers_refused(client: LeanHttpClient) -> None:
    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await st.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(5000):
            w.write(b"X-Filler-%d: %s\r\n" % (i, b"y" * 40))
        await w.drain()
        await asyncio.sleep(1)

    _st, srv, port = await _serve(script)
    async with srv:
        with pytest.raises(HttpTransportError, match="response head larger than"):
            await client.get(f"http://127.0.0.1:{port}/x")
