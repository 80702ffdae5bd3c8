"""Rate limits on the login path: classification, per-address and per-client counting,
429 answers (page for people, OAuth JSON at the token endpoint, Retry-After, security
headers), the form replayed to the app, counts shared through Redis, and a real flood from
127.0.0.2 over sockets that leaves 127.0.0.1 alone."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis

from healthid_broker.runtime.redis import RedisSettings, connect_redis
from healthid_broker.web.rate_limit import (
    MemoryRateLimiter,
    RateLimiter,
    RateLimitMiddleware,
    RateLimits,
    RedisRateLimiter,
    address_key,
    classify,
)
from healthid_broker.web.security import Guard

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class EchoApp:
    """The wrapped app: answers 200 with the body it received."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": body})


async def call(app: Any, path: str, *, client: str = "192.0.2.1", method: str = "GET",
               query: str = "", body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None,
               chunk: int = 0, scheme: str = "http") -> tuple[int, dict[bytes, bytes], bytes]:
    """One ASGI request; the body is sent in ``chunk``-sized messages when chunk > 0."""
    parts = [body[i:i + chunk] for i in range(0, len(body), chunk)] if chunk else [body]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1}
                for i, p in enumerate(parts)]
    scope = {"type": "http", "method": method, "path": path, "scheme": scheme,
             "query_string": query.encode(), "headers": headers or [],
             "client": (client, 50000)}
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = sent[0]
    return (start["status"], dict(start["headers"]),
            b"".join(m.get("body", b"") for m in sent[1:]))


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(("path", "category"), [
    ("/demo/authorize", "authorize"), ("/demo/authorize/choose", "choose"),
    ("/demo/callback", "callback"), ("/demo/token", "token"),
    ("/demo/jwks", None), ("/demo/.well-known/openid-configuration", None),
    ("/healthz", None), ("/authorize", None), ("//authorize", None),
    ("/demo/token/x", None), ("/static/broker.css", None), ("", None),
])
def test_classify(path: str, category: str | None) -> None:
    assert classify(path) == category


@given(st.text())
def test_classify_never_fails(path: str) -> None:
    assert classify(path) in (None, "authorize", "choose", "callback", "token")


def test_address_key_groups_ipv6_by_64() -> None:
    assert address_key(("192.0.2.7", 1)) == "192.0.2.7"
    assert address_key(("2001:db8:1:2:aaaa::1", 1)) == address_key(("2001:db8:1:2::ffff", 2))
    assert address_key(("2001:db8:1:2::1", 1)) != address_key(("2001:db8:1:3::1", 1))
    assert address_key(("::ffff:192.0.2.7", 1)) == "192.0.2.7"
    assert address_key(None) == "unknown"


def test_limits_parse() -> None:
    limits = RateLimits.parse(["authorize=5", "client.token=7", "callback=0"])
    assert limits.per_address["authorize"] == 5 and limits.per_address["callback"] == 0
    assert limits.per_address["token"] == 600  # default kept
    assert limits.per_client["token"] == 7
    off = RateLimits.parse(["off"])
    assert not off.enabled
    assert RateLimits.parse(["off", "token=3"]).per_address["token"] == 3
    for bad in ("authorize", "nope=3", "client.callback=3", "token=x", "token=-1"):
        with pytest.raises(ValueError):
            RateLimits.parse([bad])


# --------------------------------------------------------------------------- middleware


def _limited(limiter: RateLimiter, **limits: int) -> tuple[Guard, EchoApp]:
    per_address = {k: v for k, v in limits.items() if not k.startswith("client_")}
    per_client = {k[len("client_"):]: v for k, v in limits.items() if k.startswith("client_")}
    inner = EchoApp()
    # as in the broker: the Guard outside sets the security headers (create_broker_app)
    return Guard(RateLimitMiddleware(inner, limiter, RateLimits(per_address, per_client),
                                     static_base="https://b.example/static")), inner


