"""Cache of foreign entity statements with gematik's freshness rules.

* A_23039: a cached foreign statement is re-fetched once it is older than 12 h, and is
  never used when older than 24 h or past its ``exp``.
* Between 12 h and 24 h a failed re-fetch (:class:`FetchError`: transport failure or an
  HTTP error answer) falls back to the cached statement, which is still within its
  ``exp`` and younger than 24 h.  A re-fetched statement that is *invalid* (bad
  signature, wrong typ, …) is never replaced by the cached one: the error propagates,
  because a peer that now serves a broken statement must be noticed, not papered over.
* A_22861: on an unknown ``kid`` the statement that supplies the keys is re-fetched once
  before failing — rate-limited per entity (:meth:`StatementCache.allow_refetch`, by
  default at most once per 60 s) so a peer cannot make us hammer its superiors.

The cache stores only statements that passed verification when fetched; callers still
re-check times on every use. Both maps — statements and unknown-kid re-fetch times — are
LRUs of at most ``max_entries`` (T-27: entity ids can come from request input, e.g. a
chosen IdP), each insert O(1).  It is in-memory and per process; every broker process
keeps its own (statements are public, so there is nothing to protect or share).
Concurrent misses for the same key may fetch twice; that is harmless.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from .errors import FetchError
from .statements import EntityStatement

__all__ = ["MAX_AGE", "REFRESH_AFTER", "UNKNOWN_KID_INTERVAL", "CacheEntry", "StatementCache"]

REFRESH_AFTER = 12 * 3600.0  # A_23039: re-fetch after 12 h
MAX_AGE = 24 * 3600.0  # A_23039: never use older than 24 h
UNKNOWN_KID_INTERVAL = 60.0  # A_22861 re-fetch rate limit per entity

CacheKey = tuple[str, ...]
S = TypeVar("S", bound=EntityStatement)


@dataclass(frozen=True)
class CacheEntry:
    statement: EntityStatement
    fetched_at: float


def configuration_key(entity_id: str) -> CacheKey:
    return ("configuration", entity_id)


def subordinate_key(issuer: str, subject: str) -> CacheKey:
    return ("subordinate", issuer, subject)


class StatementCache:
    """In-memory statement cache; ``now`` is always passed in (seconds since the epoch)."""

    def __init__(
        self,
        *,
        refresh_after: float = REFRESH_AFTER,
        max_age: float = MAX_AGE,
        unknown_kid_interval: float = UNKNOWN_KID_INTERVAL,
        max_entries: int = 10_000,
    ) -> None:
        if not 0 < refresh_after <= max_age:
            raise ValueError("need 0 < refresh_after <= max_age")
        self.refresh_after = refresh_after
        self.max_age = max_age
        self.unknown_kid_interval = unknown_kid_interval
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._entries: OrderedDict[CacheKey, CacheEntry] = OrderedDict()
        self._refetches: OrderedDict[str, float] = OrderedDict()

    # -- plain access -------------------------------------------------------

    def usable(self, entry: CacheEntry, now: float) -> bool:
        """A_23039: younger than 24 h and not past ``exp``."""
        return now - entry.fetched_at < self.max_age and now < entry.statement.exp

    def lookup(self, key: CacheKey, now: float) -> CacheEntry | None:
        """The entry for ``key`` if it may still be used; drops it otherwise."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if not self.usable(entry, now):
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: CacheKey, statement: EntityStatement, now: float) -> None:
        """Store ``statement``; the least recently used entry goes when full."""
        self._entries[key] = CacheEntry(statement, now)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def invalidate(self, key: CacheKey) -> None:
        self._entries.pop(key, None)

    def invalidate_subject(self, entity_id: str) -> None:
        """Drop the entity's configuration and every subordinate statement about it."""
        for key in [k for k in self._entries if k[-1] == entity_id]:
            del self._entries[key]

    def __len__(self) -> int:
        return len(self._entries)

    # -- A_22861 -----------------------------------------------------------

    def allow_refetch(self, entity_id: str, now: float) -> bool:
        """Whether an unknown-kid re-fetch for ``entity_id`` is allowed now; if so, it is
        recorded (at most one per :attr:`unknown_kid_interval` seconds and entity)."""
        last = self._refetches.get(entity_id)
        if last is not None and now - last < self.unknown_kid_interval:
            return False
        self._refetches[entity_id] = now
        self._refetches.move_to_end(entity_id)
        while len(self._refetches) > self.max_entries:
            self._refetches.popitem(last=False)
        return True

    # -- the A_23039 read path ----------------------------------------------

    async def get(
        self, key: CacheKey, fetch: Callable[[], Awaitable[S]], now: float
    ) -> S:
        """Return a usable statement for ``key``, fetching (and storing) when needed.

        ``fetch`` must return a *verified* statement.  Younger than ``refresh_after``:
        cached.  Between ``refresh_after`` and ``max_age``: re-fetched, falling back to the
        cached one only on :class:`FetchError`.  Otherwise: fetched.
        """
        entry = self.lookup(key, now)
        if entry is not None and now - entry.fetched_at < self.refresh_after:
            return entry.statement  # type: ignore[return-value]
        try:
            fresh = await fetch()
        except FetchError:
            if entry is not None:
                return entry.statement  # type: ignore[return-value]
            raise
        self.put(key, fresh, now)
        return fresh
