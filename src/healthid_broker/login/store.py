"""The transient store: short-lived, sealed entries for in-flight logins (T-01, T-02 in
docs/toms.md).

Two layers:

* a **backend** (:class:`TransientBackend`) that keeps opaque bytes under opaque keys
  with a TTL — :class:`MemoryBackend` (embedded default) or :class:`RedisBackend`
  (scale-out; ``redis.asyncio``);
* the **store** (:class:`TransientStore` protocol, implemented by :class:`SealedStore`)
  that consumers use with ``(purpose, key)`` pairs. It hashes keys with HMAC and seals
  every value with AES-256-GCM before the backend sees it (see :mod:`.sealing`), and
  refuses TTLs above :data:`MAX_TTL` (10 minutes, T-01).

``take`` is an atomic get-and-delete (Redis ``GETDEL``), so an authorization code or a
``state`` can be consumed exactly once even with many broker processes.
``add_if_absent`` is the replay guard (Redis ``SET NX PX``) used e.g. for the ``jti`` of
client assertions (RFC 7523 §3 rule 7).

A full store raises :class:`StoreFull`, an unreachable or slow one
:class:`StoreUnavailable` (both :class:`StoreError`); the web layer answers either with 503.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable
from typing import Protocol, runtime_checkable

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .errors import StoreError, StoreFull, StoreUnavailable, TTLRefused
from .sealing import Sealer, store_fields

__all__ = [
    "MAX_TTL",
    "MemoryBackend",
    "RedisBackend",
    "SealedStore",
    "TransientBackend",
    "TransientStore",
    "check_ttl",
    "memory_store",
    "redis_store",
]

MAX_TTL = 600.0
"""Upper bound for every transient entry, seconds (T-01: ≤ 10 minutes)."""


def check_ttl(ttl: float) -> int:
    """Validate ``ttl`` (seconds) and return it in whole milliseconds (rounded up)."""
    # a tuple, not ``int | float``: that expression builds a union object on every call
    if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or math.isnan(ttl):
        raise TTLRefused("TTL must be a number of seconds")
    if ttl <= 0:
        raise TTLRefused(f"TTL must be positive, got {ttl}")
    if ttl > MAX_TTL:
        raise TTLRefused(
            f"TTL {ttl} s exceeds the {MAX_TTL:.0f} s limit for transient login data (T-01)"
        )
    return max(1, math.ceil(ttl * 1000))


@runtime_checkable
class TransientBackend(Protocol):
    """Opaque bytes under opaque string keys with a TTL in milliseconds."""

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def take(self, key: str) -> bytes | None: ...

    async def delete(self, key: str) -> None: ...

    async def add_if_absent(self, key: str, ttl_ms: int) -> bool: ...


@runtime_checkable
class TransientStore(Protocol):
    """What login and provider code use. Values are bytes; TTLs are seconds ≤ 600."""

    async def put(self, purpose: str, key: str, value: bytes, ttl: float) -> None: ...

    async def get(self, purpose: str, key: str) -> bytes | None: ...

    async def take(self, purpose: str, key: str) -> bytes | None: ...

    async def delete(self, purpose: str, key: str) -> None: ...

    async def add_if_absent(self, purpose: str, key: str, ttl: float) -> bool: ...


class MemoryBackend:
    """In-process backend: a dict with expiry times from an injectable clock.

    Bounded to ``max_entries`` live entries; when full (after dropping expired ones)
    ``put``/``add_if_absent`` raise :class:`StoreFull` rather than evicting a login in
    flight. Expiry times also sit in a min-heap, so making room pops only what has expired
    and a refused write costs O(1) — no scan over the live entries (T-27). Every method runs
    without awaiting, so each is atomic under asyncio. Not shared between processes: use
    Redis for more than one broker process.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_entries: int = 100_000
    ) -> None:
        if max_entries < 1:
            raise StoreError("max_entries must be at least 1")
        self._clock = clock
        self._max = max_entries
        self._data: dict[str, tuple[float, bytes]] = {}
        # (expiry, key) per write; entries whose key was overwritten or deleted since are
        # skipped when popped, and the heap is rebuilt when they outnumber the live ones
        self._expiries: list[tuple[float, str]] = []

    def __len__(self) -> int:
        self.purge_expired()
        return len(self._data)

    def purge_expired(self) -> int:
        """Drop every expired entry; cost proportional to the number dropped."""
        now = self._clock()
        heap, data = self._expiries, self._data
        dropped = 0
        while heap and heap[0][0] <= now:
            exp, key = heapq.heappop(heap)
            item = data.get(key)
            if item is not None and item[0] == exp:
                del data[key]
                dropped += 1
        return dropped

    def _live(self, key: str) -> bytes | None:
        item = self._data.get(key)
        if item is None:
            return None
        if item[0] <= self._clock():
            del self._data[key]
            return None
        return item[1]

    def _make_room(self, key: str) -> None:
        if key in self._data or len(self._data) < self._max:
            return
        self.purge_expired()
        if len(self._data) >= self._max:
            raise StoreFull(
                f"the in-memory transient store holds its maximum of {self._max} live "
                "entries; raise max_entries or use the Redis store"
            )

    def _set(self, key: str, value: bytes, ttl_ms: int) -> None:
        exp = self._clock() + ttl_ms / 1000
        self._data[key] = (exp, value)
        heap = self._expiries
        heapq.heappush(heap, (exp, key))
        if len(heap) > 2 * len(self._data) + 64:  # stale heap entries: rebuild, amortised
            self._expiries = [(e, k) for k, (e, _) in self._data.items()]
            heapq.heapify(self._expiries)

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        self._make_room(key)
        self._set(key, bytes(value), ttl_ms)

    async def get(self, key: str) -> bytes | None:
        return self._live(key)

    async def take(self, key: str) -> bytes | None:
        value = self._live(key)
        if value is not None:
            del self._data[key]
        return value

    async def delete(self, key: str) -> None:
        self._data.pop(key, None)

    async def add_if_absent(self, key: str, ttl_ms: int) -> bool:
        if self._live(key) is not None:
            return False
        self._make_room(key)
        self._set(key, b"", ttl_ms)
        return True

    def raw_items(self) -> dict[str, bytes]:
        """The stored (sealed) bytes by backend key — for tests and the benchmark."""
        self.purge_expired()
        return {k: v for k, (_, v) in self._data.items()}


