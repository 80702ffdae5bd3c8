"""Tenancy services: tenants, applications, clients and per-application key sets.

The read API (``get_application``, ``get_client``, ``verify_client_secret``,
``application_keys``) is what protocol code calls on every login; it returns immutable
views (:mod:`healthid_broker.tenancy.views`) that callers may cache.

Client secrets are 32 random bytes (base64url) shown once; only
HMAC-SHA256(pepper, secret) is stored, the pepper being derived from the tenant's data
key (so it is itself protected by the KEK). High-entropy secrets need no slow hash;
verification is one HMAC and a constant-time compare (far below 3 CPU-ms).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from healthid_broker.crypto.envelope import (
    DataKey,
    WrappedKey,
    unwrap_data_key,
    wrap_data_key,
)
from healthid_broker.crypto.jose import JWK, JoseError
from healthid_broker.crypto.key_provider import KeyProvider
from healthid_broker.crypto.keys import public_key_pem
from healthid_broker.crypto.mac import HmacSha256
from healthid_broker.storage.models import (
    AppKey,
    Application,
    Client,
    Tenant,
    TenantDataKey,
)

from .errors import Conflict, InvalidInput, NotFound
from .keyset import (
    PURPOSES,
    RotationPolicy,
    new_app_key,
    open_jwk,
    open_mtls,
    published,
    rotate_purpose,
)
from .validation import (
    validate_acr,
    validate_auth_method,
    validate_base_url,
    validate_client_name,
    validate_display_text,
    validate_redirect_uris,
    validate_scopes,
    validate_short_key,
    validate_tenant_name,
)
from .views import (
    AppKeys,
    ApplicationView,
    ClientView,
    CreatedClient,
    KeyChange,
    KeyInfo,
    TenantView,
)

__all__ = ["ENVIRONMENTS", "TenancyService"]

ENVIRONMENTS: tuple[str, ...] = ("tu", "ru", "pu", "sandbox")
_PEPPER_LABEL = b"client-secret-pepper v1"
_UNSET: Any = object()


def _tenant_view(t: Tenant) -> TenantView:
    return TenantView(id=t.id, name=t.name, created_at=t.created_at)


def _client_view(c: Client, app: Application) -> ClientView:
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
    )


def _app_view(a: Application) -> ApplicationView:
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
        clients=tuple(_client_view(c, a) for c in a.clients),
        created_at=a.created_at,
        updated_at=a.updated_at,
    )


def _validate_client_jwks(jwks: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if jwks is None:
        return None
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list) or not keys:
        raise InvalidInput("client JWKS must be an object with a non-empty 'keys' list")
    out = []
    for k in keys:
        if isinstance(k, Mapping) and "d" in k:
            raise InvalidInput("client JWKS must contain public keys only")
        try:
            jwk = JWK.from_dict(k)
        except JoseError as exc:
            raise InvalidInput(f"client JWKS has an unusable key: {exc}") from exc
        if not jwk.kid:
            raise InvalidInput("every key in a client JWKS needs a 'kid'")
        out.append(jwk.public_dict())
    return {"keys": out}


class TenancyService:
    """Tenants, applications, clients and key sets over a SQLAlchemy session factory."""

    def __init__(
        self,
        session_factory: Callable[[], Session],
        key_provider: KeyProvider,
        *,
        policy: RotationPolicy | None = None,
    ) -> None:
        self._sessions = session_factory
        self._provider = key_provider
        self.policy = policy or RotationPolicy()
        self._dek_cache: dict[str, tuple[str, DataKey]] = {}
        self._peppers: dict[str, HmacSha256] = {}  # keyed with each tenant's pepper
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ plumbing

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session in one transaction: committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    def _data_key(self, session: Session, tenant_id: str) -> tuple[str, DataKey]:
        cached = self._dek_cache.get(tenant_id)
        if cached is not None:
            return cached
        row = session.scalars(
            select(TenantDataKey)
            .where(TenantDataKey.tenant_id == tenant_id)
            .order_by(TenantDataKey.created_at)
        ).first()
        if row is None:
            raise NotFound("the tenant has no data key")
        dek = unwrap_data_key(
            self._provider, WrappedKey(row.kek_id, row.wrapped_key), f"tenant|{tenant_id}"
        )
        with self._lock:
            self._dek_cache[tenant_id] = (row.id, dek)
        return row.id, dek

    def _data_key_by_id(self, session: Session, data_key_id: str) -> DataKey:
        row = session.get(TenantDataKey, data_key_id)
        if row is None:
            raise NotFound(f"data key {data_key_id} is missing")
        cached = self._dek_cache.get(row.tenant_id)
        if cached is not None and cached[0] == data_key_id:
            return cached[1]
        return unwrap_data_key(
            self._provider, WrappedKey(row.kek_id, row.wrapped_key), f"tenant|{row.tenant_id}"
        )

    @staticmethod
    def _tenant_row(session: Session, name_or_id: str) -> Tenant:
        t = session.scalars(
            select(Tenant).where((Tenant.name == name_or_id) | (Tenant.id == name_or_id))
        ).first()
        if t is None:
            raise NotFound(f"no tenant {name_or_id!r}")
        return t

    @staticmethod
    def _app_row(session: Session, short_key: str, *, lock: bool = False) -> Application:
        stmt = (
            select(Application)
            .where(Application.short_key == short_key)
            .options(selectinload(Application.clients), selectinload(Application.tenant))
        )
        if lock:
            stmt = stmt.with_for_update()
        a = session.scalars(stmt).first()
        if a is None:
            raise NotFound(f"no application with short key {short_key!r}")
        return a

    @staticmethod
    def _client_row(app: Application, client_id: str) -> Client:
        for c in app.clients:
            if client_id in (c.client_id, c.name):
                return c
        raise NotFound(f"application {app.short_key!r} has no client {client_id!r}")

    # ------------------------------------------------------------------ tenants

    def create_tenant(self, name: str, *, now: float) -> TenantView:
        name = validate_tenant_name(name)
        try:
            with self.transaction() as s:
                return self._create_tenant(s, name, now)
        except IntegrityError as exc:
            raise Conflict(f"tenant {name!r} exists already") from exc

    def _create_tenant(self, s: Session, name: str, now: float) -> TenantView:
        name = validate_tenant_name(name)
        if s.scalars(select(Tenant).where(Tenant.name == name)).first() is not None:
            raise Conflict(f"tenant {name!r} exists already")
        tenant = Tenant(id=str(uuid.uuid4()), name=name, created_at=now)
        wrapped = wrap_data_key(self._provider, DataKey.generate(), f"tenant|{tenant.id}")
        s.add(tenant)
        s.flush()
        s.add(
            TenantDataKey(
                id=str(uuid.uuid4()), tenant_id=tenant.id, kek_id=wrapped.kek_id,
                wrapped_key=wrapped.blob, created_at=now,
            )
        )
        s.flush()
        return _tenant_view(tenant)

    def list_tenants(self) -> tuple[TenantView, ...]:
        with self._sessions() as s:
            return tuple(_tenant_view(t) for t in s.scalars(select(Tenant).order_by(Tenant.name)))

    def get_tenant(self, name_or_id: str) -> TenantView | None:
        with self._sessions() as s:
            try:
                return _tenant_view(self._tenant_row(s, name_or_id))
            except NotFound:
                return None

    # ------------------------------------------------------------------ applications

    def create_application(
        self,
        tenant: str,
        short_key: str,
        *,
        display_name: str,
        organization_name: str,
        scopes: Iterable[str],
        required_acr: str,
        now: float,
        active: bool = True,
    ) -> ApplicationView:
        """Create an application and its key set (all four purposes, state current)."""
        try:
            with self.transaction() as s:
                return self._create_application(
                    s, tenant, short_key, display_name=display_name,
                    organization_name=organization_name, scopes=scopes,
                    required_acr=required_acr, now=now, active=active,
                )
        except IntegrityError as exc:
            raise Conflict(f"application {short_key!r} exists already") from exc

    def _create_application(
        self, s: Session, tenant: str, short_key: str, *, display_name: str,
        organization_name: str, scopes: Iterable[str], required_acr: str, now: float,
        active: bool,
    ) -> ApplicationView:
        short_key = validate_short_key(short_key)
        display_name = validate_display_text(display_name, "display name")
        organization_name = validate_display_text(organization_name, "organisation name")
        scope_t = validate_scopes(scopes)
        acr = validate_acr(required_acr)
        t = self._tenant_row(s, tenant)
        if s.scalars(select(Application).where(Application.short_key == short_key)).first():
            raise Conflict(f"application {short_key!r} exists already")
        app = Application(
            id=str(uuid.uuid4()), tenant_id=t.id, short_key=short_key,
            display_name=display_name, organization_name=organization_name,
            scopes=list(scope_t), required_acr=acr, active=bool(active),
            created_at=now, updated_at=now,
        )
        s.add(app)
        s.flush()
        dek_id, dek = self._data_key(s, t.id)
        for purpose in PURPOSES:
            s.add(
                new_app_key(
                    application_id=app.id, short_key=short_key, purpose=purpose,
                    state="current", data_key_id=dek_id, data_key=dek, now=now,
                    policy=self.policy,
                )
            )
        s.flush()
        s.refresh(app)
        return _app_view(app)

    def get_application(self, short_key: str) -> ApplicationView | None:
        with self._sessions() as s:
            try:
                return _app_view(self._app_row(s, short_key))
            except NotFound:
                return None

    def list_applications(self, tenant: str | None = None) -> tuple[ApplicationView, ...]:
        with self._sessions() as s:
            stmt = (
                select(Application)
                .options(selectinload(Application.clients), selectinload(Application.tenant))
                .order_by(Application.short_key)
            )
            if tenant is not None:
                stmt = stmt.where(Application.tenant_id == self._tenant_row(s, tenant).id)
            return tuple(_app_view(a) for a in s.scalars(stmt))

    def update_application(
        self,
        short_key: str,
        *,
        now: float,
        display_name: str | None = None,
        organization_name: str | None = None,
        scopes: Iterable[str] | None = None,
        required_acr: str | None = None,
        active: bool | None = None,
    ) -> ApplicationView:
        with self.transaction() as s:
            app = self._app_row(s, short_key, lock=True)
            self._update_application(
                s, app, now=now, display_name=display_name,
                organization_name=organization_name, scopes=scopes,
                required_acr=required_acr, active=active,
            )
            return _app_view(app)

    def _update_application(
        self, s: Session, app: Application, *, now: float, display_name: str | None = None,
        organization_name: str | None = None, scopes: Iterable[str] | None = None,
        required_acr: str | None = None, active: bool | None = None,
        check_clients: bool = True,
    ) -> None:
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

    def deactivate_application(self, short_key: str, *, now: float) -> ApplicationView:
        """No active application → no login (TOMS T-05)."""
        return self.update_application(short_key, now=now, active=False)

    # ------------------------------------------------------------------ clients

    def create_client(
        self,
        short_key: str,
        *,
        auth_method: str,
        redirect_uris: Iterable[str],
        now: float,
        name: str | None = None,
        scopes: Iterable[str] | None = None,
        jwks: Mapping[str, Any] | None = None,
        active: bool = True,
    ) -> CreatedClient:
        """Create a client; for ``client_secret_basic`` the secret is in the result ONCE."""
        with self.transaction() as s:
            app = self._app_row(s, short_key, lock=True)
            return self._create_client(
                s, app, auth_method=auth_method, redirect_uris=redirect_uris, now=now,
                name=name, scopes=scopes, jwks=jwks, active=active,
            )

    def _create_client(
        self, s: Session, app: Application, *, auth_method: str,
        redirect_uris: Iterable[str], now: float, name: str | None,
        scopes: Iterable[str] | None, jwks: Mapping[str, Any] | None, active: bool,
    ) -> CreatedClient:
        method = validate_auth_method(auth_method)
        uris = validate_redirect_uris(redirect_uris)
        scope_t = validate_scopes(app.scopes if scopes is None else scopes, app.scopes)
        jwks_d = _validate_client_jwks(jwks)
        if method == "private_key_jwt" and jwks_d is None:
            raise InvalidInput("private_key_jwt clients need a JWKS with their signing key(s)")
        client_id = secrets.token_urlsafe(24)
        name = validate_client_name(name) if name is not None else f"client-{client_id[:8].lower()}"
        if any(c.name == name for c in app.clients):
            raise Conflict(f"application {app.short_key!r} has a client named {name!r} already")
        secret: str | None = None
        digest: bytes | None = None
        if method == "client_secret_basic":
            secret = secrets.token_urlsafe(32)
            digest = self._digest(s, app.tenant_id, secret)
        row = Client(
            id=str(uuid.uuid4()), application_id=app.id, client_id=client_id, name=name,
            auth_method=method, secret_digest=digest, redirect_uris=list(uris),
            scopes=list(scope_t), jwks=jwks_d, active=bool(active), created_at=now,
            updated_at=now,
        )
        app.clients.append(row)
        s.flush()
        return CreatedClient(_client_view(row, app), secret)

    def _digest(self, s: Session, tenant_id: str, secret: str) -> bytes:
        _, dek = self._data_key(s, tenant_id)
        return hmac.new(dek.derive(_PEPPER_LABEL), secret.encode(), hashlib.sha256).digest()

    def get_client(self, short_key: str, client_id: str) -> ClientView | None:
        with self._sessions() as s:
            try:
                app = self._app_row(s, short_key)
            except NotFound:
                return None
            for c in app.clients:
                if c.client_id == client_id:
                    return _client_view(c, app)
            return None

    def list_clients(self, short_key: str) -> tuple[ClientView, ...]:
        with self._sessions() as s:
            app = self._app_row(s, short_key)
            return tuple(_client_view(c, app) for c in app.clients)

    def verify_client_secret(self, client: ClientView, secret: str) -> bool:
        """Constant-time check of a ``client_secret_basic`` secret (RFC 6749 §2.3.1)."""
        if client.secret_digest is None or not isinstance(secret, str):
            return False
        pepper = self._peppers.get(client.tenant_id)
        cached = self._dek_cache.get(client.tenant_id)
        if pepper is None and cached is not None:
            pepper = HmacSha256(cached[1].derive(_PEPPER_LABEL))
            self._peppers[client.tenant_id] = pepper  # HKDF once per tenant, not per login
        if pepper is not None:
            mac = pepper.digest(secret.encode())
        else:
            with self._sessions() as s:
                mac = self._digest(s, client.tenant_id, secret)
        return hmac.compare_digest(mac, client.secret_digest)

    def update_client(
        self,
        short_key: str,
        client_id: str,
        *,
        now: float,
        redirect_uris: Iterable[str] | None = None,
        scopes: Iterable[str] | None = None,
        jwks: Mapping[str, Any] | None = _UNSET,
        active: bool | None = None,
    ) -> ClientView:
        with self.transaction() as s:
            app = self._app_row(s, short_key, lock=True)
            row = self._client_row(app, client_id)
            self._update_client(
                s, app, row, now=now, redirect_uris=redirect_uris, scopes=scopes,
                jwks=jwks, active=active,
            )
            return _client_view(row, app)

    def _update_client(
        self, s: Session, app: Application, row: Client, *, now: float,
        redirect_uris: Iterable[str] | None = None, scopes: Iterable[str] | None = None,
        jwks: Mapping[str, Any] | None = _UNSET, active: bool | None = None,
    ) -> None:
        if redirect_uris is not None:
            row.redirect_uris = list(validate_redirect_uris(redirect_uris))
        if scopes is not None:
            row.scopes = list(validate_scopes(scopes, app.scopes))
        if jwks is not _UNSET:
            jwks_d = _validate_client_jwks(jwks)
            if row.auth_method == "private_key_jwt" and jwks_d is None:
                raise InvalidInput("private_key_jwt clients need a JWKS")
            row.jwks = jwks_d
        if active is not None:
            row.active = bool(active)
        row.updated_at = now
        s.flush()

    def update_redirect_uris(
        self, short_key: str, client_id: str, redirect_uris: Iterable[str], *, now: float
    ) -> ClientView:
        return self.update_client(short_key, client_id, now=now, redirect_uris=redirect_uris)

    def deactivate_client(self, short_key: str, client_id: str, *, now: float) -> ClientView:
        return self.update_client(short_key, client_id, now=now, active=False)

    def reset_client_secret(self, short_key: str, client_id: str, *, now: float) -> CreatedClient:
        """A new secret for a ``client_secret_basic`` client (shown once; the old one dies)."""
        with self.transaction() as s:
            app = self._app_row(s, short_key, lock=True)
            row = self._client_row(app, client_id)
            if row.auth_method != "client_secret_basic":
                raise InvalidInput(f"client {row.name!r} does not authenticate with a secret")
            secret = secrets.token_urlsafe(32)
            row.secret_digest = self._digest(s, app.tenant_id, secret)
            row.updated_at = now
            s.flush()
            return CreatedClient(_client_view(row, app), secret)

    def delete_client(self, short_key: str, client_id: str) -> None:
        with self.transaction() as s:
            app = self._app_row(s, short_key, lock=True)
            row = self._client_row(app, client_id)
            app.clients.remove(row)
            s.delete(row)

    # ------------------------------------------------------------------ keys

    def key_infos(self, short_key: str) -> tuple[KeyInfo, ...]:
        with self._sessions() as s:
            app = self._app_row(s, short_key)
            rows = s.scalars(
                select(AppKey).where(AppKey.application_id == app.id).order_by(AppKey.created_at)
            )
            return tuple(
                KeyInfo(r.purpose, r.kid, r.state, r.created_at, r.activated_at, r.retired_at,
                        r.not_after)
                for r in rows
            )

    def application_keys(self, short_key: str, now: float) -> AppKeys:
        """The keys usable at ``now`` (with private parts); see :class:`AppKeys`."""
        with self._sessions() as s:
            app = self._app_row(s, short_key)
            rows = list(s.scalars(select(AppKey).where(AppKey.application_id == app.id)))
            by_purpose: dict[str, list[AppKey]] = {p: [] for p in PURPOSES}
            for r in rows:
                by_purpose.setdefault(r.purpose, []).append(r)
            deks: dict[str, DataKey] = {}

            def dek(r: AppKey) -> DataKey:
                if r.data_key_id not in deks:
                    deks[r.data_key_id] = self._data_key_by_id(s, r.data_key_id)
                return deks[r.data_key_id]

            def pub(purpose: str) -> list[AppKey]:
                out = published(by_purpose[purpose], now, self.policy)
                if not out or out[0].state != "current":
                    raise NotFound(
                        f"application {short_key!r} has no current {purpose} key; "
                        "run `healthid-broker app rotate-keys`"
                    )
                return out

            fed = [open_jwk(r, dek(r)) for r in pub("federation_sig")]
            mtls = [open_mtls(r, dek(r)) for r in pub("mtls")]
            enc = [open_jwk(r, dek(r)) for r in pub("id_token_enc")]
            idsig = [open_jwk(r, dek(r)) for r in pub("id_token_sig")]
            return AppKeys(
                short_key=app.short_key,
                federation_signing_key=fed[0],
                federation_keys=tuple(fed),
                mtls=mtls[0],
                mtls_published=tuple(mtls),
                id_token_encryption_keys=tuple(enc),
                id_token_signing_key=idsig[0],
                id_token_signing_keys=tuple(idsig),
            )

    def rotate_keys(
        self, short_key: str, now: float, *, force: bool = False,
        purposes: Iterable[str] | None = None,
    ) -> tuple[KeyChange, ...]:
        """Do the rotation steps that are due at ``now`` (see :mod:`.keyset`).

        ``force`` publishes a new ``next`` key for every purpose (or the given
        ``purposes``) that has none; it still becomes current only after 24 h (A_24607).
        """
        wanted = tuple(purposes) if purposes is not None else PURPOSES
        for p in wanted:
            if p not in PURPOSES:
                raise InvalidInput(f"unknown key purpose {p!r}; one of {', '.join(PURPOSES)}")
        with self.transaction() as s:
            app = self._app_row(s, short_key, lock=True)
            rows = list(s.scalars(select(AppKey).where(AppKey.application_id == app.id)))
            changes: list[KeyChange] = []
            dek_id: str | None = None
            dek: DataKey | None = None
            for purpose in PURPOSES:
                prow = [r for r in rows if r.purpose == purpose]
                result = rotate_purpose(
                    prow, now, self.policy, force=force and purpose in wanted
                )
                changes.extend(result.changes)
                for r in result.remove:
                    s.delete(r)
                if result.create_next:
                    if dek is None:
                        dek_id, dek = self._data_key(s, app.tenant_id)
                    assert dek_id is not None
                    has_current = any(r.state == "current" for r in prow)
                    row = new_app_key(
                        application_id=app.id, short_key=app.short_key, purpose=purpose,
                        state="next" if has_current else "current", data_key_id=dek_id,
                        data_key=dek, now=now, policy=self.policy,
                    )
                    s.add(row)
                    changes.append(
                        KeyChange(purpose, row.kid,
                                  "published-next" if has_current else "activated", now)
                    )
            s.flush()
            return tuple(changes)

    def rotate_due(self, now: float) -> dict[str, tuple[KeyChange, ...]]:
        """:meth:`rotate_keys` for every application; returns the changes per short key."""
        with self._sessions() as s:
            keys = list(s.scalars(select(Application.short_key).order_by(Application.short_key)))
        out: dict[str, tuple[KeyChange, ...]] = {}
        for k in keys:
            changes = self.rotate_keys(k, now)
            real = tuple(c for c in changes if c.change != "pending")
            if real:
                out[k] = real
        return out

    def registration_data(
        self, short_key: str, *, base: str, environment: str, now: float
    ) -> dict[str, Any]:
        """What gematik's RP registration needs (PROFILE "Federation master"; T-23):
        ``{entity_id, organization_name, environment, scopes, keys: [{kid, pem}]}``."""
        if environment not in ENVIRONMENTS:
            raise InvalidInput(f"environment must be one of {', '.join(ENVIRONMENTS)}")
        base = validate_base_url(base)
        app = self.get_application(short_key)
        if app is None:
            raise NotFound(f"no application with short key {short_key!r}")
        keys = self.application_keys(short_key, now)
        return {
            "entity_id": app.entity_id(base),
            "organization_name": app.organization_name,
            "environment": environment,
            "scopes": list(app.scopes),
            "keys": [
                {"kid": k.kid, "pem": public_key_pem(k.public_key)}
                for k in keys.federation_keys
            ],
        }
