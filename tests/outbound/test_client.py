"""The broker's outbound client (aiohttp) against scripted servers on loopback with real TLS
and client certificates: framing (length, chunked, until close, 1xx), keep-alive and one pool
per client identity, size limits, timeouts, malformed answers, verification — and that a
POST is never sent twice (RFC 9110 §9.2.2) while a GET survives a stale pooled connection."""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from healthid_broker.crypto.keys import (
    LocalCA,
    cert_pem,
    new_ec_key,
    private_key_pem,
    self_signed_client_cert,
)
from healthid_broker.http import ClientIdentity, HttpTransportError, tls_client_context
from healthid_broker.http.client import OutboundClient

pytestmark = [pytest.mark.anyio, pytest.mark.slow]


@pytest.fixture(params=[
    pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio"),
    pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),  # what the broker runs on
])
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


def _identity(name: str) -> ClientIdentity:
    key = new_ec_key()
    return ClientIdentity(cert_pem(self_signed_client_cert(key, name)), private_key_pem(key))


def _public_jwk() -> dict[str, str]:
    """A P-256 public JWK (RFC 7518 §6.2.1), e.g. a pinned federation master key."""
    nums = new_ec_key().public_key().public_numbers()

    def b64u(n: int) -> str:
        return base64.urlsafe_b64encode(n.to_bytes(32, "big")).rstrip(b"=").decode()

    return {"kty": "EC", "crv": "P-256", "x": b64u(nums.x), "y": b64u(nums.y), "kid": "m1",
            "use": "sig", "alg": "ES256"}


def _der(identity: ClientIdentity) -> bytes:
    return x509.load_pem_x509_certificate(identity.cert_pem).public_bytes(
        serialization.Encoding.DER)


@dataclass
class Pki:
    ca_file: str
    server_ctx: ssl.SSLContext  # asks for a client certificate, trusts rp_a and rp_b
    rp_a: ClientIdentity
    rp_b: ClientIdentity
    ca: LocalCA
    tmp: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = LocalCA.create()
    ca.issue_server_cert(["127.0.0.1"]).write(tmp_path / "s.pem", tmp_path / "s.key")
    (tmp_path / "ca.pem").write_bytes(cert_pem(ca.cert))
    rp_a, rp_b = _identity("rp-a"), _identity("rp-b")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "s.pem", tmp_path / "s.key")
    ctx.verify_mode = ssl.CERT_OPTIONAL  # a client certificate is verified when sent
    ctx.load_verify_locations(cadata=(rp_a.cert_pem + rp_b.cert_pem).decode())
    return Pki(str(tmp_path / "ca.pem"), ctx, rp_a, rp_b, ca, tmp_path)


@dataclass
class Server:
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    peer_certs: list[bytes | None] = field(default_factory=list)  # per connection
    closed: int = 0  # connections the client ended while the script read

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await reader.readexactly(length) if length else b""
        self.requests.append(head + body)
        return head + body

    def methods(self) -> list[bytes]:
        return [r.split(b" ", 1)[0] for r in self.requests]