class RedisBackend:
    """Redis backend over a redis-py asyncio client (built by
    :func:`healthid_broker.runtime.redis.connect_redis`); every key is ``prefix`` + the
    hashed key.

    Uses ``SET … PX`` (put), ``GET``, ``GETDEL`` (atomic take, Redis ≥ 6.2), ``DEL``
    and ``SET … NX PX`` (add_if_absent). Redis expires entries itself.

    Failures become the store's own errors, each after one command (the client's retry
    policy is set by the factory: no retry on timeouts): Redis refusing a write because
    ``maxmemory`` is reached (an ``OOM`` error reply) → :class:`StoreFull`; an unreachable
    server, a timeout or any other error reply → :class:`StoreUnavailable`. Messages name
    the operation, never a key or a value.
    """

    def __init__(self, client: Redis, *, prefix: str = "hidb:") -> None:
        if not prefix:
            raise StoreError("a Redis key prefix is required (e.g. 'hidb:')")
        self._r = client
        self._prefix = prefix

    @property
    def prefix(self) -> str:
        return self._prefix

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        try:
            await self._r.set(self._prefix + key, value, px=ttl_ms)
        except (RedisError, OSError) as exc:
            raise _store_error("write", exc) from None

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._r.get(self._prefix + key)
        except (RedisError, OSError) as exc:
            raise _store_error("read", exc) from None
        return _as_bytes(value)

    async def take(self, key: str) -> bytes | None:
        try:
            value = await self._r.getdel(self._prefix + key)
        except (RedisError, OSError) as exc:
            raise _store_error("take", exc) from None
        return _as_bytes(value)

    async def delete(self, key: str) -> None:
        try:
            await self._r.delete(self._prefix + key)
        except (RedisError, OSError) as exc:
            raise _store_error("delete", exc) from None

    async def add_if_absent(self, key: str, ttl_ms: int) -> bool:
        try:
            return bool(await self._r.set(self._prefix + key, b"1", px=ttl_ms, nx=True))
        except (RedisError, OSError) as exc:
            raise _store_error("write", exc) from None