async def test_address_flood_gets_429_page_and_others_pass() -> None:
    clock = Clock()
    app, inner = _limited(MemoryRateLimiter(clock=clock), authorize=3)
    for _ in range(3):
        assert (await call(app, "/demo/authorize", client="192.0.2.9"))[0] == 200
    status, headers, body = await call(app, "/demo/authorize", client="192.0.2.9",
                                       headers=[(b"accept-language", b"en")])
    assert status == 429
    assert headers[b"retry-after"] == b"60"
    assert headers[b"content-type"].startswith(b"text/html")
    assert b"Too many requests" in body and b"60 seconds" in body
    assert b"https://b.example/static/broker.css" in body
    for name in (b"content-security-policy", b"x-content-type-options", b"x-frame-options",
                 b"referrer-policy", b"cache-control"):
        assert name in headers
    assert b"strict-transport-security" not in headers  # plain http
    status, _, body = await call(app, "/demo/authorize", client="192.0.2.9")
    assert status == 429 and b"Zu viele Anfragen" in body  # German by default
    assert (await call(app, "/demo/authorize", client="192.0.2.10"))[0] == 200
    assert inner.calls == 4
    clock.t += 30
    status, headers, _ = await call(app, "/demo/authorize", client="192.0.2.9",
                                    scheme="https")
    assert status == 429 and headers[b"retry-after"] == b"30"
    assert b"strict-transport-security" in headers
    clock.t += 30  # a new window
    assert (await call(app, "/demo/authorize", client="192.0.2.9"))[0] == 200


async def test_categories_count_separately_and_other_paths_not_at_all() -> None:
    app, inner = _limited(MemoryRateLimiter(), authorize=1, choose=1, callback=1, token=1)
    for path in ("/a/authorize", "/a/authorize/choose", "/a/callback", "/a/token"):
        assert (await call(app, path))[0] == 200
        assert (await call(app, path))[0] == 429
    for _ in range(5):
        assert (await call(app, "/a/jwks"))[0] == 200
    assert inner.calls == 4 + 5


async def test_token_endpoint_answers_oauth_json() -> None:
    app, _ = _limited(MemoryRateLimiter(), token=1)
    await call(app, "/a/token", method="POST")
    status, headers, body = await call(app, "/a/token", method="POST")
    assert status == 429 and headers[b"content-type"] == b"application/json"
    answer = json.loads(body)
    assert answer["error"] == "temporarily_unavailable"
    assert "retry after 60 s" in answer["error_description"]
    assert headers[b"cache-control"] == b"no-store" and headers[b"retry-after"] == b"60"


def _basic(client_id: str, secret: str = "s") -> list[tuple[bytes, bytes]]:
    token = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return [(b"authorization", f"Basic {token}".encode())]


FORM = [(b"content-type", b"application/x-www-form-urlencoded; charset=utf-8")]


async def test_per_client_limits_at_authorize_and_token() -> None:
    app, _ = _limited(MemoryRateLimiter(), authorize=100, token=100, client_authorize=2,
                      client_token=2)
    q = urlencode({"client_id": "app-one", "state": "x"})
    for i in range(2):  # one client from two addresses
        assert (await call(app, "/a/authorize", query=q, client=f"192.0.2.{i}"))[0] == 200
    assert (await call(app, "/a/authorize", query=q, client="192.0.2.5"))[0] == 429
    other = urlencode({"client_id": "app-two"})
    assert (await call(app, "/a/authorize", query=other, client="192.0.2.5"))[0] == 200
    # token: Basic (percent-encoded id, RFC 6749 §2.3.1) and the form's client_id count as
    # the same client
    assert (await call(app, "/a/token", method="POST",
                       headers=_basic("app%2Done")))[0] == 200
    body = urlencode({"client_id": "app-one", "grant_type": "authorization_code"}).encode()
    status, _, echoed = await call(app, "/a/token", method="POST", body=body, headers=FORM,
                                   chunk=7)
    assert status == 200 and echoed == body  # the form reaches the app unchanged
    assert (await call(app, "/a/token", method="POST", body=body, headers=FORM))[0] == 429
    assert (await call(app, "/a/token", method="POST",
                       headers=_basic("app-two")))[0] == 200


async def test_a_flood_from_one_address_does_not_use_up_the_clients_budget() -> None:
    """Requests refused for their address do not count against the client."""
    app, _ = _limited(MemoryRateLimiter(), authorize=5, client_authorize=20)
    q = urlencode({"client_id": "popular-app"})
    results = [(await call(app, "/a/authorize", query=q, client="198.51.100.1"))[0]
               for _ in range(200)]
    assert results.count(200) == 5
    for i in range(15):  # fifteen people elsewhere still get in
        assert (await call(app, "/a/authorize", query=q, client=f"203.0.113.{i}"))[0] == 200


