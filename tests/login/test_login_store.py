"""Transient store: memory backend with a fake clock, Redis against the real server,
atomic take under concurrency, TTL limits, a full or unreachable store (StoreFull /
StoreUnavailable, one command per refused write), and the typed LoginStore (with size)."""

from __future__ import annotations

import asyncio
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redis.asyncio import Redis

from healthid_broker.login import (
    AppRequest,
    LoginStore,
    MemoryBackend,
    SealedStore,
    Sealer,
    SealError,
    StoreFull,
    StoreUnavailable,
    TransientStore,
    TTLRefused,
    choose_idp,
    issue_code,
    memory_store,
    redis_store,
    send_upstream,
    start,
)
from healthid_broker.login.store import RedisBackend
from healthid_broker.runtime.redis import RedisSettings, connect_redis
from healthid_broker.upstream.pending import PendingLogin

pytestmark = pytest.mark.anyio


class FakeClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


SEALER = Sealer({1: os.urandom(32)}, 1, os.urandom(32))


# --------------------------------------------------------------------------- memory


async def test_memory_ttl_with_fake_clock() -> None:
    clock = FakeClock()
    store = memory_store(SEALER, clock=clock)
    await store.put("p", "k", b"v", ttl=10)
    assert await store.get("p", "k") == b"v"
    clock.t += 9.99
    assert await store.get("p", "k") == b"v"
    clock.t += 0.01
    assert await store.get("p", "k") is None
    assert await store.add_if_absent("r", "jti", ttl=5)
    assert not await store.add_if_absent("r", "jti", ttl=5)
    clock.t += 5
    assert await store.add_if_absent("r", "jti", ttl=5)


async def test_ttl_limit() -> None:
    store = memory_store(SEALER)
    for bad in (0, -1, 600.001, 3600, float("nan")):
        with pytest.raises(TTLRefused):
            await store.put("p", "k", b"v", ttl=bad)
        with pytest.raises(TTLRefused):
            await store.add_if_absent("p", "k", ttl=bad)
    await store.put("p", "k", b"v", ttl=600)


async def test_memory_bounded_with_clear_error() -> None:
    clock = FakeClock()
    store = memory_store(SEALER, clock=clock, max_entries=2)
    await store.put("p", "a", b"1", ttl=1)
    await store.put("p", "b", b"2", ttl=100)
    await store.put("p", "b", b"3", ttl=100)  # overwrite needs no room
    with pytest.raises(StoreFull, match="maximum of 2"):
        await store.put("p", "c", b"3", ttl=100)
    clock.t += 1  # "a" expires → room again
    await store.put("p", "c", b"3", ttl=100)


async def test_backend_never_sees_plaintext_or_raw_keys() -> None:
    backend = MemoryBackend()
    store = SealedStore(backend, SEALER)
    await store.put("login.code", "RAW-CODE-123", b"SECRET-CLAIM", ttl=60)
    items = backend.raw_items()
    assert len(items) == 1
    ((bkey, value),) = items.items()
    assert "RAW-CODE-123" not in bkey and b"SECRET-CLAIM" not in value


async def test_entry_cannot_be_moved_to_another_purpose() -> None:
    backend = MemoryBackend()
    store = SealedStore(backend, SEALER)
    await store.put("login.upstream", "k", b"v", ttl=60)
    ((_bkey, value),) = backend.raw_items().items()
    # an attacker with write access to the backend copies the entry under another purpose
    await backend.put(f"login.code:{SEALER.index('login.code', 'k')}", value, 60_000)
    with pytest.raises(SealError):
        await store.get("login.code", "k")


async def test_store_layout_is_the_sealers_public_one() -> None:
    backend = MemoryBackend()
    store = SealedStore(backend, SEALER)
    await store.put("login.code", "the-code", b"value", ttl=60)
    ((bkey, sealed),) = backend.raw_items().items()
    assert bkey == f"login.code:{SEALER.index('login.code', 'the-code')}"
    assert SEALER.open("login.code", "the-code", sealed) == b"value"
    # and an entry sealed through the public API is read back by the store
    await backend.put(f"p:{SEALER.index('p', 'k')}", SEALER.seal("p", "k", b"v2"), 60_000)
    assert await store.get("p", "k") == b"v2"
    assert await store.take("p", "k") == b"v2"
    assert await store.take("p", "k") is None


