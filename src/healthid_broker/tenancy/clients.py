"""OIDC clients of an application, and their secrets.

Client secrets are 32 random bytes (base64url) shown once; only
HMAC-SHA256(pepper, secret) is stored, the pepper being derived from the tenant's data
key (so it is itself protected by the KEK). High-entropy secrets need no slow hash;
verification is one HMAC and a constant-time compare (far below 3 CPU-ms).
"""

from __future__ import annotations

import hmac
import secrets
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from healthid_broker.crypto.app_signing import DEFAULT_ID_TOKEN_ALG
from healthid_broker.crypto.jose import JWK, JoseError
from healthid_broker.storage.models import Application, Client

from .data_keys import DataKeys
from .errors import Conflict, InvalidInput, NotFound
from .keys import ensure_rsa_key
from .keyset import RotationPolicy
from .rows import app_row, client_row, client_view
from .store import TenantDatabase
from .validation import (
    AUTH_METHODS,
    validate_auth_method,
    validate_client_name,
    validate_id_token_alg,
    validate_redirect_uris,
    validate_scopes,
)
from .views import ClientView, CreatedClient

__all__ = ["UNSET", "Clients", "validate_client_jwks"]

UNSET: Any = object()


def validate_client_jwks(jwks: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A client's public JWKS as stored (public parts only), or ``None``."""
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


class Clients:
    def __init__(self, db: TenantDatabase, data_keys: DataKeys,
                 policy: RotationPolicy | None = None) -> None:
        self.db = db
        self.data_keys = data_keys
        self.policy = policy or RotationPolicy()

    def create(
        self, short_key: str, *, auth_method: str, redirect_uris: Iterable[str], now: float,
        name: str | None = None, scopes: Iterable[str] | None = None,
        jwks: Mapping[str, Any] | None = None, active: bool = True,
        id_token_alg: str = DEFAULT_ID_TOKEN_ALG, require_par: bool = False,
    ) -> CreatedClient:
        """Create a client; for ``client_secret_basic`` the secret is in the result ONCE."""
        with self.db.application_transaction(short_key) as (s, tenant_id):
            app = app_row(s, tenant_id, short_key, lock=True)
            return self.create_in(
                s, app, auth_method=auth_method, redirect_uris=redirect_uris, now=now,
                name=name, scopes=scopes, jwks=jwks, active=active, id_token_alg=id_token_alg,
                require_par=require_par,
            )

    def create_in(
        self, s: Session, app: Application, *, auth_method: str,
        redirect_uris: Iterable[str], now: float, name: str | None,
        scopes: Iterable[str] | None, jwks: Mapping[str, Any] | None, active: bool,
        id_token_alg: str = DEFAULT_ID_TOKEN_ALG,
        require_par: bool = False,
    ) -> CreatedClient:
        """Create inside ``s``'s transaction, scoped to ``app``'s tenant. An RS256/PS256
        client gives the application its RSA key if it has none yet."""
        method = validate_auth_method(auth_method)
        alg = validate_id_token_alg(id_token_alg)
        uris = validate_redirect_uris(redirect_uris, public=AUTH_METHODS[method] == "public")
        scope_t = validate_scopes(app.scopes if scopes is None else scopes, app.scopes)
        jwks_d = validate_client_jwks(jwks)
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
            digest = self.data_keys.secret_digest(s, app.tenant_id, secret)
        row = Client(
            id=str(uuid.uuid4()), application_id=app.id, tenant_id=app.tenant_id,
            client_id=client_id, name=name, auth_method=method, secret_digest=digest,
            redirect_uris=list(uris), scopes=list(scope_t), jwks=jwks_d, active=bool(active),
            created_at=now, updated_at=now, signed_response_alg=alg,
            require_par=bool(require_par),
        )
        app.clients.append(row)
        s.flush()
        if alg != DEFAULT_ID_TOKEN_ALG:
            ensure_rsa_key(s, app, self.data_keys, now, self.policy)
        TenantDatabase.announce_change(s, app.short_key)
        return CreatedClient(client_view(row, app), secret)

    def get(self, short_key: str, client_id: str) -> ClientView | None:
        try:
            with self.db.application_transaction(short_key) as (s, tenant_id):
                app = app_row(s, tenant_id, short_key)
                for c in app.clients:
                    if c.client_id == client_id:
                        return client_view(c, app)
        except NotFound:
            pass
        return None

    def of_application(self, short_key: str) -> tuple[ClientView, ...]:
        with self.db.application_transaction(short_key) as (s, tenant_id):
            app = app_row(s, tenant_id, short_key)
            return tuple(client_view(c, app) for c in app.clients)

    def verify_secret(self, client: ClientView, secret: str) -> bool:
        """Constant-time check of a ``client_secret_basic`` secret (RFC 6749 §2.3.1)."""
        if client.secret_digest is None or not isinstance(secret, str):
            return False
        pepper = self.data_keys.cached_pepper(client.tenant_id)
        if pepper is not None:
            mac = pepper.digest(secret.encode())
        else:
            with self.db.transaction(client.tenant_id) as s:
                mac = self.data_keys.secret_digest(s, client.tenant_id, secret)
        return hmac.compare_digest(mac, client.secret_digest)

    def update(
        self, short_key: str, client_id: str, *, now: float,
        redirect_uris: Iterable[str] | None = None, scopes: Iterable[str] | None = None,
        jwks: Mapping[str, Any] | None = UNSET, active: bool | None = None,
        id_token_alg: str | None = None,
        require_par: bool | None = None,
    ) -> ClientView:
        with self.db.application_transaction(short_key) as (s, tenant_id):
            app = app_row(s, tenant_id, short_key, lock=True)
            row = client_row(app, client_id)
            self.update_row(s, app, row, now=now, redirect_uris=redirect_uris,
                            scopes=scopes, jwks=jwks, active=active, id_token_alg=id_token_alg,
                            require_par=require_par)
            return client_view(row, app)

    def update_row(
        self, s: Session, app: Application, row: Client, *, now: float,
        redirect_uris: Iterable[str] | None = None, scopes: Iterable[str] | None = None,
        jwks: Mapping[str, Any] | None = UNSET, active: bool | None = None,
        id_token_alg: str | None = None,
        require_par: bool | None = None,
    ) -> None:
        """Change ``row`` (loaded in ``s``'s tenant-scoped transaction)."""
        if id_token_alg is not None:
            row.signed_response_alg = validate_id_token_alg(id_token_alg)
            if row.signed_response_alg != DEFAULT_ID_TOKEN_ALG:
                ensure_rsa_key(s, app, self.data_keys, now, self.policy)
        if redirect_uris is not None:
            row.redirect_uris = list(validate_redirect_uris(
                redirect_uris, public=AUTH_METHODS[row.auth_method] == "public"))
        if scopes is not None:
            row.scopes = list(validate_scopes(scopes, app.scopes))
        if jwks is not UNSET:
            jwks_d = validate_client_jwks(jwks)
            if row.auth_method == "private_key_jwt" and jwks_d is None:
                raise InvalidInput("private_key_jwt clients need a JWKS")
            row.jwks = jwks_d
        if active is not None:
            row.active = bool(active)
        if require_par is not None:
            row.require_par = bool(require_par)
        row.updated_at = now
        s.flush()
        TenantDatabase.announce_change(s, app.short_key)

    def reset_secret(self, short_key: str, client_id: str, *, now: float) -> CreatedClient:
        """A new secret for a ``client_secret_basic`` client (shown once; the old one dies)."""
        with self.db.application_transaction(short_key) as (s, tenant_id):
            app = app_row(s, tenant_id, short_key, lock=True)
            row = client_row(app, client_id)
            if row.auth_method != "client_secret_basic":
                raise InvalidInput(f"client {row.name!r} does not authenticate with a secret")
            secret = secrets.token_urlsafe(32)
            row.secret_digest = self.data_keys.secret_digest(s, tenant_id, secret)
            row.updated_at = now
            s.flush()
            self.db.announce_change(s, short_key)
            return CreatedClient(client_view(row, app), secret)

    def delete(self, short_key: str, client_id: str) -> None:
        with self.db.application_transaction(short_key) as (s, tenant_id):
            app = app_row(s, tenant_id, short_key, lock=True)
            row = client_row(app, client_id)
            app.clients.remove(row)
            s.delete(row)
            self.db.announce_change(s, short_key)
