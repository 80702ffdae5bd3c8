"""Signing toward the applications with RSA: RS256 and PS256 (RFC 7518 §3.3, §3.5).

The broker signs ID tokens for apps with ES256 by default (the key type of the TI
federation, :mod:`.jose`). A client may register ``id_token_signed_response_alg`` =
``RS256`` (the algorithm OIDC Core §15.1 makes mandatory to implement) or ``PS256``; for
those the application has one RSA key of at least :data:`MIN_RSA_BITS` bits (BSI
TR-02102-1 §3.5 recommends ≥ 3000 bit), published without ``alg`` so that it serves both
algorithms. The signature itself is joserfc's (``joserfc.jws`` with ``joserfc.jwk.RSAKey``),
called with a registry that allows exactly these two algorithms.

Nothing here verifies: the federation's rules (ES256 only, :func:`.jose.verify_jws`) stay
as they are. RS256 (RSASSA-PKCS1-v1_5) is a deviation from BSI TR-02102-1, which phases
PKCS#1 v1.5 signatures out; :data:`DEVIATIONS` words it for every place that shows a
client's configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Final

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from joserfc import jws as _jws
from joserfc.errors import JoseError as _LibraryError
from joserfc.jwk import RSAKey

from .. import jsoncodec
from .jose import JoseError, b64u_decode

__all__ = [
    "DEFAULT_ID_TOKEN_ALG",
    "DEVIATIONS",
    "ID_TOKEN_ALGS",
    "MIN_RSA_BITS",
    "RSA_ALGS",
    "RSASigningKey",
    "load_rsa_private_key_pem",
    "rsa_private_key_pem",
    "sign_jws_rsa",
]

DEFAULT_ID_TOKEN_ALG: Final = "ES256"  # noqa: S105 (an algorithm name, not a secret)
RSA_ALGS: Final = ("RS256", "PS256")
ID_TOKEN_ALGS: Final = (DEFAULT_ID_TOKEN_ALG, *RSA_ALGS)
MIN_RSA_BITS: Final = 3072
_PUBLIC_EXPONENT: Final = 65537

DEVIATIONS: Final[Mapping[str, str]] = {
    "RS256": "RS256 (RSASSA-PKCS1-v1_5) deviates from BSI TR-02102-1, which phases out "
             "PKCS#1 v1.5 signatures; prefer ES256 or PS256",
}

_REGISTRY: Final = _jws.JWSRegistry(algorithms=list(RSA_ALGS))
_FAILURES = (_LibraryError, ValueError, TypeError, KeyError)


@dataclass(frozen=True)
class RSASigningKey:
    """An RSA key (≥ 3072 bit) for RS256/PS256, with its ``kid``; published as a
    ``use=sig`` JWK without ``alg``."""

    public_key: rsa.RSAPublicKey
    private_key: rsa.RSAPrivateKey | None = None
    kid: str | None = None

    def __post_init__(self) -> None:
        if self.public_key.key_size < MIN_RSA_BITS:
            raise JoseError(f"RSA keys must have at least {MIN_RSA_BITS} bits")

    @classmethod
    def generate(cls, *, kid: str, bits: int = MIN_RSA_BITS) -> RSASigningKey:
        key = rsa.generate_private_key(public_exponent=_PUBLIC_EXPONENT, key_size=bits)
        return cls(key.public_key(), key, kid)

    @classmethod
    def from_private_key(cls, key: rsa.RSAPrivateKey, *, kid: str) -> RSASigningKey:
        return cls(key.public_key(), key, kid)

    @classmethod
    def from_public_dict(cls, d: Mapping[str, Any]) -> RSASigningKey:
        """A published RSA JWK (public members only)."""
        if not isinstance(d, Mapping) or d.get("kty") != "RSA":
            raise JoseError("not an RSA JWK")
        if "d" in d:
            raise JoseError("a published RSA JWK must not carry private members")
        kid = d.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise JoseError("JWK member 'kid' must be a string")
        n, e = d.get("n"), d.get("e")
        if not isinstance(n, str) or not isinstance(e, str):
            raise JoseError("an RSA JWK needs the members 'n' and 'e'")
        numbers = rsa.RSAPublicNumbers(int.from_bytes(b64u_decode(e), "big"),
                                       int.from_bytes(b64u_decode(n), "big"))
        try:
            public = numbers.public_key()
        except ValueError as exc:
            raise JoseError(f"not a valid RSA key: {exc}") from None
        return cls(public, None, kid)

    @cached_property
    def joserfc_key(self) -> RSAKey:
        return RSAKey.import_key(self.private_key or self.public_key)

    def public_dict(self) -> dict[str, Any]:
        exported = self.joserfc_key.as_dict(private=False)
        out: dict[str, Any] = {"kty": "RSA", "n": exported["n"], "e": exported["e"],
                               "use": "sig"}
        if self.kid is not None:
            out["kid"] = self.kid
        return out

    def public(self) -> RSASigningKey:
        return RSASigningKey(self.public_key, None, self.kid)

    def thumbprint(self) -> str:
        """RFC 7638 JWK thumbprint (SHA-256), base64url."""
        return self.joserfc_key.thumbprint()


def sign_jws_rsa(payload: Mapping[str, Any], key: RSASigningKey, alg: str, *,
                 typ: str | None = None) -> str:
    """Sign ``payload`` with RS256 or PS256 (compact JWS, ``kid`` from the key)."""
    if alg not in RSA_ALGS:
        raise JoseError(f"{alg!r} is not an RSA signing algorithm offered here")
    if key.private_key is None:
        raise JoseError("signing needs a private key")
    header: dict[str, Any] = {"alg": alg}
    if key.kid is not None:
        header["kid"] = key.kid
    if typ is not None:
        header["typ"] = typ
    try:
        return _jws.serialize_compact(header, jsoncodec.dumps(payload), key.joserfc_key,
                                      registry=_REGISTRY)
    except _FAILURES as exc:
        raise JoseError(f"cannot sign: {exc}") from None


def rsa_private_key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def load_rsa_private_key_pem(data: bytes) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(data, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("expected an RSA private key")
    return key
