"""The broker's HTTP layer on a real uvicorn server over loopback, driven with raw sockets:
the bounds of web/http_protocol.py (request head size and deadline, connection cap) and of
web/http_guard.py (Host, HTTP version, Transfer-Encoding on HTTP/1.0, body size, body
deadline, multipart), answered in each endpoint's own error format (T-27)."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import pytest
import uvloop

from healthid_broker.provider.service import ErrorPage, TokenAnswer
from healthid_broker.web.broker_app import BrokerWeb, Urls, create_broker_app
from healthid_broker.web.server import RunningServer, start_server

pytestmark = pytest.mark.slow


HOST = "127.0.0.1"
T = TypeVar("T")


class _Service:
    """Answers like the provider service does for requests it cannot place."""

    async def _app(self, short_key: str) -> None:
        return None

    async def authorize(self, short_key: str, params: Mapping[str, str], **kw: Any) -> ErrorPage:
        return ErrorPage("invalid_client", 404)

    async def choose(self, *args: Any) -> ErrorPage:
        return ErrorPage("login_expired", 400)

    async def callback(self, *args: Any) -> ErrorPage:
        return ErrorPage("login_expired", 400)

    async def token(self, short_key: str, items: Sequence[tuple[str, str]],
                    authorization: Sequence[str]) -> TokenAnswer:
        return TokenAnswer(400, {"error": "invalid_grant", "error_description": f"{len(items)}"},
                           {"Cache-Control": "no-store"})


async def _echo(scope: Any, receive: Any, send: Any) -> None:
    """Mounted at /echo: the body's length, once the app has it."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    out = b"%d" % len(body)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(out))]})
    await send({"type": "http.response.body", "body": out})


class ServerThread:
    """``start_server`` on uvloop (as ``serve`` runs it) in a daemon thread."""

    def __init__(self, **server_kw: Any) -> None:
        web = BrokerWeb(_Service(), Urls("https://b.example", "https://b.example"))  # type: ignore[arg-type]
        self.app = create_broker_app(web, {"/echo": _echo}, body_timeout=1.0)
        self.server_kw = {"head_timeout": 1.0, **server_kw}
        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: RunningServer | None = None

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)

    def __enter__(self) -> ServerThread:
        self.thread.start()
        self.server = self.run(start_server(self.app, host=HOST, **self.server_kw))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.server is not None:
            self.run(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.port


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    with ServerThread() as s:
        yield s


def _connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_all(sock: socket.socket, timeout: float = 5.0) -> tuple[bytes, bool]:
    """Everything until the server closes (``True``), or what came before ``timeout``."""
    sock.settimeout(timeout)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data, True
            data += chunk
    except TimeoutError:
        return data, False
    except ConnectionResetError:
        return data, True


def _exchange(port: int, raw: bytes, timeout: float = 5.0) -> tuple[bytes, bool]:
    with _connect(port) as sock:
        sock.sendall(raw)
        return _read_all(sock, timeout)


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:80]
    return int(answer[9:12])


def _headers(answer: bytes) -> dict[str, str]:
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
    return {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in head)}


def _healthz_time(port: int) -> float:
    t0 = time.monotonic()
    answer, _closed = _exchange(port, b"GET /healthz HTTP/1.1\r\nHost: b\r\n"
                                      b"Connection: close\r\n\r\n")
    assert _status(answer) == 200
    return time.monotonic() - t0


# --------------------------------------------------------------------- request head


def test_a_header_line_that_never_ends_is_cut_off(server: ServerThread) -> None:
    """Megabytes without CRLF: the server stops reading after its head bound (64 KiB plus
    at most a read or two) instead of collecting them, and keeps serving others."""
    sent = 0
    with _connect(server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: b\r\nX-Long: ")
        chunk = b"a" * 65536
        try:
            while sent < 16 * 1024 * 1024:
                sock.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        else:
            pytest.fail("the server took 16 MiB of one header line")
        assert _healthz_time(server.port) < 1.0
    # kernel buffers on loopback hold some of what was sent; the server read far less
    assert sent < 8 * 1024 * 1024


def test_a_head_at_the_bound_is_answered(server: ServerThread) -> None:
    fields = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 900) for i in range(40))  # ≈ 36 KiB
    answer, _ = _exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: b\r\n" + fields
                          + b"Connection: close\r\n\r\n")
    assert _status(answer) == 200


def test_a_head_over_the_bound_is_431(server: ServerThread) -> None:
    """Complete within one read, the head reaches the guard, which counts it."""
    fields = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 900) for i in range(100))  # ≈ 90 KiB
    answer, closed = _exchange(server.port, b"GET /healthz HTTP/1.1\r\nHost: b\r\n" + fields
                               + b"\r\n")
    assert closed
    assert _status(answer) == 431