Script = Callable[[Server, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(script: Script, ssl_ctx: ssl.SSLContext | None
                 ) -> tuple[Server, asyncio.Server, str]:
    state = Server()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state.connections += 1
        obj = writer.get_extra_info("ssl_object")
        state.peer_certs.append(obj.getpeercert(binary_form=True) if obj else None)
        try:
            await script(state, reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            state.closed += 1
        finally:
            writer.close()

    srv = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=ssl_ctx)
    port = srv.sockets[0].getsockname()[1]
    return state, srv, f"{'https' if ssl_ctx else 'http'}://127.0.0.1:{port}"


def _answer(raw: bytes, *, linger: float = 0.0) -> Script:
    """Read one request, write ``raw``, stay connected ``linger`` seconds."""
    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await st.read_request(r)
        w.write(raw)
        await w.drain()
        if linger:
            await asyncio.sleep(linger)

    return script


def _keep_answering(raw: bytes) -> Script:
    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            await st.read_request(r)
            w.write(raw)
            await w.drain()

    return script


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.fixture
async def client(pki: Pki) -> AsyncIterator[OutboundClient]:
    c = OutboundClient(ca_file=pki.ca_file, timeout=2)
    yield c
    await c.aclose()


# ------------------------------------------------------------------ requests and framing

async def test_form_post_over_mtls_with_keep_alive(client: OutboundClient, pki: Pki) -> None:
    answer = (b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n"
              b"Content-Length: 11\r\n\r\n{\"ok\":true}")
    st, srv, base = await _serve(_keep_answering(answer), pki.server_ctx)
    form = {"scope": "openid urn:x", "uri": "https://a/b?c", "ü": "€ &="}
    async with srv:
        for _ in range(3):
            r = await client.post_form(f"{base}/par", form, identity=pki.rp_a)
            assert r.status == 201 and r.json() == {"ok": True}
            assert r.content_type == "application/json"
            assert r.url == f"{base}/par"
    assert st.connections == 1  # one kept-alive connection for three requests
    assert st.peer_certs == [_der(pki.rp_a)]  # the identity's certificate was presented
    head, body = st.requests[0].split(b"\r\n\r\n", 1)
    assert body == urlencode(form).encode()
    lines = head.lower().split(b"\r\n")
    assert lines[0] == b"post /par http/1.1"
    assert b"content-type: application/x-www-form-urlencoded" in lines
    assert b"user-agent: healthid-broker" in lines
    assert b"accept-encoding: identity" in lines
    assert not any(h.startswith(b"cookie") for h in lines)


async def test_request_target_sent_as_given_and_reserved_headers_kept(
    client: OutboundClient, pki: Pki
) -> None:
    st, srv, base = await _serve(_keep_answering(OK), pki.server_ctx)
    async with srv:
        await client.get(f"{base}/fetch?sub=https%3A%2F%2Fidp.example%2F&x=%7E",
                         headers={"Accept": "application/entity-statement+jwt",
                                  "Host": "evil.example", "User-Agent": "other",
                                  "Cookie": "a=b", "X-Ok": "2"})
    head = st.requests[0].split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    assert head[0] == b"GET /fetch?sub=https%3A%2F%2Fidp.example%2F&x=%7E HTTP/1.1"
    lowered = [h.lower() for h in head[1:]]
    assert b"accept: application/entity-statement+jwt" in lowered
    assert b"x-ok: 2" in lowered
    assert b"host: 127.0.0.1:%d" % int(base.rsplit(":", 1)[1]) in lowered
    assert b"user-agent: healthid-broker" in lowered
    assert not any(h.startswith((b"cookie", b"host: evil")) for h in lowered)


async def test_header_injection_refused(client: OutboundClient, pki: Pki) -> None:
    st, srv, base = await _serve(_keep_answering(OK), pki.server_ctx)
    async with srv:
        with pytest.raises(HttpTransportError):
            await client.get(f"{base}/x", headers={"x-bad": "1\r\nx-injected: 1"})
    assert all(b"x-injected" not in r for r in st.requests)


async def test_chunked_and_informational(client: OutboundClient, pki: Pki) -> None:
    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await st.read_request(r)
        w.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
        await w.drain()
        await asyncio.sleep(1)

    _st, srv, base = await _serve(script, pki.server_ctx)
    async with srv:
        r = await client.get(f"{base}/x")
        assert (r.status, r.content) == (200, b"hello world")


async def test_body_until_close(client: OutboundClient, pki: Pki) -> None:
    _st, srv, base = await _serve(
        _answer(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nall of it"), pki.server_ctx)
    async with srv:
        r = await client.get(f"{base}/x")
        assert r.content == b"all of it"


async def test_repeated_headers_are_joined(client: OutboundClient, pki: Pki) -> None:
    _st, srv, base = await _serve(_answer(
        b"HTTP/1.1 200 OK\r\nX-A: 1\r\nx-a: 2\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Length: 0\r\n\r\n"), pki.server_ctx)
    async with srv:
        r = await client.get(f"{base}/x")
    assert r.headers["x-a"] == "1, 2"
    assert r.content_type == "text/plain"


# ------------------------------------------------------------------ no second POST

async def test_post_read_then_dropped_on_a_reused_connection_is_not_resent(
    client: OutboundClient, pki: Pki
) -> None:
    """The server reads the token request on a pooled connection and closes without an
    answer: the client must fail, and the code must have reached the server exactly once."""
    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if st.connections == 1:
            await st.read_request(r)  # the GET: answered, connection kept alive
            w.write(OK)
            await w.drain()
        await st.read_request(r)  # the POST (on a later connection: any request)
        # closed without an answer

    st, srv, base = await _serve(script, pki.server_ctx)
    async with srv:
        assert (await client.get(f"{base}/.well-known/x", identity=pki.rp_a)).content == b"ok"
        with pytest.raises(HttpTransportError) as err:
            await client.post_form(f"{base}/token?q=hidden",
                                   {"code": "one-time-code-123", "code_verifier": "v" * 43},
                                   identity=pki.rp_a)
        await asyncio.sleep(0.2)  # a re-sent request would arrive meanwhile
    assert st.methods() == [b"GET", b"POST"]
    assert st.connections == 1
    message = str(err.value)
    assert "one-time-code-123" not in message and "hidden" not in message
    assert message.startswith(f"POST {base}/token: ")


async def test_post_read_then_dropped_on_a_new_connection_is_not_resent(
    client: OutboundClient, pki: Pki
) -> None:
    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await st.read_request(r)

    st, srv, base = await _serve(script, pki.server_ctx)
    async with srv:
        with pytest.raises(HttpTransportError):
            await client.post_form(f"{base}/par", {"state": "s"}, identity=pki.rp_a)
        await asyncio.sleep(0.2)
    assert st.methods() == [b"POST"]


async def test_get_read_then_dropped_is_tried_once_more(
    client: OutboundClient, pki: Pki
) -> None:
    """The same server behaviour for an idempotent GET: sent again on a new connection."""
    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        if st.connections == 1:
            await st.read_request(r)
            w.write(OK)
            await w.drain()
            await st.read_request(r)  # dropped
            return
        await _keep_answering(OK)(st, r, w)

    st, srv, base = await _serve(script, pki.server_ctx)
    async with srv:
        await client.get(f"{base}/a")
        assert (await client.get(f"{base}/b")).content == b"ok"
    assert st.methods() == [b"GET", b"GET", b"GET"] and st.connections == 2


async def test_stale_keep_alive_connection(client: OutboundClient, pki: Pki) -> None:
    """Keep-alive promised, but the server closes the idle connection right away: the next
    GET and the next POST go out on a new connection, each exactly once."""
    st, srv, base = await _serve(_answer(OK), pki.server_ctx)
    async with srv:
        assert (await client.get(f"{base}/a")).content == b"ok"
        await asyncio.sleep(0.05)
        assert (await client.get(f"{base}/b")).content == b"ok"
        await asyncio.sleep(0.05)
        assert (await client.post_form(f"{base}/c", {"k": "v"})).content == b"ok"
    assert st.methods() == [b"GET", b"GET", b"POST"]
    assert st.connections == 3


# ------------------------------------------------------------------ sizes

async def test_oversized_content_length_refused_before_the_body(pki: Pki) -> None:
    c = OutboundClient(ca_file=pki.ca_file, max_body=1000, timeout=5)
    # announces 50 MiB, sends a few bytes and waits: the client must not wait for the rest
    _st, srv, base = await _serve(
        _answer(b"HTTP/1.1 200 OK\r\nContent-Length: 52428800\r\n\r\nxxxx", linger=10),
        pki.server_ctx)
    async with srv:
        started = time.monotonic()
        with pytest.raises(HttpTransportError, match="larger than 1000 bytes"):
            await c.get(f"{base}/x")
        assert time.monotonic() - started < 2
    await c.aclose()


async def test_oversized_stream_refused_while_reading(pki: Pki) -> None:
    c = OutboundClient(ca_file=pki.ca_file, max_body=100_000, timeout=5)
    sent = 0

    async def endless(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        nonlocal sent
        await st.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 4096
        while sent < 500_000_000:  # 500 MB if nobody stops it
            w.write(b"1000\r\n" + chunk + b"\r\n")
            sent += len(chunk)
            await w.drain()

    _st, srv, base = await _serve(endless, pki.server_ctx)
    async with srv:
        with pytest.raises(HttpTransportError, match="larger than 100000 bytes"):
            await c.get(f"{base}/x")
    await c.aclose()
    # refused while streaming: what the server got rid of fits into the kernel's loopback
    # socket buffers (a few MB), far from the end
    assert sent < 50_000_000


async def test_default_limit_is_one_mebibyte(client: OutboundClient, pki: Pki) -> None:
    exact = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + b"x" * (1 << 20)
    over = b"HTTP/1.1 200 OK\r\nContent-Length: 1048577\r\n\r\n" + b"x" * ((1 << 20) + 1)
    _st, srv, base = await _serve(_answer(exact), pki.server_ctx)
    async with srv:
        assert len((await client.get(f"{base}/x")).content) == 1 << 20
    _st, srv, base = await _serve(_answer(over), pki.server_ctx)
    async with srv:
        with pytest.raises(HttpTransportError, match="larger than 1048576 bytes"):
            await client.get(f"{base}/x")


async def test_compressed_answer_refused(client: OutboundClient, pki: Pki) -> None:
    _st, srv, base = await _serve(_answer(
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nabcd"),
        pki.server_ctx)
    async with srv:
        with pytest.raises(HttpTransportError, match="content-encoding"):
            await client.get(f"{base}/x")


async def test_endless_headers_refused(client: OutboundClient, pki: Pki) -> None:
    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await st.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(5000):
            w.write(b"X-Filler-%d: %s\r\n" % (i, b"y" * 40))
        await w.drain()
        await asyncio.sleep(1)

    _st, srv, base = await _serve(script, pki.server_ctx)
    async with srv:
        with pytest.raises(HttpTransportError):
            await client.get(f"{base}/x")


@pytest.mark.parametrize("answer", [
    b"NOT HTTP AT ALL\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",  # truncated
    b"",  # closed without a byte
])
async def test_malformed_or_truncated_answers(client: OutboundClient, pki: Pki,
                                              answer: bytes) -> None:
    _st, srv, base = await _serve(_answer(answer), pki.server_ctx)
    async with srv:
        with pytest.raises(HttpTransportError):
            await client.get(f"{base}/x")


# ------------------------------------------------------------------ time

async def test_silent_server_times_out(pki: Pki) -> None:
    c = OutboundClient(ca_file=pki.ca_file, timeout=0.3)

    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await st.read_request(r)
        await asyncio.sleep(5)

    _st, srv, base = await _serve(script, pki.server_ctx)
    async with srv:
        for _ in range(2):  # also after one exchange timed out
            started = time.monotonic()
            with pytest.raises(HttpTransportError, match=r"no answer within 0\.3 s"):
                await c.get(f"{base}/x")
            assert 0.3 <= time.monotonic() - started < 1.0
    await c.aclose()


async def test_trickling_answer_meets_the_overall_deadline(pki: Pki) -> None:
    """A byte every 0.1 s never trips a per-read timeout; the exchange's deadline holds."""
    c = OutboundClient(ca_file=pki.ca_file, timeout=0.5)

    async def script(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await st.read_request(r)
        w.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
        for _ in range(1000):
            w.write(b"x")
            await w.drain()
            await asyncio.sleep(0.1)

    _st, srv, base = await _serve(script, pki.server_ctx)
    async with srv:
        started = time.monotonic()
        with pytest.raises(HttpTransportError, match="no answer within"):
            await c.get(f"{base}/x")
        assert time.monotonic() - started < 1.5
    await c.aclose()


async def test_connect_timeout_covers_a_stalled_handshake(pki: Pki) -> None:
    c = OutboundClient(ca_file=pki.ca_file, timeout=5, connect_timeout=0.3)

    async def mute(st: Server, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)  # accepts TCP, never speaks TLS

    _st, srv, base = await _serve(mute, None)
    async with srv:
        started = time.monotonic()
        with pytest.raises(HttpTransportError, match=r"no connection within 0\.3 s"):
            await c.get(base.replace("http://", "https://") + "/x")
        assert time.monotonic() - started < 2
    await c.aclose()


# ------------------------------------------------------------------ reachability, TLS

async def test_unreachable_and_bad_urls(client: OutboundClient, pki: Pki) -> None:
    with pytest.raises(HttpTransportError, match="ClientConnectorError"):
        await client.get("https://127.0.0.1:1/x")
    with pytest.raises(HttpTransportError, match="not an absolute"):
        await client.get("ftp://example.org/x")
    with pytest.raises(HttpTransportError, match="not an absolute"):
        await client.get("/relative")
    with pytest.raises(HttpTransportError, match="needs https"):
        await client.get("http://127.0.0.1:1/x", identity=pki.rp_a)


async def test_server_verified_against_the_configured_ca(pki: Pki) -> None:
    st, srv, base = await _serve(_keep_answering(OK), pki.server_ctx)
    async with srv:
        stranger = OutboundClient()  # system trust store: the local CA is unknown
        with pytest.raises(HttpTransportError, match=r"[Cc]ertificate"):
            await stranger.get(f"{base}/x")
        await stranger.aclose()
    # a certificate of the right CA for another name
    other = pki.ca.issue_server_cert(["other.example"])
    other.write(pki.tmp / "o.pem", pki.tmp / "o.key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.tmp / "o.pem", pki.tmp / "o.key")
    st2, srv2, base2 = await _serve(_keep_answering(OK), ctx)
    async with srv2:
        trusting = OutboundClient(ca_file=pki.ca_file)
        with pytest.raises(HttpTransportError, match=r"[Cc]ertificate|hostname"):
            await trusting.get(f"{base2}/x")
        await trusting.aclose()
    assert st.requests == [] and st2.requests == []


def test_tls_context_is_verifying_and_at_least_tls12(pki: Pki) -> None:
    ctx = tls_client_context(pki.ca_file, pki.rp_a)
    assert ctx.minimum_version >= ssl.TLSVersion.TLSv1_2
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
async def test_old_tls_server_refused(client: OutboundClient, pki: Pki) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.tmp / "s.pem", pki.tmp / "s.key")
    ctx.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        ctx.set_ciphers("ALL:@SECLEVEL=0")
    except ssl.SSLError:
        pass
    st, srv, base = await _serve(_keep_answering(OK), ctx)
    async with srv:
        with pytest.raises(HttpTransportError):
            await client.get(f"{base}/x")
    assert st.requests == []


async def test_one_pool_per_client_identity(client: OutboundClient, pki: Pki) -> None:
    st, srv, base = await _serve(_keep_answering(OK), pki.server_ctx)
    async with srv:
        for identity in (pki.rp_a, pki.rp_b, None, pki.rp_a, pki.rp_b, None):
            await client.post_form(f"{base}/token", {"k": "v"}, identity=identity)
    # three connections, each reused once, each with its own certificate (or none)
    assert st.connections == 3
    assert st.peer_certs == [_der(pki.rp_a), _der(pki.rp_b), None]


async def test_no_redirects_no_cookies_no_proxy_from_environment(
    client: OutboundClient, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:1")
    st, srv, base = await _serve(_keep_answering(
        b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nSet-Cookie: sid=1; Path=/\r\n"
        b"Content-Length: 0\r\n\r\n"), pki.server_ctx)
    async with srv:
        r1 = await client.get(f"{base}/a")  # reached directly, not through the "proxy"
        r2 = await client.post_form(f"{base}/b", {"k": "v"})
    assert (r1.status, r1.headers["location"]) == (302, "/elsewhere")
    assert r2.status == 302
    assert st.methods() == [b"GET", b"POST"]  # the redirect was not followed
    assert all(b"\r\ncookie:" not in r.lower() for r in st.requests)


async def test_aclose_closes_every_pool(pki: Pki) -> None:
    c = OutboundClient(ca_file=pki.ca_file)
    st, srv, base = await _serve(_keep_answering(OK), pki.server_ctx)
    async with srv:
        await c.get(f"{base}/x", identity=pki.rp_a)
        await c.get(f"{base}/x", identity=pki.rp_b)
        await c.get(f"{base}/x")
        assert st.closed == 0
        await c.aclose()
        for _ in range(50):
            if st.closed == 3:
                break
            await asyncio.sleep(0.02)
        assert st.closed == 3
        with pytest.raises(HttpTransportError, match="closed"):
            await c.get(f"{base}/x")
        await c.aclose()  # twice is fine


def test_settings_validated() -> None:
    with pytest.raises(ValueError):
        OutboundClient(timeout=0)
    with pytest.raises(ValueError):
        OutboundClient(max_body=-1)


async def test_broker_runtime_owns_and_closes_its_client(pki: Pki, tmp_path: Path) -> None:
    """build_broker gives the broker an OutboundClient trusting the configured CA file, and
    the runtime's shutdown closes its pools."""
    from healthid_broker.crypto.key_provider import LocalFileKeyProvider
    from healthid_broker.runtime.compose import build_broker
    from healthid_broker.runtime.settings import BrokerSettings
    from healthid_broker.storage.db import default_database_url, open_database
    from healthid_broker.tenancy.service import TenancyService

    data = tmp_path / "data"
    data.mkdir()
    _e, factory = open_database(default_database_url(data))
    settings = BrokerSettings(public_base="https://broker.example", data_dir=data,
                              environment="sandbox", master_entity_id="https://m.example",
                              master_jwks={"keys": [_public_jwk()]},
                              ca_file=pki.ca_file)
    rt = build_broker(settings, TenancyService(factory, LocalFileKeyProvider.in_data_dir(data)))
    assert isinstance(rt.http, OutboundClient)
    st, srv, base = await _serve(_keep_answering(OK), pki.server_ctx)
    async with srv:
        assert (await rt.http.get(f"{base}/x", identity=pki.rp_a)).content == b"ok"
        await rt.aclose()
        for _ in range(50):
            if st.closed == 1:
                break
            await asyncio.sleep(0.02)
        assert st.closed == 1
        with pytest.raises(HttpTransportError, match="closed"):
            await rt.http.get(f"{base}/x")
