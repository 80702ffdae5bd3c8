"""The tenancy facade: one object for callers that need tenants, applications, clients
and key sets together (the CLI, the composition root, the demo).

The work is done by one class per concern — :class:`~.tenants.Tenants`,
:class:`~.applications.Applications`, :class:`~.clients.Clients`,
:class:`~.keys.KeySets` — over a :class:`~.store.TenantDatabase` (transactions scoped to
one tenant, T-28) and :class:`~.data_keys.DataKeys` (envelope encryption, T-24). This
class only wires them together and keeps the method names callers use.

The read API of the login path (``get_application``, ``get_client``,
``verify_client_secret``, ``application_keys``) returns immutable views
(:mod:`healthid_broker.tenancy.views`) that callers may cache.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from healthid_broker.crypto.app_signing import DEFAULT_ID_TOKEN_ALG
from healthid_broker.crypto.key_provider import KeyProvider

from .applications import Applications
from .clients import UNSET, Clients
from .data_keys import DataKeys
from .keys import ENVIRONMENTS, KeySets
from .keyset import RotationPolicy
from .store import TenantDatabase
from .tenants import Tenants
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


class TenancyService:
    """Tenants, applications, clients and key sets over a SQLAlchemy session factory."""

    def __init__(
        self,
        session_factory: Callable[[], Session],
        key_provider: KeyProvider,
        *,
        policy: RotationPolicy | None = None,
    ) -> None:
        self.policy = policy or RotationPolicy()
        self.db = TenantDatabase(session_factory)
        self.data_keys = DataKeys(key_provider)
        self.tenants = Tenants(self.db, self.data_keys)
        self.applications = Applications(self.db, self.data_keys, self.policy)
        self.clients = Clients(self.db, self.data_keys, self.policy)
        self.keys = KeySets(self.db, self.data_keys, self.policy)

    # tenants
    def create_tenant(self, name: str, *, now: float) -> TenantView:
        return self.tenants.create(name, now=now)

    def list_tenants(self) -> tuple[TenantView, ...]:
        return self.tenants.all()

    def get_tenant(self, name_or_id: str) -> TenantView | None:
        return self.tenants.get(name_or_id)

    # applications
    def create_application(
        self, tenant: str, short_key: str, *, display_name: str, organization_name: str,
        scopes: Iterable[str], required_acr: str, now: float, active: bool = True,
    ) -> ApplicationView:
        """Create an application and its key set (all four purposes, state current)."""
        return self.applications.create(
            tenant, short_key, display_name=display_name, organization_name=organization_name,
            scopes=scopes, required_acr=required_acr, now=now, active=active)

    def get_application(self, short_key: str) -> ApplicationView | None:
        return self.applications.get(short_key)

    def list_applications(self, tenant: str | None = None) -> tuple[ApplicationView, ...]:
        return self.applications.of_tenant(tenant)

    def update_application(
        self, short_key: str, *, now: float, display_name: str | None = None,
        organization_name: str | None = None, scopes: Iterable[str] | None = None,
        required_acr: str | None = None, active: bool | None = None,
    ) -> ApplicationView:
        return self.applications.update(
            short_key, now=now, display_name=display_name,
            organization_name=organization_name, scopes=scopes, required_acr=required_acr,
            active=active)

    def deactivate_application(self, short_key: str, *, now: float) -> ApplicationView:
        """No active application → no login (T-05)."""
        return self.applications.update(short_key, now=now, active=False)

    # clients
    def create_client(
        self, short_key: str, *, auth_method: str, redirect_uris: Iterable[str], now: float,
        name: str | None = None, scopes: Iterable[str] | None = None,
        jwks: Mapping[str, Any] | None = None, active: bool = True,
        id_token_alg: str = DEFAULT_ID_TOKEN_ALG, require_par: bool = False,
    ) -> CreatedClient:
        """Create a client; for ``client_secret_basic`` the secret is in the result ONCE.
        ``id_token_alg`` is its ``id_token_signed_response_alg`` (ES256, RS256, PS256);
        ``require_par``: the client must use the PAR endpoint (RFC 9126 §5)."""
        return self.clients.create(
            short_key, auth_method=auth_method, redirect_uris=redirect_uris, now=now,
            name=name, scopes=scopes, jwks=jwks, active=active, id_token_alg=id_token_alg,
            require_par=require_par)

    def get_client(self, short_key: str, client_id: str) -> ClientView | None:
        return self.clients.get(short_key, client_id)

    def list_clients(self, short_key: str) -> tuple[ClientView, ...]:
        return self.clients.of_application(short_key)

    def verify_client_secret(self, client: ClientView, secret: str) -> bool:
        """Constant-time check of a ``client_secret_basic`` secret (RFC 6749 §2.3.1)."""
        return self.clients.verify_secret(client, secret)

    def update_client(
        self, short_key: str, client_id: str, *, now: float,
        redirect_uris: Iterable[str] | None = None, scopes: Iterable[str] | None = None,
        jwks: Mapping[str, Any] | None = UNSET, active: bool | None = None,
        id_token_alg: str | None = None,
        require_par: bool | None = None,
    ) -> ClientView:
        return self.clients.update(short_key, client_id, now=now, redirect_uris=redirect_uris,
                                   scopes=scopes, jwks=jwks, active=active,
                                   id_token_alg=id_token_alg, require_par=require_par)

    def update_redirect_uris(
        self, short_key: str, client_id: str, redirect_uris: Iterable[str], *, now: float
    ) -> ClientView:
        return self.clients.update(short_key, client_id, now=now, redirect_uris=redirect_uris)

    def deactivate_client(self, short_key: str, client_id: str, *, now: float) -> ClientView:
        return self.clients.update(short_key, client_id, now=now, active=False)

    def reset_client_secret(self, short_key: str, client_id: str, *, now: float) -> CreatedClient:
        """A new secret for a ``client_secret_basic`` client (shown once; the old one dies)."""
        return self.clients.reset_secret(short_key, client_id, now=now)

    def delete_client(self, short_key: str, client_id: str) -> None:
        self.clients.delete(short_key, client_id)

    # keys
    def key_infos(self, short_key: str) -> tuple[KeyInfo, ...]:
        return self.keys.infos(short_key)

    def application_keys(self, short_key: str, now: float) -> AppKeys:
        """The keys usable at ``now`` (with private parts); see :class:`AppKeys`."""
        return self.keys.usable(short_key, now)

    def rotate_keys(
        self, short_key: str, now: float, *, force: bool = False,
        purposes: Iterable[str] | None = None,
    ) -> tuple[KeyChange, ...]:
        """Do the rotation steps that are due at ``now`` (see :mod:`.keyset`)."""
        return self.keys.rotate(short_key, now, force=force, purposes=purposes)

    def rotate_due(self, now: float) -> dict[str, tuple[KeyChange, ...]]:
        """:meth:`rotate_keys` for every application; returns the changes per short key."""
        return self.keys.rotate_due(now)

    def registration_data(
        self, short_key: str, *, base: str, environment: str, now: float
    ) -> dict[str, Any]:
        """What gematik's RP registration needs (T-23)."""
        return self.keys.registration_data(
            short_key, base=base, environment=environment, now=now)