@pytest.mark.parametrize("partial", [b"", b"GET /healthz HTTP/1.1\r\nHost: b\r\n"])
def test_a_head_that_does_not_arrive_in_time_is_dropped(server: ServerThread,
                                                         partial: bytes) -> None:
    """A connection that sends nothing, or stops within its head, is closed after the head
    deadline (1 s here), not kept."""
    with _connect(server.port) as sock:
        t0 = time.monotonic()
        sock.sendall(partial)
        answer, closed = _read_all(sock, timeout=5.0)
        assert closed and answer == b""
        assert 0.8 < time.monotonic() - t0 < 3.0


def test_a_head_trickled_byte_by_byte_hits_the_deadline(server: ServerThread) -> None:
    """Each byte arrives in time for a per-read timeout; the head's overall deadline
    still ends it."""
    head = b"GET /healthz HTTP/1.1\r\nHost: b\r\nX-Slow: " + b"s" * 100
    with _connect(server.port) as sock:
        t0 = time.monotonic()
        with pytest.raises((BrokenPipeError, ConnectionResetError)):
            for byte in head:
                sock.send(bytes([byte]))
                time.sleep(0.05)
        assert time.monotonic() - t0 < 3.0


@pytest.mark.parametrize("raw", [
    b"GET /healthz HTTP/1.1\r\n\r\n",  # no Host
    b"GET /healthz HTTP/1.1\r\nHost: b\r\nHost: c\r\n\r\n",  # two
    b"GET /healthz HTTP/1.0\r\nHost: b\r\nHost: c\r\n\r\n",
    b"GET /healthz\r\n\r\n",  # HTTP/0.9
    b"GET /healthz HTTP/2.0\r\nHost: b\r\n\r\n",
    b"GET /healthz HTTP/3.0\r\nHost: b\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: b\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
    b"POST /healthz HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: gzip\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: b\r\nX: a\r\n b\r\n\r\n",  # obsolete line folding
    b"GET /healthz HTTP/1.1\r\nHost : b\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: b\r\nContent-Length: -1\r\n\r\n",
    b"GET /healthz HTTP/1.1\r\nHost: b\r\nContent-Length: 1, 2\r\n\r\n",
])
def test_malformed_requests_are_400_and_closed(server: ServerThread, raw: bytes) -> None:
    answer, closed = _exchange(server.port, raw)
    assert _status(answer) == 400
    assert closed


def test_http_1_0_with_transfer_encoding_is_400_and_closed(server: ServerThread) -> None:
    """RFC 9112 §6.1: faulty framing; what follows (here a request smuggled in a chunk's
    place) is never answered."""
    answer, closed = _exchange(
        server.port,
        b"POST /echo/x HTTP/1.0\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3\r\nabc\r\n0\r\n\r\nGET /healthz HTTP/1.1\r\nHost: b\r\n\r\n")
    assert closed
    assert _status(answer) == 400
    assert answer.count(b"HTTP/1.1 ") == 1


def test_plain_requests_keep_alive_and_pipeline(server: ServerThread) -> None:
    with _connect(server.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n"
                     b"POST /echo/x HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\nhello"
                     b"GET /healthz HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n")
        answer, closed = _read_all(sock)
    assert closed
    assert answer.count(b"HTTP/1.1 200 OK") == 3
    assert b"\r\n\r\n5HTTP/1.1" in answer  # the echo saw the whole body
    assert b"server:" not in answer.lower()  # no server header


