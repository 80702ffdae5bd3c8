"""Tenants: create, list, look up. Each tenant gets its data key on creation (T-24)."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from healthid_broker.storage.models import Tenant

from .data_keys import DataKeys
from .errors import Conflict, NotFound
from .store import TenantDatabase
from .validation import validate_tenant_name
from .views import TenantView

__all__ = ["Tenants"]


class Tenants:
    def __init__(self, db: TenantDatabase, data_keys: DataKeys) -> None:
        self.db = db
        self.data_keys = data_keys

    def create(self, name: str, *, now: float) -> TenantView:
        name = validate_tenant_name(name)
        try:
            with self.db.transaction() as s:
                return self.create_in(s, name, now)
        except IntegrityError as exc:
            raise Conflict(f"tenant {name!r} exists already") from exc

    def create_in(self, s: Session, name: str, now: float) -> TenantView:
        """Create inside ``s``'s transaction, which is then scoped to the new tenant."""
        name = validate_tenant_name(name)
        if any(t.name == name for t in self.db.tenants(s)):
            raise Conflict(f"tenant {name!r} exists already")
        tenant = Tenant(id=str(uuid.uuid4()), name=name, created_at=now)
        self.db.enter(s, tenant.id)
        s.add(tenant)
        s.flush()
        self.data_keys.create(s, tenant.id, now)
        return TenantView(id=tenant.id, name=tenant.name, created_at=tenant.created_at)

    def all(self) -> tuple[TenantView, ...]:
        with self.db.transaction() as s:
            return tuple(TenantView(t.id, t.name, t.created_at) for t in self.db.tenants(s))

    def get(self, name_or_id: str) -> TenantView | None:
        with self.db.transaction() as s:
            try:
                t = self.db.find_tenant(s, name_or_id)
            except NotFound:
                return None
            return TenantView(t.id, t.name, t.created_at)
