"""Immutable read views handed to protocol code (no ORM objects leak out).

All views are frozen dataclasses of tuples and strings, so callers may cache them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from healthid_broker.crypto.app_signing import DEFAULT_ID_TOKEN_ALG, DEVIATIONS, RSASigningKey
from healthid_broker.crypto.jose import JWK

from .validation import AUTH_METHODS

__all__ = [
    "AppKeys",
    "ApplicationView",
    "ClientView",
    "CreatedClient",
    "KeyChange",
    "KeyInfo",
    "MtlsIdentity",
    "TenantView",
]


@dataclass(frozen=True)
class TenantView:
    id: str
    name: str
    created_at: float


@dataclass(frozen=True)
class ClientView:
    """An OIDC client of an application. ``secret_digest`` is HMAC-SHA256(pepper, secret)."""

    client_id: str
    name: str
    tenant_id: str
    application_short_key: str
    auth_method: str
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    jwks: tuple[JWK, ...]
    active: bool
    created_at: float
    secret_digest: bytes | None = field(default=None, repr=False)
    id_token_alg: str = DEFAULT_ID_TOKEN_ALG  # id_token_signed_response_alg
    require_par: bool = False  # RFC 9126 §5

    @property
    def deviations(self) -> tuple[str, ...]:
        """Where this client's configuration deviates from BSI TR-02102-1 (RS256)."""
        text = DEVIATIONS.get(self.id_token_alg)
        return (text,) if text else ()

    @property
    def client_type(self) -> str:
        """``confidential`` or ``public`` (RFC 6749 §2.1)."""
        return AUTH_METHODS[self.auth_method]

    @property
    def requires_pkce(self) -> bool:
        return self.auth_method == "none"

    def summary(self) -> dict[str, Any]:
        """A JSON-able description without secrets."""
        return {
            "client_id": self.client_id,
            "name": self.name,
            "application": self.application_short_key,
            "type": self.client_type,
            "auth_method": self.auth_method,
            "redirect_uris": list(self.redirect_uris),
            "scopes": list(self.scopes),
            "jwks": {"keys": [k.public_dict() for k in self.jwks]} if self.jwks else None,
            "id_token_signed_response_alg": self.id_token_alg,
            "deviations": list(self.deviations),
            "active": self.active,
            "require_pushed_authorization_requests": self.require_par,
        }


@dataclass(frozen=True)
class ApplicationView:
    id: str
    tenant_id: str
    tenant_name: str
    short_key: str
    display_name: str
    organization_name: str
    scopes: tuple[str, ...]
    required_acr: str
    active: bool
    clients: tuple[ClientView, ...]
    created_at: float
    updated_at: float

    def entity_id(self, base: str) -> str:
        """The federation entity id ``<base>/<short-key>`` (= issuer toward the app)."""
        return f"{base.rstrip('/')}/{self.short_key}"

    def client(self, client_id: str) -> ClientView | None:
        for c in self.clients:
            if c.client_id == client_id:
                return c
        return None

    def summary(self) -> dict[str, Any]:
        return {
            "short_key": self.short_key,
            "tenant": self.tenant_name,
            "display_name": self.display_name,
            "organization_name": self.organization_name,
            "scopes": list(self.scopes),
            "required_acr": self.required_acr,
            "active": self.active,
            "clients": [c.summary() for c in self.clients],
        }


@dataclass(frozen=True)
class CreatedClient:
    """The result of creating a client: ``secret`` is shown ONCE and never stored."""

    client: ClientView
    secret: str | None = field(repr=False)


@dataclass(frozen=True)
class KeyInfo:
    """Public facts about one key of an application's key set (for listings)."""

    purpose: str
    kid: str
    state: str
    created_at: float
    activated_at: float | None
    retired_at: float | None
    not_after: float | None


@dataclass(frozen=True)
class KeyChange:
    """One step done by a rotation: ``published-next``, ``activated``, ``retired``,
    ``removed`` or ``pending`` (a next key still waiting for its publication time)."""

    purpose: str
    kid: str
    change: str
    at: float


@dataclass(frozen=True)
class MtlsIdentity:
    """The self-signed mTLS client identity (RFC 8705 §2.2, A_23183, A_23185-01)."""

    kid: str
    cert_pem: str
    x5c: tuple[str, ...]
    not_after: float
    key_pem: str = field(repr=False)
    jwk: JWK = field(repr=False)  # use=sig, alg=ES256, x5c=[cert]; has the private part


@dataclass(frozen=True)
class AppKeys:
    """An application's usable keys at one point in time (all with private parts).

    Order in every tuple: current, next, then retired keys still inside their
    publication window. Callers may cache this for a short time (e.g. 60 s).
    """

    short_key: str
    federation_signing_key: JWK = field(repr=False)
    federation_keys: tuple[JWK, ...] = field(repr=False)
    mtls: MtlsIdentity = field(repr=False)
    mtls_published: tuple[MtlsIdentity, ...] = field(repr=False)
    id_token_encryption_keys: tuple[JWK, ...] = field(repr=False)
    id_token_signing_key: JWK = field(repr=False)
    id_token_signing_keys: tuple[JWK, ...] = field(repr=False)
    id_token_rsa_keys: tuple[RSASigningKey, ...] = field(default=(), repr=False)

    @property
    def id_token_rsa_key(self) -> RSASigningKey | None:
        """The current RSA key (RS256/PS256), if a client of the application needs one."""
        return self.id_token_rsa_keys[0] if self.id_token_rsa_keys else None

    def federation_jwks(self) -> dict[str, Any]:
        """Top-level ``jwks`` of the entity configuration (public parts)."""
        return {"keys": [k.public_dict() for k in self.federation_keys]}

    def relying_party_jwks(self) -> dict[str, Any]:
        """``metadata.openid_relying_party.jwks``: the mTLS sig key(s) with x5c (A_23183)
        and the ID-token encryption key(s) (A_23194, A_28209)."""
        keys = [m.jwk.public_dict() for m in self.mtls_published]
        keys += [k.public_dict() for k in self.id_token_encryption_keys]
        return {"keys": keys}

    def provider_jwks(self) -> dict[str, Any]:
        """The broker's OP ``jwks_uri`` toward the app (ID-token signing keys, EC and RSA)."""
        keys = [k.public_dict() for k in self.id_token_signing_keys]
        keys += [k.public_dict() for k in self.id_token_rsa_keys]
        return {"keys": keys}