def _store_error(operation: str, exc: BaseException) -> StoreError:
    """The store's error for a Redis failure; the message carries the type, not the text
    (a server's reply could quote a key)."""
    # redis-py maps the "OOM …" error reply to OutOfMemoryError; the prefix check covers a
    # client version that leaves it a plain ResponseError
    if isinstance(exc, OutOfMemoryError) or (
            isinstance(exc, ResponseError) and str(exc).startswith("OOM")):
        return StoreFull(f"Redis refused the {operation}: maxmemory reached (OOM)")
    if isinstance(exc, RedisTimeoutError | TimeoutError):
        return StoreUnavailable(f"Redis did not answer the {operation} in time")
    if isinstance(exc, RedisConnectionError | OSError):
        return StoreUnavailable(f"Redis is unreachable ({operation}: {type(exc).__name__})")
    return StoreUnavailable(f"Redis failed the {operation}: {type(exc).__name__}")


def _as_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value
    raise StoreError("the Redis client must not decode responses (decode_responses=False)")


class SealedStore:
    """The :class:`TransientStore` implementation: HMAC'd keys, AES-256-GCM values."""

    def __init__(self, backend: TransientBackend, sealer: Sealer) -> None:
        self._backend = backend
        self._sealer = sealer

    @property
    def backend(self) -> TransientBackend:
        return self._backend

    # Purpose and key are checked and encoded once per operation (store_fields) and used for
    # both the index and the AEAD; same checks, in the same order, as Sealer's public methods.

    def _bkey(self, purpose: str, fields: tuple[bytes, bytes]) -> str:
        return f"{purpose}:{self._sealer.index_of(fields)}"

    async def put(self, purpose: str, key: str, value: bytes, ttl: float) -> None:
        ttl_ms = check_ttl(ttl)
        fields = store_fields(purpose, key)
        sealed = self._sealer.seal_with(fields, value)
        await self._backend.put(self._bkey(purpose, fields), sealed, ttl_ms)

    async def get(self, purpose: str, key: str) -> bytes | None:
        fields = store_fields(purpose, key)
        sealed = await self._backend.get(self._bkey(purpose, fields))
        return None if sealed is None else self._sealer.open_with(fields, sealed)

    async def take(self, purpose: str, key: str) -> bytes | None:
        fields = store_fields(purpose, key)
        sealed = await self._backend.take(self._bkey(purpose, fields))
        return None if sealed is None else self._sealer.open_with(fields, sealed)

    async def delete(self, purpose: str, key: str) -> None:
        await self._backend.delete(self._bkey(purpose, store_fields(purpose, key)))

    async def add_if_absent(self, purpose: str, key: str, ttl: float) -> bool:
        ttl_ms = check_ttl(ttl)
        return await self._backend.add_if_absent(
            self._bkey(purpose, store_fields(purpose, key)), ttl_ms)


def memory_store(
    sealer: Sealer | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
    max_entries: int = 100_000,
) -> SealedStore:
    """The embedded default: an in-memory backend behind sealing."""
    return SealedStore(
        MemoryBackend(clock=clock, max_entries=max_entries), sealer or Sealer.generate()
    )


def redis_store(client: Redis, sealer: Sealer, *, prefix: str = "hidb:") -> SealedStore:
    """The scale-out store. All broker processes must share ``sealer``'s keys."""
    return SealedStore(RedisBackend(client, prefix=prefix), sealer)