async def test_store_refuses_bad_purpose_or_key_before_the_backend() -> None:
    class Untouchable(MemoryBackend):
        async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
            raise AssertionError("backend called")

        async def get(self, key: str) -> bytes | None:
            raise AssertionError("backend called")

        async def take(self, key: str) -> bytes | None:
            raise AssertionError("backend called")

        async def delete(self, key: str) -> None:
            raise AssertionError("backend called")

        async def add_if_absent(self, key: str, ttl_ms: int) -> bool:
            raise AssertionError("backend called")

    store = SealedStore(Untouchable(), SEALER)
    for purpose, key, what in (("Bad", "k", "purpose"), ("Bad", "", "purpose"),
                               ("p", "", "store key")):
        with pytest.raises(TTLRefused):  # the TTL is checked first, as before
            await store.put(purpose, key, b"v", ttl=0)
        with pytest.raises(SealError, match=what):
            await store.put(purpose, key, b"v", ttl=1)
        for op in (store.get, store.take, store.delete):
            with pytest.raises(SealError, match=what):
                await op(purpose, key)
        with pytest.raises(SealError, match=what):
            await store.add_if_absent(purpose, key, ttl=1)


# --------------------------------------------------------------------------- redis


@pytest.fixture
async def redis_prefix() -> AsyncIterator[tuple[Redis, str]]:
    client = connect_redis(RedisSettings(url="redis://127.0.0.1:6379/0"))
    prefix = f"test-login-{uuid.uuid4().hex}:"
    try:
        yield client, prefix
    finally:
        keys = [k async for k in client.scan_iter(match=prefix + "*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


@pytest.mark.redis
async def test_redis_store_real_server(redis_prefix: tuple[Redis, str]) -> None:
    client, prefix = redis_prefix
    code = "an-authorization-code-that-must-not-appear-in-redis"
    store = redis_store(client, SEALER, prefix=prefix)
    await store.put("login.code", code, b"value", ttl=60)
    raw_keys = [k async for k in client.scan_iter(match=prefix + "*")]
    assert len(raw_keys) == 1 and code.encode() not in raw_keys[0]
    raw = await client.get(raw_keys[0])
    assert raw is not None and b"value" not in raw
    pttl = await client.pttl(raw_keys[0])
    assert 0 < pttl <= 60_000
    assert await store.get("login.code", code) == b"value"
    assert await store.take("login.code", code) == b"value"
    assert await store.take("login.code", code) is None
    await store.put("p", "d", b"x", ttl=60)
    await store.delete("p", "d")
    assert await store.get("p", "d") is None
    assert await store.add_if_absent("client.jti", "j", ttl=60)
    assert not await store.add_if_absent("client.jti", "j", ttl=60)
    # Redis expires entries itself
    await store.put("p", "short", b"x", ttl=0.05)
    await asyncio.sleep(0.15)
    assert await store.get("p", "short") is None


@pytest.mark.redis
async def test_redis_rejects_decoding_client(redis_prefix: tuple[Redis, str]) -> None:
    _, prefix = redis_prefix
    decoding = Redis(host="127.0.0.1", port=6379, decode_responses=True)
    try:
        backend = RedisBackend(decoding, prefix=prefix)
        await backend.put("k", b"v", 1000)
        with pytest.raises(Exception, match="decode_responses"):
            await backend.get("k")
    finally:
        await decoding.aclose()


async def _concurrent_take(store: TransientStore) -> None:
    for round_ in range(5):
        key = f"code-{round_}"
        await store.put("login.code", key, b"once", ttl=30)
        results = await asyncio.gather(*(store.take("login.code", key) for _ in range(50)))
        assert results.count(b"once") == 1
        assert results.count(None) == 49


async def test_concurrent_take_exactly_once_memory() -> None:
    await _concurrent_take(memory_store(SEALER))


@pytest.mark.redis
async def test_concurrent_take_exactly_once_redis(redis_prefix: tuple[Redis, str]) -> None:
    client, prefix = redis_prefix
    # separate connections from the pool race for the same key
    await _concurrent_take(redis_store(client, SEALER, prefix=prefix))


# --------------------------------------------------------------------------- LoginStore

APP = AppRequest(
    application="https://broker.example/0f3a9c2b",
    client_id="https://app.example.de/client/mobile-android",
    redirect_uri="https://app.example.de/oauth/callback/gesundheitsid",
    scopes=("openid", "urn:telematik:versicherter", "urn:telematik:display_name",
            "urn:telematik:geburtsdatum", "urn:telematik:email"),
    state="Qm9iIGlzIGEgbmljZSBndXkgYW5kIHRoaXMgaXMgYSBzdGF0ZQ",
    nonce="bm9uY2Utbm9uY2Utbm9uY2Utbm9uY2Utbm9uY2Utbm9uY2U",
    code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    code_challenge_method="S256",
    acr_values=("gematik-ehealth-loa-high",),
)
IDP = "https://idp.kk-sandbox.example/oidc/insurance-company-with-a-long-name"
CLAIMS = {
    "urn:telematik:claims:id": "X110411675",
    "urn:telematik:claims:organization": "109500969",
    "urn:telematik:claims:profession": "1.2.276.0.76.4.49",
    "urn:telematik:claims:display_name": "Dr. Maximiliane Musterfrau-Beispielname",
    "birthdate": "1984-07-12",
    "urn:telematik:claims:email": "maximiliane.musterfrau@beispiel-krankenkasse.example",
}


async def test_login_store_lifecycle_and_size(capsys: pytest.CaptureFixture[str]) -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock)
    store = LoginStore(SealedStore(backend, SEALER))
    now = clock.t
    started = choose_idp(start(APP, txn_id=str(uuid.uuid4()), now=now), IDP, now=now)
    assert await store.put_started(started, now=now)
    assert await store.take_started(started.txn_id, now=now) == started
    assert await store.take_started(started.txn_id, now=now) is None

    # the upstream room's pending value: its format (upstream/pending.py), at full size
    upstream = PendingLogin(IDP, "n" * 43, "v" * 43, APP.application + "/callback").encode()
    pending = send_upstream(started, upstream=upstream, now=now)
    state = "s" * 43
    await store.put_pending(state, pending, now=now)
    sizes = {"upstream_pending": sum(len(k) + len(v) for k, v in backend.raw_items().items())}
    assert await store.take_pending(state, now=now) == pending
    assert await store.take_pending(state, now=now) is None

    code_txn = issue_code(
        pending, subject="y" * 43, claims=CLAIMS, acr="gematik-ehealth-loa-high",
        amr=["urn:telematik:auth:eGK"], auth_time=int(now), now=now,
    )
    code = "c" * 43
    await store.put_code(code, code_txn, now=now)
    sizes["code_issued"] = sum(len(k) + len(v) for k, v in backend.raw_items().items())
    with capsys.disabled():
        print(f"\n[bench] transient store bytes per in-flight login (key+sealed value): {sizes}")
    assert max(sizes.values()) <= 2048  # benchmark target: ≤ 2 KiB per in-flight login

    # the code's TTL is ≤ 60 s even though the login deadline is later
    clock.t += 60
    assert await store.take_code(code, now=clock.t) is None


async def test_login_store_refuses_expired_and_respects_deadline() -> None:
    clock = FakeClock()
    store = LoginStore(SealedStore(MemoryBackend(clock=clock), SEALER))
    started = start(APP, txn_id="t", now=0, idp=IDP)
    assert not await store.put_started(started, now=600)  # past deadline: nothing saved
    started = start(APP, txn_id="t", now=clock.t, idp=IDP)
    await store.put_started(started, now=clock.t)
    # a wall clock ahead of the store's clock still refuses an overdue transaction
    assert await store.take_started("t", now=clock.t + 600) is None


async def test_login_store_states_cannot_be_confused() -> None:
    backend = MemoryBackend()
    store = LoginStore(SealedStore(backend, SEALER))
    started = start(APP, txn_id="same-key", now=0, idp=IDP)
    await store.put_started(started, now=0)
    assert await store.take_code("same-key", now=0) is None
    assert await store.take_pending("same-key", now=0) is None


# --------------------------------------------------------------------------- a full store


async def test_memory_refused_write_costs_o1() -> None:
    """A full memory store refuses a write without scanning its live entries: refusing
    with 200 000 live entries costs about what it costs with 200 (a scan would be ~1000×)."""

    async def refusal_seconds(n: int) -> float:
        backend = MemoryBackend(max_entries=n)
        for i in range(n):
            await backend.put(f"k{i}", b"v", 600_000)
        with pytest.raises(StoreFull):
            await backend.put("one-more", b"v", 600_000)
        start = time.perf_counter()
        for _ in range(2000):
            try:
                await backend.put("one-more", b"v", 600_000)
            except StoreFull:
                pass
        return time.perf_counter() - start

    small = min([await refusal_seconds(200) for _ in range(3)])
    large = min([await refusal_seconds(200_000) for _ in range(2)])
    assert large < 20 * small + 0.01, (small, large)


async def test_memory_expired_entries_make_room_after_overwrites_and_deletes() -> None:
    clock = FakeClock()
    backend = MemoryBackend(clock=clock, max_entries=3)
    for round_ in range(50):  # overwrites and deletes leave stale heap entries behind
        await backend.put("a", b"x", 1000)
        await backend.put("a", b"y", 5000)
        await backend.delete("a")
        await backend.put("b", b"z", 1000 + round_)
    assert len(backend._expiries) <= 2 * len(backend._data) + 64
    await backend.put("c", b"1", 1000)
    await backend.put("d", b"1", 100_000)
    with pytest.raises(StoreFull):
        await backend.put("e", b"1", 1000)
    clock.t += 1.01  # "c" expired; "b" (1049 ms) is still live
    await backend.put("e", b"1", 1000)
    assert await backend.get("b") == b"z" and await backend.get("d") == b"1"
    with pytest.raises(StoreFull):
        await backend.add_if_absent("f", 1000)


def _commandstat(info: dict[str, Any], command: str) -> dict[str, int]:
    stat = info.get(f"cmdstat_{command}", {})
    return {k: int(v) for k, v in stat.items() if k in ("calls", "rejected_calls",
                                                          "failed_calls")}


@pytest.mark.redis
@pytest.mark.slow
async def test_redis_oom_is_store_full_with_one_command_per_refusal(redis_server: Any) -> None:
    """A Redis at ``maxmemory`` (noeviction) refuses writes with an OOM error reply: the
    store raises StoreFull, each refused write is exactly one rejected SET (no retries),
    and reads and takes of entries already stored keep working."""
    port = redis_server("--maxmemory", "2mb", "--maxmemory-policy", "noeviction")
    client = connect_redis(RedisSettings(url=f"redis://127.0.0.1:{port}/0"))
    store = redis_store(client, SEALER, prefix="oom:")
    stored: list[str] = []
    try:
        with pytest.raises(StoreFull, match="OOM"):
            for i in range(10_000):
                await store.put("login.code", f"code-{i}", os.urandom(8192), ttl=600)
                stored.append(f"code-{i}")
        assert stored, "the server was full before the first write"
        before = _commandstat(await client.info("commandstats"), "set")
        for i in range(25):
            with pytest.raises(StoreFull):
                await store.put("login.code", f"refused-{i}", b"v", ttl=600)
            with pytest.raises(StoreFull):
                await store.add_if_absent("client.jti", f"refused-{i}", ttl=600)
        after = _commandstat(await client.info("commandstats"), "set")
        assert after["calls"] == before["calls"]  # refused before running
        assert after["rejected_calls"] - before["rejected_calls"] == 50  # one per refusal
        # the logins already in flight can finish
        assert await store.get("login.code", stored[0]) is not None
        assert await store.take("login.code", stored[-1]) is not None
        assert await store.take("login.code", stored[-1]) is None
        await store.delete("login.code", stored[0])
    finally:
        await client.aclose()


@pytest.mark.redis
async def test_unreachable_redis_is_store_unavailable_without_retry_storm() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = connect_redis(RedisSettings(url=f"redis://127.0.0.1:{port}/0",
                                         connect_timeout=0.5, command_timeout=0.5))
    store = redis_store(client, SEALER, prefix="gone:")
    try:
        start = time.perf_counter()
        with pytest.raises(StoreUnavailable, match="unreachable"):
            await store.put("p", "k", b"v", ttl=60)
        for op in (store.get, store.take, store.delete):
            with pytest.raises(StoreUnavailable):
                await op("p", "k")
        with pytest.raises(StoreUnavailable):
            await store.add_if_absent("p", "k", ttl=60)
        assert time.perf_counter() - start < 3
    finally:
        await client.aclose()


@pytest.mark.redis
@pytest.mark.slow
async def test_redis_timeout_is_store_unavailable_after_one_timeout(redis_server: Any) -> None:
    """A command that gets no answer within the command timeout fails once (a timed-out
    write is never re-sent) with StoreUnavailable."""
    port = redis_server()
    admin = Redis(host="127.0.0.1", port=port)
    client = connect_redis(RedisSettings(url=f"redis://127.0.0.1:{port}/0",
                                         command_timeout=0.3))
    store = redis_store(client, SEALER, prefix="slow:")
    try:
        await store.put("p", "warm", b"v", ttl=60)  # the pooled connection exists
        connections = (await admin.info("stats"))["total_connections_received"]
        await admin.execute_command("CLIENT", "PAUSE", "1500", "WRITE")
        start = time.perf_counter()
        with pytest.raises(StoreUnavailable, match="in time"):
            await store.put("p", "k", b"v", ttl=60)
        elapsed = time.perf_counter() - start
        assert 0.25 < elapsed < 0.55, elapsed  # one timeout, not one per retry
        # no second connection was opened to re-send the write
        assert (await admin.info("stats"))["total_connections_received"] == connections
    finally:
        await client.aclose()
        await admin.aclose()
