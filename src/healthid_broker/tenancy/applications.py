"""Applications (one federation entity ``<base>/<short_key>`` each) and their creation
with a complete key set."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from healthid_broker.storage.models import Application

from .data_keys import DataKeys
from .errors import Conflict, NotFound
from .keyset import PURPOSES, RotationPolicy, new_app_key
from .rows import app_row, app_view
from .store import TenantDatabase
from .validation import (
    validate_acr,
    validate_display_text,
    validate_scopes,
    validate_short_key,
)
from .views import ApplicationView

__all__ = ["Applications"]


class Applications:
    def __init__(self, db: TenantDatabase, data_keys: DataKeys, policy: RotationPolicy) -> None:
        self.db = db
        self.data_keys = data_keys
        self.policy = policy

    def create(
        self, tenant: str, short_key: str, *, display_name: str, organization_name: str,
        scopes: Iterable[str], required_acr: str, now: float, active: bool = True,
    ) -> ApplicationView:
        """Create an application and its key set (all four purposes, state current)."""
        try:
            with self.db.transaction() as s:
                tenant_id = self.db.find_tenant(s, tenant).id
                return self.create_in(
                    s, tenant_id, short_key, display_name=display_name,
                    organization_name=organization_name, scopes=scopes,
                    required_acr=required_acr, now=now, active=active,
                )
        except IntegrityError as exc:
            raise Conflict(f"application {short_key!r} exists already") from exc

    def create_in(
        self, s: Session, tenant_id: str, short_key: str, *, display_name: str,
        organization_name: str, scopes: Iterable[str], required_acr: str, now: float,
        active: bool,
    ) -> ApplicationView:
        """Create inside ``s``'s transaction, which is then scoped to ``tenant_id``."""
        short_key = validate_short_key(short_key)
        display_name = validate_display_text(display_name, "display name")
        organization_name = validate_display_text(organization_name, "organisation name")
        scope_t = validate_scopes(scopes)
        acr = validate_acr(required_acr)
        if self.db.application_tenant(s, short_key) is not None:
            raise Conflict(f"application {short_key!r} exists already")
        self.db.enter(s, tenant_id)
        app = Application(
            id=str(uuid.uuid4()), tenant_id=tenant_id, short_key=short_key,
            display_name=display_name, organization_name=organization_name,
            scopes=list(scope_t), required_acr=acr, active=bool(active),
            created_at=now, updated_at=now,
        )
        s.add(app)
        s.flush()
        dek_id, dek = self.data_keys.current(s, tenant_id)
        for purpose in PURPOSES:
            s.add(
                new_app_key(
                    application_id=app.id, tenant_id=tenant_id, short_key=short_key,
                    purpose=purpose, state="current", data_key_id=dek_id, data_key=dek,
                    now=now, policy=self.policy,
                )
            )
        s.flush()
        TenantDatabase.announce_change(s, short_key)
        s.refresh(app)
        return app_view(app_row(s, tenant_id, short_key))

    def get(self, short_key: str) -> ApplicationView | None:
        try:
            with self.db.application_transaction(short_key) as (s, tenant_id):
                return app_view(app_row(s, tenant_id, short_key))
        except NotFound:
            return None

    def of_tenant(self, tenant: str | None = None) -> tuple[ApplicationView, ...]:
        """The applications of ``tenant`` (name or id), or of every tenant."""
        with self.db.transaction() as s:
            ids = ([self.db.find_tenant(s, tenant).id] if tenant is not None
                   else [t.id for t in self.db.tenants(s)])
            out: list[ApplicationView] = []
            for tenant_id in ids:
                self.db.enter(s, tenant_id)
                stmt = (
                    select(Application)
                    .where(Application.tenant_id == tenant_id)
                    .options(selectinload(Application.clients),
                             selectinload(Application.tenant))
                )
                out.extend(app_view(a) for a in s.scalars(stmt))
        return tuple(sorted(out, key=lambda a: a.short_key))

    def update(
        self, short_key: str, *, now: float, display_name: str | None = None,
        organization_name: str | None = None, scopes: Iterable[str] | None = None,
        required_acr: str | None = None, active: bool | None = None,
    ) -> ApplicationView:
        with self.db.application_transaction(short_key) as (s, tenant_id):
            app = app_row(s, tenant_id, short_key, lock=True)
            self.update_row(
                s, app, now=now, display_name=display_name,
                organization_name=organization_name, scopes=scopes,
                required_acr=required_acr, active=active,
            )
            return app_view(app)

    @staticmethod
    def update_row(
        s: Session, app: Application, *, now: float, display_name: str | None = None,
        organization_name: str | None = None, scopes: Iterable[str] | None = None,
        required_acr: str | None = None, active: bool | None = None,
        check_clients: bool = True,
    ) -> None:
        """Change ``app`` (loaded in ``s``'s tenant-scoped transaction)."""
        if display_name is not None:
            app.display_name = validate_display_text(display_name, "display name")
        if organization_name is not None:
            app.organization_name = validate_display_text(organization_name, "organisation name")
        if scopes is not None:
            new = validate_scopes(scopes)
            if check_clients:
                for c in app.clients:
                    extra = set(c.scopes) - set(new)
                    if extra:
                        raise Conflict(
                            f"client {c.name!r} of {app.short_key!r} still uses scope(s) "
                            f"{', '.join(sorted(extra))}; narrow the client first"
                        )
            app.scopes = list(new)
        if required_acr is not None:
            app.required_acr = validate_acr(required_acr)
        if active is not None:
            app.active = bool(active)
        app.updated_at = now
        s.flush()
        TenantDatabase.announce_change(s, app.short_key)