async def test_large_or_odd_token_bodies_pass_through_unchanged() -> None:
    app, _ = _limited(MemoryRateLimiter(), token=100, client_token=1)
    big = b"client_id=x&pad=" + b"a" * 40_000
    for _ in range(3):  # over 16 KiB: not parsed, not counted per client, replayed whole
        status, _, echoed = await call(app, "/a/token", method="POST", body=big,
                                       headers=FORM, chunk=4096)
        assert status == 200 and echoed == big
    for body in (b"\xff\xfe=%%%", b"client_id", b"=&=&"):
        status, _, echoed = await call(app, "/a/token", method="POST", body=body,
                                       headers=FORM)
        assert status == 200 and echoed == body
    multipart = [(b"content-type", b"multipart/form-data; boundary=x")]
    status, _, echoed = await call(app, "/a/token", method="POST", body=b"client_id=x",
                                   headers=multipart)
    assert status == 200 and echoed == b"client_id=x"


@given(st.binary(max_size=300), st.text(max_size=60), st.text(max_size=60))
async def test_hostile_input_never_breaks_the_middleware(body: bytes, query: str,
                                                         auth: str) -> None:
    app, _ = _limited(MemoryRateLimiter(), token=1000, client_token=1000,
                      authorize=1000, client_authorize=1000)
    headers = [*FORM, (b"authorization", auth.encode("utf-8", "replace"))]
    status, _, echoed = await call(app, "/a/token", method="POST", body=body, headers=headers)
    assert status == 200 and echoed == body
    assert (await call(app, "/a/authorize", query=query))[0] == 200


async def test_memory_limiter_is_bounded() -> None:
    limiter = MemoryRateLimiter(max_entries=100)
    app, _ = _limited(limiter, authorize=1000, client_authorize=5)
    for i in range(2000):
        await call(app, "/a/authorize", query=f"client_id=random-{i}", client=f"10.0.{i % 7}.1")
        assert len(limiter) <= 100


# --------------------------------------------------------------------------- Redis