def test_no_access_log(server: ServerThread, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    answer, _ = _exchange(server.port, b"GET /healthz?code=SECRET-CODE-1 HTTP/1.1\r\nHost: b"
                                       b"\r\nConnection: close\r\n\r\n")
    assert _status(answer) == 200
    assert "SECRET-CODE-1" not in caplog.text


# --------------------------------------------------------------------- request body

FORM = b"application/x-www-form-urlencoded"


def _post(path: str, body: bytes, content_type: bytes = FORM, *,
          extra: bytes = b"") -> bytes:
    return (b"POST %s HTTP/1.1\r\nHost: b\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
            % (path.encode(), content_type, len(body), extra) + body)


@pytest.mark.parametrize(("path", "json"), [
    ("/demo/token", True), ("/demo/authorize/choose", False),
    ("/demo/callback", False), ("/demo/authorize", False),
])
def test_a_body_over_16_kib_is_413_in_the_endpoints_format(server: ServerThread, path: str,
                                                            json: bool) -> None:
    answer, closed = _exchange(server.port, _post(path, b"a=" + b"x" * 16 * 1024))
    assert closed
    assert _status(answer) == 413
    ctype = _headers(answer)["content-type"]
    assert ctype.startswith("application/json" if json else "text/html")
    if json:
        assert b'"error":"invalid_request"' in answer


def test_a_body_at_16_kib_is_taken(server: ServerThread) -> None:
    body = b"a=" + b"x" * (16 * 1024 - 2)
    answer, _ = _exchange(server.port, _post("/echo/x", body, extra=b"Connection: close\r\n"))
    assert _status(answer) == 200 and answer.endswith(b"16384")


def test_a_chunked_body_over_16_kib_is_413(server: ServerThread) -> None:
    chunk = b"x" * 4096
    body = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(5)) + b"0\r\n\r\n"
    answer, closed = _exchange(server.port, b"POST /demo/token HTTP/1.1\r\nHost: b\r\n"
                               b"Content-Type: " + FORM + b"\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert closed
    assert _status(answer) == 413


def test_a_trickling_body_hits_the_deadline(server: ServerThread) -> None:
    """One byte every 100 ms of a 50-byte body: 408 at the body deadline (1 s here), and
    the connection is closed."""
    with _connect(server.port) as sock:
        sock.sendall(b"POST /demo/token HTTP/1.1\r\nHost: b\r\nContent-Type: " + FORM
                     + b"\r\nContent-Length: 50\r\n\r\n")
        t0 = time.monotonic()
        sock.settimeout(0.1)
        answer = b""
        for _ in range(40):
            try:
                sock.send(b"a")
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            if not chunk:
                break
            answer += chunk
        rest, closed = _read_all(sock, 2.0)
        answer += rest
    assert _status(answer) == 408
    assert closed
    assert time.monotonic() - t0 < 3.0


@pytest.mark.parametrize(("path", "json"), [("/demo/token", True),
                                            ("/demo/authorize/choose", False)])
def test_multipart_is_415(server: ServerThread, path: str, json: bool) -> None:
    body = b"--x\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\n1\r\n--x--\r\n"
    answer, closed = _exchange(server.port,
                               _post(path, body, b"multipart/form-data; boundary=x"))
    assert closed
    assert _status(answer) == 415
    assert _headers(answer)["content-type"].startswith(
        "application/json" if json else "text/html")


@pytest.mark.parametrize("ctype", [b"application/json", b"text/plain", b"", b"x/y; a=b",
                                   b"application/x-www-form-urlencoded-not"])
def test_other_content_types_at_the_token_endpoint_are_invalid_request(
        server: ServerThread, ctype: bytes) -> None:
    answer, _ = _exchange(server.port, _post("/demo/token", b'{"a":1}', ctype,
                                             extra=b"Connection: close\r\n"))
    assert _status(answer) == 400
    assert b'"error":"invalid_request"' in answer


def test_the_chooser_refuses_other_content_types_with_a_page(server: ServerThread) -> None:
    answer, _ = _exchange(server.port, _post("/demo/authorize/choose", b"tx=a", b"text/plain",
                                             extra=b"Connection: close\r\n"))
    assert _status(answer) == 400
    assert _headers(answer)["content-type"].startswith("text/html")


# --------------------------------------------------------------------- connections


def test_open_connections_are_capped() -> None:
    """Eight connections are served; a ninth is closed as it is accepted, without being
    read; once one of the eight leaves, a new one is served again."""
    with ServerThread(max_connections=8, head_timeout=30.0) as srv:
        held = [_connect(srv.port) for _ in range(8)]
        try:
            time.sleep(0.2)
            with _connect(srv.port) as extra:
                answer, closed = _read_all(extra, 2.0)
                assert closed and answer == b""
            for sock in held:  # the admitted ones still work
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n")
                assert _status(sock.recv(4096)) == 200
            held.pop().close()
            time.sleep(0.2)
            answer, _ = _exchange(srv.port, b"GET /healthz HTTP/1.1\r\nHost: b\r\n"
                                            b"Connection: close\r\n\r\n")
            assert _status(answer) == 200
        finally:
            for sock in held:
                sock.close()


def test_stop_ends_idle_keep_alive_connections() -> None:
    with ServerThread() as srv, _connect(srv.port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: b\r\n\r\n")
        assert _status(sock.recv(4096)) == 200
        assert srv.server is not None
        t0 = time.monotonic()
        srv.run(srv.server.stop())
        assert time.monotonic() - t0 < 2.0
        _answer, closed = _read_all(sock, 2.0)
        assert closed
        srv.server = None
