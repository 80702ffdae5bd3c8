"""What the provider and the upstream side need to know about applications and clients.

Immutable views, built by the composition root's directory (``runtime/directory.py``) from
the tenancy service and cached briefly; the protocol code never touches the database. The
provider reads them through :class:`.interfaces.AppDirectory`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..crypto.jose import JWK
from ..upstream.entity_configuration import RpEntity
from ..upstream.flow import RelyingParty
from .client_auth import ClientAuthMethod


@dataclass(frozen=True)
class ClientConfig:
    client_id: str
    auth_method: str  # a ClientAuthMethod value
    redirect_uris: frozenset[str]
    allowed_scopes: frozenset[str]
    jwks: tuple[JWK, ...] = ()
    active: bool = True
    require_par: bool = False  # RFC 9126 §5 require_pushed_authorization_requests

    @property
    def public(self) -> bool:
        return self.auth_method == ClientAuthMethod.NONE

    @property
    def encryption_key(self) -> JWK | None:
        """The client's key for encrypted ID tokens (use=enc), if it registered one."""
        for k in self.jwks:
            if k.use == "enc":
                return k
        return None

    @property
    def signature_keys(self) -> tuple[JWK, ...]:
        return tuple(k for k in self.jwks if k.use in (None, "sig"))


@dataclass(frozen=True)
class AppConfig:
    short_key: str
    issuer: str  # == federation entity id
    display_name: str
    organization_name: str
    scopes: frozenset[str]
    required_acr: str
    active: bool
    clients: Mapping[str, ClientConfig]
    rp: RelyingParty = field(repr=False)
    entity: RpEntity = field(repr=False)
    id_token_key: JWK = field(repr=False)  # private, current
    provider_jwks: tuple[JWK, ...] = ()  # public, published
    pairwise_secret: bytes = field(default=b"", repr=False)
    verify_secret: Callable[[str, str], bool] = field(
        default=lambda _c, _s: False, repr=False, compare=False)