@pytest.fixture
async def redis_client() -> AsyncIterator[tuple[Redis, str]]:
    client = connect_redis(RedisSettings(url="redis://127.0.0.1:6379/0"))
    prefix = f"test-rl-{uuid.uuid4().hex}:"
    try:
        yield client, prefix
    finally:
        keys = [k async for k in client.scan_iter(match=prefix.rstrip(":") + "-rl:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.mark.redis
async def test_two_limiters_share_one_redis(redis_client: tuple[Redis, str]) -> None:
    client, prefix = redis_client
    other = connect_redis(RedisSettings(url="redis://127.0.0.1:6379/0"))
    try:
        # sync_interval=0: every count goes to Redis at once (exact sharing)
        first, _ = _limited(RedisRateLimiter(client, prefix=prefix, sync_interval=0), token=4)
        second, _ = _limited(RedisRateLimiter(other, prefix=prefix, sync_interval=0), token=4)
        statuses = [(await call(app, "/a/token", method="POST"))[0]
                    for app in (first, second, first, second, first, second)]
        assert statuses == [200, 200, 200, 200, 429, 429]
        status, headers, _ = await call(first, "/a/token", method="POST")
        assert status == 429 and 55 <= int(headers[b"retry-after"]) <= 60
        keys = [k async for k in client.scan_iter(match=prefix.rstrip(":") + "-rl:*")]
        assert len(keys) == 1 and b"192.0.2.1" not in keys[0]  # hashed, not the address
        ttl = await client.pttl(keys[0])
        assert 0 < ttl <= 60_000
        assert (await call(first, "/a/token", method="POST", client="192.0.2.2"))[0] == 200
    finally:
        await other.aclose()


@pytest.mark.redis
async def test_redis_counts_stop_at_the_address_limit(redis_client: tuple[Redis, str]) -> None:
    client, prefix = redis_client
    app, _ = _limited(RedisRateLimiter(client, prefix=prefix, sync_interval=0), authorize=3,
                      client_authorize=10)
    q = "client_id=shared"
    results = [(await call(app, "/a/authorize", query=q, client="198.51.100.1"))[0]
               for _ in range(30)]
    assert results.count(200) == 3
    for i in range(7):
        assert (await call(app, "/a/authorize", query=q, client=f"203.0.113.{i}"))[0] == 200
    assert (await call(app, "/a/authorize", query=q, client="203.0.113.99"))[0] == 429


@pytest.mark.redis
async def test_redis_failure_falls_back_to_per_process_counts(
        caplog: pytest.LogCaptureFixture) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gone = connect_redis(RedisSettings(url=f"redis://127.0.0.1:{port}/0",
                                       connect_timeout=0.3))
    try:
        app, inner = _limited(RedisRateLimiter(gone, sync_interval=0), token=2)
        statuses = [(await call(app, "/a/token", method="POST"))[0] for _ in range(4)]
        assert statuses == [200, 200, 429, 429]  # the process's own counts still limit
        assert inner.calls == 2
        warnings = [r for r in caplog.records if "count per process only" in r.message]
        assert len(warnings) == 1  # once, not per request
    finally:
        await gone.aclose()


@pytest.mark.redis
async def test_periodic_sync_shares_counts_between_processes(
        redis_client: tuple[Redis, str]) -> None:
    """With the default periodic sync, one process refuses at once what it counted itself,
    and another process sees those counts after the next sync."""
    client, prefix = redis_client
    other = connect_redis(RedisSettings(url="redis://127.0.0.1:6379/0"))
    first_limiter = RedisRateLimiter(client, prefix=prefix, sync_interval=0.05)
    second_limiter = RedisRateLimiter(other, prefix=prefix, sync_interval=0.05)
    try:
        first, _ = _limited(first_limiter, token=3)
        second, _ = _limited(second_limiter, token=3)
        statuses = [(await call(first, "/a/token", method="POST"))[0] for _ in range(4)]
        assert statuses == [200, 200, 200, 429]  # refused locally, before any sync
        await asyncio.sleep(0.2)  # the first process has sent its counts
        # the second learns the total with its own first sync: at most one interval's
        # requests pass late, then it refuses too
        await call(second, "/a/token", method="POST")
        await asyncio.sleep(0.2)
        assert (await call(second, "/a/token", method="POST"))[0] == 429
        keys = [k async for k in client.scan_iter(match=prefix.rstrip(":") + "-rl:*")]
        assert len(keys) == 1 and int(await client.get(keys[0])) >= 5
    finally:
        await first_limiter.aclose()
        await second_limiter.aclose()
        await other.aclose()


@pytest.mark.redis
@pytest.mark.slow
async def test_real_flood_from_127_0_0_2_spares_127_0_0_1(
        redis_client: tuple[Redis, str]) -> None:
    """Over real sockets through uvicorn: the flood's source address is 127.0.0.2."""
    client, prefix = redis_client
    app, _ = _limited(RedisRateLimiter(client, prefix=prefix), authorize=10)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{port}/demo/authorize"
        flood = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2"))
        person = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address="127.0.0.1"))
        async with flood, person:
            answers = await asyncio.gather(*(flood.get(url) for _ in range(60)))
            codes = [r.status_code for r in answers]
            assert codes.count(200) == 10 and codes.count(429) == 50
            limited = next(r for r in answers if r.status_code == 429)
            assert limited.headers["retry-after"] and limited.headers["x-frame-options"]
            for _ in range(5):
                assert (await person.get(url)).status_code == 200
    finally:
        server.should_exit = True
        await serving
        sock.close()


@pytest.mark.slow
def test_the_demo_broker_is_rate_limited_with_security_headers(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    """Wired in runtime/compose.py: the demo (memory limiter, the embedded shape) answers
    the fourth authorize from one address with 429 and the security headers, and the
    Guard's headers are on the answers that pass."""
    from e2e.harness import DemoThread
    from healthid_broker.demo.run import DemoConfig

    t = DemoThread(DemoConfig(host="127.0.0.1", port=0, data_dir=tmp_path_factory.mktemp("rl"),
                              rate_limits=RateLimits.parse(["authorize=3"])))
    info = t.start()
    try:
        url = f"{info['broker_browser_base']}/demo/authorize"
        with httpx.Client() as c:
            codes = [c.get(url, params={"client_id": info["client_id"]}).status_code
                     for _ in range(3)]
            assert 429 not in codes
            limited = c.get(url, params={"client_id": info["client_id"], "lang": "en"})
        assert limited.status_code == 429 and "Too many requests" in limited.text
        assert limited.headers["retry-after"]
        assert limited.headers["content-security-policy"].startswith("default-src 'none'")
        assert limited.headers["x-frame-options"] == "DENY"
        assert limited.headers["cache-control"] == "no-store"
        assert f"{info['broker_browser_base']}/static/broker.css" in limited.text
    finally:
        t.stop()
