"""Typed persistence of live login transactions in the sealed transient store.

Each state has its own store *purpose* (bound into the AEAD, see :mod:`.sealing`), so
an entry can only ever be loaded as the state it was saved in:

=====================  ==========================  ====================================
purpose                key                         value
=====================  ==========================  ====================================
``login.started``      transaction id              :class:`~.transaction.Started`
``login.upstream``     broker's ``state`` to IdP   :class:`~.transaction.UpstreamPending`
``login.code``         authorization code for app  :class:`~.transaction.CodeIssued`
=====================  ==========================  ====================================

TTLs follow the transaction's deadline (≤ 10 min; codes ≤ 60 s). ``take_*`` are
atomic get-and-delete, so a ``state`` or code is consumed exactly once. Missing,
consumed and expired entries all read as ``None`` — callers answer ``invalid_grant``
or show the "please start again" page without learning which. So do entries that cannot
be read: a key no entry can have (empty, over-long), an entry that does not authenticate
(sealed under a key this broker no longer holds) or one in another release's format (a
login in flight across an upgrade, see :data:`.transaction.FORMAT_VERSIONS`); those are
logged as a warning, without the key.
"""

from __future__ import annotations

import logging
from typing import TypeVar

from .errors import CorruptTransaction, SealError
from .sealing import MAX_KEY_LENGTH
from .store import TransientStore
from .transaction import CodeIssued, LiveTransaction, Started, UpstreamPending, decode, encode

__all__ = ["PURPOSE_CODE", "PURPOSE_STARTED", "PURPOSE_UPSTREAM", "LoginStore"]

PURPOSE_STARTED = "login.started"
PURPOSE_UPSTREAM = "login.upstream"
PURPOSE_CODE = "login.code"

log = logging.getLogger("healthid_broker.login")

_T = TypeVar("_T", Started, UpstreamPending, CodeIssued)


class LoginStore:
    """Saves and takes typed login transactions by state."""

    def __init__(self, store: TransientStore) -> None:
        self._store = store

    async def _put(self, purpose: str, key: str, txn: LiveTransaction, now: float) -> bool:
        ttl = txn.deadline - now
        if not ttl > 0:  # also NaN: nothing saved, as for an expired login
            return False
        await self._store.put(purpose, key, encode(txn), ttl)
        return True

    async def _take(self, purpose: str, key: str, cls: type[_T], now: float) -> _T | None:
        if not key or len(key) > MAX_KEY_LENGTH:
            return None  # no entry is stored under such a key
        try:
            raw = await self._store.take(purpose, key)
            txn = None if raw is None else decode(raw, cls)
        except (SealError, CorruptTransaction) as exc:
            log.warning("a stored login (%s) could not be read and counts as expired: %s",
                        purpose, exc)
            return None
        return txn if txn is not None and now < txn.deadline else None

    # STARTED ---------------------------------------------------------------------------
    async def put_started(self, txn: Started, *, now: float) -> bool:
        """Save under ``txn.txn_id``; ``False`` (nothing saved) when already expired."""
        return await self._put(PURPOSE_STARTED, txn.txn_id, txn, now)

    async def take_started(self, txn_id: str, *, now: float) -> Started | None:
        return await self._take(PURPOSE_STARTED, txn_id, Started, now)

    # UPSTREAM_PENDING ------------------------------------------------------------------
    async def put_pending(self, state: str, txn: UpstreamPending, *, now: float) -> bool:
        """Save under the broker's upstream ``state`` (what the IdP's redirect returns)."""
        return await self._put(PURPOSE_UPSTREAM, state, txn, now)

    async def take_pending(self, state: str, *, now: float) -> UpstreamPending | None:
        return await self._take(PURPOSE_UPSTREAM, state, UpstreamPending, now)

    # CODE_ISSUED -----------------------------------------------------------------------
    async def put_code(self, code: str, txn: CodeIssued, *, now: float) -> bool:
        """Save under the app's authorization ``code`` (TTL ≤ 60 s via the deadline)."""
        return await self._put(PURPOSE_CODE, code, txn, now)

    async def take_code(self, code: str, *, now: float) -> CodeIssued | None:
        return await self._take(PURPOSE_CODE, code, CodeIssued, now)
