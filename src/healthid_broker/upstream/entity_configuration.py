"""The relying party's entity configuration — one per application (the TI profile's
relying-party entity configuration, docs/ti-profile.md).

``<entity_id>/.well-known/openid-federation``: ``iss == sub == entity_id``,
``exp - iat <= 86400`` (A_23034), ``authority_hints = [master]``, top-level ``jwks`` = the
federation signing keys (current and next, A_24607); ``metadata.openid_relying_party`` with the
mTLS certificate as the single ``x5c`` of a sig key (A_23183) and the encryption key(s)
(A_23194; retired ones stay listed while statements naming them may live, A_28209).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..crypto.jose import JWK
from ..federation.statements import sign_statement

MAX_LIFETIME = 86400  # A_23034
DEFAULT_LIFETIME = 86400


@dataclass(frozen=True)
class RpEntity:
    entity_id: str
    master_entity_id: str
    client_name: str
    organization_name: str
    redirect_uris: tuple[str, ...]
    scope: str
    default_acr: str
    federation_keys: tuple[JWK, ...]  # public keys to publish (current + next)
    signing_key: JWK  # private, current
    mtls_sig_jwks: tuple[JWK, ...]  # public; each with exactly one x5c: an mTLS certificate
    enc_keys: tuple[JWK, ...]  # public encryption keys to publish
    id_token_versions: tuple[str, ...] = ("1.0.0", "2.0.0")


def entity_configuration_claims(rp: RpEntity, *, now: int,
                                lifetime: int = DEFAULT_LIFETIME) -> dict[str, Any]:
    if not 0 < lifetime <= MAX_LIFETIME:
        raise ValueError("an RP entity configuration lives at most 86400 s (A_23034)")
    rp_jwks: list[dict[str, Any]] = [k.public_dict() for k in rp.mtls_sig_jwks]
    rp_jwks += [k.public_dict() for k in rp.enc_keys]
    return {
        "iss": rp.entity_id,
        "sub": rp.entity_id,
        "iat": now,
        "exp": now + lifetime,
        "jwks": {"keys": [k.public_dict() for k in rp.federation_keys]},
        "authority_hints": [rp.master_entity_id],
        "metadata": {
            "openid_relying_party": {
                "client_name": rp.client_name,
                "organization_name": rp.organization_name,
                "redirect_uris": list(rp.redirect_uris),
                "response_types": ["code"],
                "client_registration_types": ["automatic"],
                "grant_types": ["authorization_code"],
                "require_pushed_authorization_requests": True,
                "token_endpoint_auth_method": "self_signed_tls_client_auth",
                "default_acr_values": [rp.default_acr],
                "id_token_signed_response_alg": "ES256",
                "id_token_encrypted_response_alg": "ECDH-ES",
                "id_token_encrypted_response_enc": "A256GCM",
                "scope": rp.scope,
                "ti_features_supported": {
                    "id_token_version_supported": list(rp.id_token_versions),
                },
                "jwks": {"keys": rp_jwks},
            },
            "federation_entity": {
                "organization_name": rp.organization_name,
            },
        },
    }


def sign_entity_configuration(rp: RpEntity, *, now: int,
                              lifetime: int = DEFAULT_LIFETIME) -> str:
    return sign_statement(entity_configuration_claims(rp, now=now, lifetime=lifetime),
                          rp.signing_key)


def scope_string(scopes: Sequence[str]) -> str:
    """ONE space-separated string that contains ``openid`` (docs/ti-profile.md)."""
    ordered = ["openid", *sorted(s for s in set(scopes) if s != "openid")]
    return " ".join(ordered)
