"""Per-tenant data keys (envelope encryption under the KEK, T-24) and the client-secret
pepper derived from them. Unwrapped keys are cached per process."""

from __future__ import annotations

import hashlib
import hmac
import threading
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from healthid_broker.crypto.envelope import (
    DataKey,
    WrappedKey,
    unwrap_data_key,
    wrap_data_key,
)
from healthid_broker.crypto.key_provider import KeyProvider
from healthid_broker.crypto.mac import HmacSha256
from healthid_broker.storage.models import TenantDataKey

from .errors import NotFound

__all__ = ["DataKeys"]

_PEPPER_LABEL = b"client-secret-pepper v1"


def _aad(tenant_id: str) -> str:
    return f"tenant|{tenant_id}"


class DataKeys:
    """Wraps, stores, unwraps and caches tenants' data keys. Every method that reads
    the database takes a session scoped to that tenant."""

    def __init__(self, provider: KeyProvider) -> None:
        self.provider = provider
        self._cache: dict[str, tuple[str, DataKey]] = {}
        self._peppers: dict[str, HmacSha256] = {}
        self._lock = threading.Lock()

    def create(self, s: Session, tenant_id: str, now: float) -> None:
        """Add a new data key for ``tenant_id`` (wrapped by the current KEK)."""
        wrapped = wrap_data_key(self.provider, DataKey.generate(), _aad(tenant_id))
        s.add(TenantDataKey(id=str(uuid.uuid4()), tenant_id=tenant_id,
                            kek_id=wrapped.kek_id, wrapped_key=wrapped.blob, created_at=now))
        s.flush()

    def current(self, s: Session, tenant_id: str) -> tuple[str, DataKey]:
        """The tenant's data key for new seals: ``(row id, key)``."""
        cached = self._cache.get(tenant_id)
        if cached is not None:
            return cached
        row = s.scalars(
            select(TenantDataKey)
            .where(TenantDataKey.tenant_id == tenant_id)
            .order_by(TenantDataKey.created_at)
        ).first()
        if row is None:
            raise NotFound("the tenant has no data key")
        dek = unwrap_data_key(self.provider, WrappedKey(row.kek_id, row.wrapped_key),
                              _aad(tenant_id))
        with self._lock:
            self._cache[tenant_id] = (row.id, dek)
        return row.id, dek

    def by_id(self, s: Session, tenant_id: str, data_key_id: str) -> DataKey:
        """The data key ``data_key_id`` of ``tenant_id`` (to open an existing seal)."""
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[0] == data_key_id:
            return cached[1]
        row = s.scalars(
            select(TenantDataKey)
            .where(TenantDataKey.id == data_key_id, TenantDataKey.tenant_id == tenant_id)
        ).first()
        if row is None:
            raise NotFound(f"data key {data_key_id} is missing")
        return unwrap_data_key(self.provider, WrappedKey(row.kek_id, row.wrapped_key),
                               _aad(tenant_id))

    def secret_digest(self, s: Session, tenant_id: str, secret: str) -> bytes:
        """HMAC-SHA256(pepper of the tenant, secret)."""
        _, dek = self.current(s, tenant_id)
        return hmac.new(dek.derive(_PEPPER_LABEL), secret.encode(), hashlib.sha256).digest()

    def cached_pepper(self, tenant_id: str) -> HmacSha256 | None:
        """The tenant's pepper if its data key is cached (HKDF once per tenant)."""
        pepper = self._peppers.get(tenant_id)
        if pepper is None:
            cached = self._cache.get(tenant_id)
            if cached is not None:
                pepper = HmacSha256(cached[1].derive(_PEPPER_LABEL))
                self._peppers[tenant_id] = pepper
        return pepper
