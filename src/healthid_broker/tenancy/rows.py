"""Row loading with explicit tenant filters, and rows → immutable views.

The tenant filter is written out in every query even though PostgreSQL's row-level
security enforces it as well: SQLite, the embedded default, has no row-level security.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from healthid_broker.crypto.jose import JWK
from healthid_broker.storage.models import Application, Client, Tenant

from .errors import NotFound
from .views import ApplicationView, ClientView, TenantView

__all__ = ["app_row", "app_view", "client_row", "client_view", "tenant_view"]


def tenant_view(t: Tenant) -> TenantView:
    return TenantView(id=t.id, name=t.name, created_at=t.created_at)


def client_view(c: Client, app: Application) -> ClientView:
    jwks = tuple(JWK.from_dict(k) for k in (c.jwks or {}).get("keys", []))
    return ClientView(
        client_id=c.client_id,
        name=c.name,
        tenant_id=app.tenant_id,
        application_short_key=app.short_key,
        auth_method=c.auth_method,
        redirect_uris=tuple(c.redirect_uris),
        scopes=tuple(c.scopes),
        jwks=jwks,
        active=c.active,
        created_at=c.created_at,
        secret_digest=c.secret_digest,
        id_token_alg=c.signed_response_alg,
        require_par=bool(c.require_par),
    )


def app_view(a: Application) -> ApplicationView:
    return ApplicationView(
        id=a.id,
        tenant_id=a.tenant_id,
        tenant_name=a.tenant.name,
        short_key=a.short_key,
        display_name=a.display_name,
        organization_name=a.organization_name,
        scopes=tuple(a.scopes),
        required_acr=a.required_acr,
        active=a.active,
        clients=tuple(client_view(c, a) for c in a.clients),
        created_at=a.created_at,
        updated_at=a.updated_at,
    )


def app_row(s: Session, tenant_id: str, short_key: str, *, lock: bool = False) -> Application:
    stmt = (
        select(Application)
        .where(Application.short_key == short_key, Application.tenant_id == tenant_id)
        .options(selectinload(Application.clients), selectinload(Application.tenant))
    )
    if lock:
        stmt = stmt.with_for_update()
    a = s.scalars(stmt).first()
    if a is None:
        raise NotFound(f"no application with short key {short_key!r}")
    return a


def client_row(app: Application, client_id: str) -> Client:
    for c in app.clients:
        if client_id in (c.client_id, c.name):
            return c
    raise NotFound(f"application {app.short_key!r} has no client {client_id!r}")
