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
or show the "please start again" page without learning which.
"""

from __future__ import annotations

from .store import TransientStore
from .transaction import (
    CodeIssued,
    LiveTransaction,
    Started,
    UpstreamPending,
    decode,
    encode,
)

__all__ = ["PURPOSE_CODE", "PURPOSE_STARTED", "PURPOSE_UPSTREAM", "LoginStore"]

PURPOSE_STARTED = "login.started"
PURPOSE_UPSTREAM = "login.upstream"
PURPOSE_CODE = "login.code"


class LoginStore:
    """Saves, loads and takes typed login transactions by state."""

    def __init__(self, store: TransientStore) -> None:
        self._store = store

    async def _put(self, purpose: str, key: str, txn: LiveTransaction, now: float) -> bool:
        ttl = txn.deadline - now
        if not ttl > 0:  # also NaN: nothing saved, as for an expired login
            return False
        await self._store.put(purpose, key, encode(txn), ttl)
        return True

    # STARTED ---------------------------------------------------------------------------
    async def put_started(self, txn: Started, *, now: float) -> bool:
        """Save under ``txn.txn_id``; ``False`` (nothing saved) when already expired."""
        return await self._put(PURPOSE_STARTED, txn.txn_id, txn, now)

    async def get_started(self, txn_id: str, *, now: float) -> Started | None:
        raw = await self._store.get(PURPOSE_STARTED, txn_id)
        txn = None if raw is None else decode(raw, Started)
        return txn if txn is not None and now < txn.deadline else None

    async def take_started(self, txn_id: str, *, now: float) -> Started | None:
        raw = await self._store.take(PURPOSE_STARTED, txn_id)
        txn = None if raw is None else decode(raw, Started)
        return txn if txn is not None and now < txn.deadline else None

    # UPSTREAM_PENDING ------------------------------------------------------------------
    async def put_pending(self, txn: UpstreamPending, *, now: float) -> bool:
        """Save under the broker's upstream ``state`` (what the IdP's redirect returns)."""
        return await self._put(PURPOSE_UPSTREAM, txn.upstream_state, txn, now)

    async def take_pending(self, upstream_state: str, *, now: float) -> UpstreamPending | None:
        raw = await self._store.take(PURPOSE_UPSTREAM, upstream_state)
        txn = None if raw is None else decode(raw, UpstreamPending)
        return txn if txn is not None and now < txn.deadline else None

    # CODE_ISSUED -----------------------------------------------------------------------
    async def put_code(self, code: str, txn: CodeIssued, *, now: float) -> bool:
        """Save under the app's authorization ``code`` (TTL ≤ 60 s via the deadline)."""
        return await self._put(PURPOSE_CODE, code, txn, now)

    async def take_code(self, code: str, *, now: float) -> CodeIssued | None:
        raw = await self._store.take(PURPOSE_CODE, code)
        txn = None if raw is None else decode(raw, CodeIssued)
        return txn if txn is not None and now < txn.deadline else None

    async def discard(self, purpose: str, key: str) -> None:
        """Drop an entry (e.g. after FAILED) so nothing is kept."""
        await self._store.delete(purpose, key)
