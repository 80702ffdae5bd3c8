"""Builders for what gematik's federation master and sectoral IdPs send."""

from __future__ import annotations

import json
from typing import Any

from healthid_broker.crypto.jose import JWK, encrypt_jwe, sign_jws
from healthid_broker.crypto.keys import (
    cert_der_b64,
    encryption_jwk,
    self_signed_client_cert,
    signing_jwk,
)

NOW = 1_750_000_000.0
MASTER = "https://master.example"
IDP = "https://idp.example"
RP = "https://broker.example/app1"
NONCE = "n-0S6_WzA2Mj"


def idp_token_key() -> JWK:
    """An IdP ID-token signing key with its x5c, as the reference IdP publishes it."""
    key = signing_jwk()
    assert key.private_key is not None
    cert = self_signed_client_cert(key.private_key, "idp.example token signer")
    return JWK.from_private_key(
        key.private_key, kid=key.kid, use="sig", alg="ES256", x5c=[cert_der_b64(cert)]
    )


def rp_enc_key() -> JWK:
    return encryption_jwk()


def id_token_claims(**over: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": IDP,
        "sub": "a" * 64,
        "aud": RP,
        "iat": int(NOW) - 5,
        "exp": int(NOW) + 295,
        "nonce": NONCE,
        "acr": "gematik-ehealth-loa-high",
        "amr": ["urn:telematik:auth:eGK"],
        "auth_time": int(NOW) - 10,
        "urn:telematik:claims:id": "X110411675",
        "birthdate": "1970-01-01",
    }
    for k, v in over.items():
        if v is None:
            claims.pop(k, None)
        else:
            claims[k] = v
    return claims


def make_id_token(
    claims: dict[str, Any],
    *,
    sig_key: JWK,
    enc_key: JWK,
    jwe_version: str | None = None,
    jws_version: str | None = None,
    cty: str | None = "JWT",
    jwe_extra: dict[str, Any] | None = None,
) -> str:
    """JWS ES256 {kid, x5c, typ JWT} inside JWE ECDH-ES/A256GCM {cty JWT, kid}."""
    jws_headers: dict[str, Any] = {"x5c": list(sig_key.x5c or ())}
    if jws_version is not None:
        jws_headers["version"] = jws_version
    jws = sign_jws(claims, sig_key, typ="JWT", extra_headers=jws_headers)
    extra: dict[str, Any] = dict(jwe_extra or {})
    if jwe_version is not None:
        extra["version"] = jwe_version
    return encrypt_jwe(jws.encode(), enc_key.public(), cty=cty, extra_headers=extra)


def tamper_header(token: str, **changes: Any) -> str:
    """Rewrite the JWE protected header (breaks the GCM tag as AAD, unless checked first)."""
    from healthid_broker.crypto.jose import b64u_decode, b64u_encode

    parts = token.split(".")
    header = json.loads(b64u_decode(parts[0]))
    header.update(changes)
    parts[0] = b64u_encode(json.dumps(header).encode())
    return ".".join(parts)
