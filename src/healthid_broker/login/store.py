"""The transient store: short-lived, sealed entries for in-flight logins (TOMS T-01, T-02).

Two layers:

* a **backend** (:class:`TransientBackend`) that keeps opaque bytes under opaque keys
  with a TTL — :class:`MemoryBackend` (embedded default) or :class:`RedisBackend`
  (scale-out; ``redis.asyncio``);
* the **store** (:class:`TransientStore` protocol, implemented by :class:`SealedStore`)
  that consumers use with ``(purpose, key)`` pairs. It hashes keys with HMAC and seals
  every value with AES-256-GCM before the backend sees it (see :mod:`.sealing`), and
  refuses TTLs above :data:`MAX_TTL` (10 minutes, DESIGN.md "Data categories").

``take`` is an atomic get-and-delete (Redis ``GETDEL``), so an authorization code or a
``state`` can be consumed exactly once even with many broker processes.
``add_if_absent`` is the replay guard (Redis ``SET NX PX``) used e.g. for the ``jti`` of
client assertions (RFC 7523 §3 rule 7).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .errors import StoreError, StoreFull, TTLRefused
from .sealing import Sealer, store_fields

if TYPE_CHECKING:
    from redis.asyncio import Redis

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
    flight. Every method runs without awaiting, so each is atomic under asyncio.
    Not shared between processes: use Redis for more than one broker process.
    """

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_entries: int = 100_000
    ) -> None:
        if max_entries < 1:
            raise StoreError("max_entries must be at least 1")
        self._clock = clock
        self._max = max_entries
        self._data: dict[str, tuple[float, bytes]] = {}

    def __len__(self) -> int:
        self.purge_expired()
        return len(self._data)

    def purge_expired(self) -> int:
        now = self._clock()
        dead = [k for k, (exp, _) in self._data.items() if exp <= now]
        for k in dead:
            del self._data[k]
        return len(dead)

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

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        self._make_room(key)
        self._data[key] = (self._clock() + ttl_ms / 1000, bytes(value))

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
        self._data[key] = (self._clock() + ttl_ms / 1000, b"")
        return True

    def raw_items(self) -> dict[str, bytes]:
        """The stored (sealed) bytes by backend key — for tests and the benchmark."""
        self.purge_expired()
        return {k: v for k, (_, v) in self._data.items()}


class RedisLike(Protocol):
    """The five commands the store uses; ``redis.asyncio.Redis`` and
    :class:`~healthid_broker.login.resp.RespClient` both provide them."""

    async def set(self, key: str, value: bytes, *, px: int | None = None,
                  nx: bool = False) -> Any: ...

    async def get(self, key: str) -> Any: ...

    async def getdel(self, key: str) -> Any: ...

    async def delete(self, *keys: str) -> Any: ...


class RedisBackend:
    """Redis backend (``RespClient`` or ``redis.asyncio``); every key is ``prefix`` + the
    hashed key.

    Uses ``SET … PX`` (put), ``GET``, ``GETDEL`` (atomic take, Redis ≥ 6.2), ``DEL``
    and ``SET … NX PX`` (add_if_absent). Redis expires entries itself.
    """

    def __init__(self, client: RedisLike | Redis, *, prefix: str = "hidb:") -> None:
        if not prefix:
            raise StoreError("a Redis key prefix is required (e.g. 'hidb:')")
        self._r = client
        self._prefix = prefix

    @property
    def prefix(self) -> str:
        return self._prefix

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        await self._r.set(self._prefix + key, value, px=ttl_ms)

    async def get(self, key: str) -> bytes | None:
        return _as_bytes(await self._r.get(self._prefix + key))

    async def take(self, key: str) -> bytes | None:
        return _as_bytes(await self._r.getdel(self._prefix + key))

    async def delete(self, key: str) -> None:
        await self._r.delete(self._prefix + key)

    async def add_if_absent(self, key: str, ttl_ms: int) -> bool:
        return bool(await self._r.set(self._prefix + key, b"1", px=ttl_ms, nx=True))


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

