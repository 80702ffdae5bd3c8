"""What the provider and the upstream side need to know about applications and clients.

Immutable views, built by the composition root's directory (``runtime/directory.py``) from
the tenancy service and cached briefly; the protocol code never touches the database. The
provider reads them through :class:`.interfaces.AppDirectory`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ..crypto.app_signing import DEFAULT_ID_TOKEN_ALG, RSASigningKey
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
    id_token_alg: str = DEFAULT_ID_TOKEN_ALG  # id_token_signed_response_alg
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
    id_token_rsa_key: RSASigningKey | None = field(default=None, repr=False)  # RS256/PS256
    provider_rsa_jwks: tuple[RSASigningKey, ...] = ()  # public, published
    pairwise_secret: bytes = field(default=b"", repr=False)
    verify_secret: Callable[[str, str], bool] = field(
        default=lambda _c, _s: False, repr=False, compare=False)


    def id_token_signer(self, client: ClientConfig) -> tuple[JWK | RSASigningKey, str] | None:
        """The key and algorithm for ``client``'s ID tokens (its registered
        ``id_token_signed_response_alg``); ``None`` if the application has no RSA key for
        an RSA algorithm (tenancy creates it with the first client that needs it)."""
        if client.id_token_alg == DEFAULT_ID_TOKEN_ALG:
            return self.id_token_key, DEFAULT_ID_TOKEN_ALG
        if self.id_token_rsa_key is None:
            return None
        return self.id_token_rsa_key, client.id_token_alg

    def published_jwks(self) -> dict[str, list[dict[str, object]]]:
        """The ``jwks_uri`` document: EC and RSA ID-token keys (current, next, retired)."""
        keys: list[dict[str, object]] = [k.public_dict() for k in self.provider_jwks]
        keys += [k.public_dict() for k in self.provider_rsa_jwks]
        return {"keys": keys}
