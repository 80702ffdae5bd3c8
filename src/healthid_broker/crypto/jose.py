"""A small, strict JOSE implementation for exactly what the TI federation uses.

* JWS compact serialisation with ES256 on P-256 (RFC 7515, RFC 7518 §3.4).
* JWE compact serialisation with ``alg=ECDH-ES`` (direct key agreement, RFC 7518 §4.6)
  and ``enc=A256GCM`` (RFC 7518 §5.3).
* JWK import/export for EC P-256 keys and RFC 7638 thumbprints.

Deliberately narrow: every other algorithm is rejected, ``alg=none`` can never verify,
and a ``crit`` header naming an extension we do not understand is rejected (RFC 7515
§4.1.11).  All keys in the TI federation are EC P-256 (gematik A_23196).
"""

from __future__ import annotations

import binascii
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash

from .. import fastjson

__all__ = [
    "JWK",
    "JWEError",
    "JWSHeaderError",
    "JWSSignatureError",
    "JoseError",
    "ParsedJWE",
    "ParsedJWS",
    "b64u_decode",
    "b64u_encode",
    "decrypt_jwe",
    "encrypt_jwe",
    "parse_jwe",
    "parse_jwe_header",
    "parse_jws",
    "sign_jws",
    "verify_jws",
]

_P256_COORD_LEN = 32
_ES256 = ec.ECDSA(hashes.SHA256())  # immutable; one instance for every sign/verify


class JoseError(ValueError):
    """Any malformed or unacceptable JOSE object."""


class JWSHeaderError(JoseError):
    """The protected header is malformed or names something we refuse."""


class JWSSignatureError(JoseError):
    """The signature does not verify with the given key(s)."""


class JWEError(JoseError):
    """A JWE could not be parsed or decrypted."""


# binascii directly, with translation tables: the ``base64`` module's url-safe helpers add
# several Python calls per value, and a login encodes or decodes about twenty values.
_STD_TO_URL = bytes.maketrans(b"+/", b"-_")
_URL_TO_STD = bytes.maketrans(b"-_", b"+/")
_B64U_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def b64u_encode(data: bytes) -> str:
    return binascii.b2a_base64(data, newline=False).translate(_STD_TO_URL).rstrip(
        b"=").decode("ascii")


def b64u_decode(data: str) -> bytes:
    if not isinstance(data, str):
        raise JoseError("base64url value must be a string")
    try:
        raw = data.encode("ascii")
    except UnicodeEncodeError:
        raise JoseError("not base64url without padding") from None
    if raw.translate(None, _B64U_ALPHABET):  # no padding, whitespace or "+/" (RFC 7515 §2)
        raise JoseError("not base64url without padding")
    try:
        return binascii.a2b_base64(raw.translate(_URL_TO_STD) + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as exc:
        raise JoseError("invalid base64url") from exc


def _json_b64(obj: Mapping[str, Any]) -> str:
    return b64u_encode(fastjson.dumps(obj))


def _int_to_b64(n: int) -> str:
    return b64u_encode(n.to_bytes(_P256_COORD_LEN, "big"))


_P256 = ec.SECP256R1()


def _p256_public_key(x: bytes, y: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 point (x, y), checked to lie on the curve. From the uncompressed SEC 1
    encoding: half the cost of going through ``EllipticCurvePublicNumbers`` (this runs for
    every ID token's ephemeral key)."""
    if len(x) != _P256_COORD_LEN or len(y) != _P256_COORD_LEN:
        raise JoseError("EC P-256 coordinates must be 32 bytes")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(_P256, b"\x04" + x + y)
    except ValueError as exc:
        raise JoseError("EC point is not on P-256") from exc


def _public_key_of(d: Any) -> ec.EllipticCurvePublicKey:
    """The public point of a JWK's JSON object (EC P-256 only)."""
    if not isinstance(d, Mapping):
        raise JoseError("JWK must be a JSON object")
    if d.get("kty") != "EC" or d.get("crv") != "P-256":
        raise JoseError("only EC P-256 keys are allowed (A_23196)")
    try:
        x = b64u_decode(d["x"])
        y = b64u_decode(d["y"])
    except KeyError as exc:
        raise JoseError(f"JWK lacks the member {exc.args[0]!r}") from exc
    return _p256_public_key(x, y)


@dataclass(frozen=True)
class JWK:
    """An EC P-256 key with its JWK parameters (``kid``, ``use``, ``alg``, ``x5c``…)."""

    public_key: ec.EllipticCurvePublicKey
    private_key: ec.EllipticCurvePrivateKey | None = None
    kid: str | None = None
    use: str | None = None
    alg: str | None = None
    x5c: tuple[str, ...] | None = None

    @classmethod
    def generate(
        cls, *, kid: str | None = None, use: str | None = None, alg: str | None = None
    ) -> JWK:
        priv = ec.generate_private_key(ec.SECP256R1())
        return cls(priv.public_key(), priv, kid=kid, use=use, alg=alg)

    @classmethod
    def from_private_key(
        cls,
        key: ec.EllipticCurvePrivateKey,
        *,
        kid: str | None = None,
        use: str | None = None,
        alg: str | None = None,
        x5c: Iterable[str] | None = None,
    ) -> JWK:
        if not isinstance(key.curve, ec.SECP256R1):
            raise JoseError("only EC P-256 keys are allowed (A_23196)")
        return cls(
            key.public_key(), key, kid=kid, use=use, alg=alg,
            x5c=tuple(x5c) if x5c is not None else None,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JWK:
        pub = _public_key_of(d)
        priv = None
        if "d" in d:
            dval = int.from_bytes(b64u_decode(d["d"]), "big")
            priv = ec.derive_private_key(dval, ec.SECP256R1())
            if priv.public_key().public_numbers() != pub.public_numbers():
                raise JoseError("JWK private part does not match its public part")
        x5c = d.get("x5c")
        if x5c is not None and (
            not isinstance(x5c, list) or not all(isinstance(c, str) for c in x5c)
        ):
            raise JoseError("x5c must be a list of base64 strings")
        for name in ("kid", "use", "alg"):
            if name in d and not isinstance(d[name], str):
                raise JoseError(f"JWK member {name!r} must be a string")
        return cls(
            pub,
            priv,
            kid=d.get("kid"),
            use=d.get("use"),
            alg=d.get("alg"),
            x5c=tuple(x5c) if x5c is not None else None,
        )

    def public_dict(self) -> dict[str, Any]:
        nums = self.public_key.public_numbers()
        out: dict[str, Any] = {
            "kty": "EC",
            "crv": "P-256",
            "x": _int_to_b64(nums.x),
            "y": _int_to_b64(nums.y),
        }
        if self.kid is not None:
            out["kid"] = self.kid
        if self.use is not None:
            out["use"] = self.use
        if self.alg is not None:
            out["alg"] = self.alg
        if self.x5c is not None:
            out["x5c"] = list(self.x5c)
        return out

    def private_dict(self) -> dict[str, Any]:
        if self.private_key is None:
            raise JoseError("no private key")
        out = self.public_dict()
        out["d"] = _int_to_b64(self.private_key.private_numbers().private_value)
        return out

    def thumbprint(self) -> str:
        """RFC 7638 JWK thumbprint (SHA-256), base64url."""
        nums = self.public_key.public_numbers()
        x, y = _int_to_b64(nums.x), _int_to_b64(nums.y)
        canon = f'{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}'
        return b64u_encode(hashlib.sha256(canon.encode()).digest())

    def public(self) -> JWK:
        return JWK(self.public_key, None, self.kid, self.use, self.alg, self.x5c)

    def same_public_key(self, other: JWK) -> bool:
        return self.public_key.public_numbers() == other.public_key.public_numbers()


# --------------------------------------------------------------------------- JWS


_SUPPORTED_CRIT: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ParsedJWS:
    """A compact JWS split into its parts; the signature is *not* verified yet."""

    header: dict[str, Any]
    payload_bytes: bytes
    signing_input: bytes
    signature: bytes

    def payload_json(self) -> dict[str, Any]:
        try:
            data = fastjson.loads(self.payload_bytes)
        except (ValueError, UnicodeDecodeError) as exc:
            raise JoseError("JWS payload is not JSON") from exc
        if not isinstance(data, dict):
            raise JoseError("JWS payload is not a JSON object")
        return data

    @property
    def kid(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None


def sign_jws(
    payload: Mapping[str, Any] | bytes, key: JWK, *, typ: str | None = None,
    extra_headers: Mapping[str, Any] | None = None,
) -> str:
    """Sign ``payload`` with ES256. ``kid`` is taken from the key when it has one."""
    if key.private_key is None:
        raise JoseError("signing needs a private key")
    header: dict[str, Any] = {"alg": "ES256"}
    if key.kid is not None:
        header["kid"] = key.kid
    if typ is not None:
        header["typ"] = typ
    if extra_headers:
        header.update(extra_headers)
    body = (
        payload
        if isinstance(payload, bytes)
        else fastjson.dumps(payload)
    )
    signing_input = f"{_json_b64(header)}.{b64u_encode(body)}".encode("ascii")
    der = key.private_key.sign(signing_input, _ES256)
    r, s = decode_dss_signature(der)
    sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    return f"{signing_input.decode('ascii')}.{b64u_encode(sig)}"


def parse_jws(token: str, *, expected_typ: str | None = None) -> ParsedJWS:
    """Split and sanity-check a compact JWS without verifying the signature."""
    if not isinstance(token, str):
        raise JWSHeaderError("JWS must be a string")
    parts = token.split(".")
    if len(parts) != 3:
        raise JWSHeaderError("a compact JWS has exactly three parts")
    try:
        header = fastjson.loads(b64u_decode(parts[0]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise JWSHeaderError("JWS header is not base64url JSON") from exc
    if not isinstance(header, dict):
        raise JWSHeaderError("JWS header is not a JSON object")
    alg = header.get("alg")
    if alg != "ES256":
        raise JWSHeaderError(f"JWS alg {alg!r} is not accepted (only ES256)")
    crit = header.get("crit")
    if crit is not None:
        if not isinstance(crit, list) or not crit or not all(isinstance(c, str) for c in crit):
            raise JWSHeaderError("JWS crit must be a non-empty list of names")
        unknown = [c for c in crit if c not in _SUPPORTED_CRIT]
        if unknown:
            raise JWSHeaderError(f"JWS crit names unsupported extensions: {unknown}")
    if expected_typ is not None and header.get("typ") != expected_typ:
        raise JWSHeaderError(
            f"JWS typ is {header.get('typ')!r}, expected {expected_typ!r}"
        )
    if "kid" in header and not isinstance(header["kid"], str):
        raise JWSHeaderError("JWS kid must be a string")
    payload = b64u_decode(parts[1])
    sig = b64u_decode(parts[2])
    return ParsedJWS(header, payload, f"{parts[0]}.{parts[1]}".encode("ascii"), sig)


def _verify_sig(parsed: ParsedJWS, key: JWK) -> bool:
    if len(parsed.signature) != 64:
        return False
    r = int.from_bytes(parsed.signature[:32], "big")
    s = int.from_bytes(parsed.signature[32:], "big")
    try:
        key.public_key.verify(
            encode_dss_signature(r, s), parsed.signing_input, _ES256
        )
    except InvalidSignature:
        return False
    return True


def verify_jws(parsed: ParsedJWS, keys: Iterable[JWK], *, require_kid: bool = True) -> JWK:
    """Verify ``parsed`` with the key whose ``kid`` matches; return that key.

    With ``require_kid`` the header must carry a ``kid`` that names one of ``keys``
    (the federation's rule); a key with a matching ``kid`` is the only one tried.
    """
    keys = list(keys)
    kid = parsed.kid
    if kid is None:
        if require_kid:
            raise JWSHeaderError("JWS header has no kid")
        candidates = keys
    else:
        candidates = [k for k in keys if k.kid == kid]
        if not candidates:
            raise JWSSignatureError(f"no key with kid {kid!r}")
    for key in candidates:
        if _verify_sig(parsed, key):
            return key
    raise JWSSignatureError(
        f"signature does not verify with key {kid!r}" if kid else "signature does not verify"
    )


# --------------------------------------------------------------------------- JWE

_ENC_KEY_BITS = 256  # A256GCM


def _concat_kdf(
    shared: bytes, enc: str, apu: bytes, apv: bytes, key_bits: int = _ENC_KEY_BITS
) -> bytes:
    """RFC 7518 §4.6.2: Concat KDF for ECDH-ES in direct key agreement mode."""

    def _lp(b: bytes) -> bytes:
        return len(b).to_bytes(4, "big") + b

    other = (
        _lp(enc.encode("ascii")) + _lp(apu) + _lp(apv) + key_bits.to_bytes(4, "big")
    )
    return ConcatKDFHash(hashes.SHA256(), key_bits // 8, other).derive(shared)


def encrypt_jwe(
    plaintext: bytes,
    recipient: JWK,
    *,
    cty: str | None = None,
    extra_headers: Mapping[str, Any] | None = None,
    _ephemeral: ec.EllipticCurvePrivateKey | None = None,
    _iv: bytes | None = None,
) -> str:
    """Encrypt to ``recipient`` with ECDH-ES (direct) and A256GCM."""
    eph = _ephemeral or ec.generate_private_key(ec.SECP256R1())
    shared = eph.exchange(ec.ECDH(), recipient.public_key)
    header: dict[str, Any] = {"alg": "ECDH-ES", "enc": "A256GCM"}
    if cty is not None:
        header["cty"] = cty
    if recipient.kid is not None:
        header["kid"] = recipient.kid
    header["epk"] = JWK(eph.public_key()).public_dict()
    if extra_headers:
        header.update(extra_headers)
    apu = b64u_decode(header["apu"]) if "apu" in header else b""
    apv = b64u_decode(header["apv"]) if "apv" in header else b""
    cek = _concat_kdf(shared, "A256GCM", apu, apv)
    protected = _json_b64(header)
    iv = _iv or os.urandom(12)
    ct_tag = AESGCM(cek).encrypt(iv, plaintext, protected.encode("ascii"))
    ct, tag = ct_tag[:-16], ct_tag[-16:]
    return f"{protected}..{b64u_encode(iv)}.{b64u_encode(ct)}.{b64u_encode(tag)}"


@dataclass(frozen=True)
class ParsedJWE:
    """A compact JWE split into its five parts, its protected header parsed; nothing is
    decrypted yet (so a caller can check the header first without parsing it twice)."""

    header: dict[str, Any]
    parts: tuple[str, ...]

    def decrypt(self, keys: Iterable[JWK]) -> bytes:
        """The plaintext, with the key named by the header's ``kid`` (ECDH-ES/A256GCM)."""
        header, parts = self.header, self.parts
        if header.get("alg") != "ECDH-ES":
            raise JWEError(f"JWE alg {header.get('alg')!r} is not accepted (only ECDH-ES)")
        if header.get("enc") != "A256GCM":
            raise JWEError(f"JWE enc {header.get('enc')!r} is not accepted (only A256GCM)")
        if "crit" in header:
            raise JWEError("JWE crit is not supported")
        if parts[1] != "":
            raise JWEError("ECDH-ES direct key agreement has an empty encrypted key")
        kid = header.get("kid")
        candidates = [k for k in keys if k.private_key is not None]
        if kid is not None:
            candidates = [k for k in candidates if k.kid == kid]
            if not candidates:
                raise JWEError(f"no decryption key with kid {kid!r}")
        if not candidates:
            raise JWEError("no decryption key")
        epk = header.get("epk")
        if epk is None:
            raise JWEError("JWE header lacks epk")
        try:
            epk_key = _public_key_of(epk)  # only the point matters: no JWK object
        except JoseError as exc:
            raise JWEError(f"JWE epk unusable: {exc}") from exc
        try:
            apu = b64u_decode(header["apu"]) if "apu" in header else b""
            apv = b64u_decode(header["apv"]) if "apv" in header else b""
            iv = b64u_decode(parts[2])
            ct = b64u_decode(parts[3])
            tag = b64u_decode(parts[4])
        except JoseError as exc:
            raise JWEError(f"JWE part malformed: {exc}") from exc
        if len(iv) != 12 or len(tag) != 16:
            raise JWEError("JWE iv or tag has the wrong length for A256GCM")
        aad = parts[0].encode("ascii")
        for key in candidates:
            assert key.private_key is not None
            shared = key.private_key.exchange(_ECDH, epk_key)
            cek = _concat_kdf(shared, "A256GCM", apu, apv)
            try:
                return AESGCM(cek).decrypt(iv, ct + tag, aad)
            except InvalidTag:
                continue
        raise JWEError("JWE does not decrypt with the available key(s)")


_ECDH = ec.ECDH()


def parse_jwe(token: str) -> ParsedJWE:
    if not isinstance(token, str):
        raise JWEError("JWE must be a string")
    parts = token.split(".")
    if len(parts) != 5:
        raise JWEError("a compact JWE has exactly five parts")
    try:
        header = fastjson.loads(b64u_decode(parts[0]))
    except (ValueError, UnicodeDecodeError) as exc:
        raise JWEError("JWE header is not base64url JSON") from exc
    if not isinstance(header, dict):
        raise JWEError("JWE header is not a JSON object")
    return ParsedJWE(header, tuple(parts))


def parse_jwe_header(token: str) -> dict[str, Any]:
    return parse_jwe(token).header


def decrypt_jwe(token: str, keys: Iterable[JWK]) -> tuple[dict[str, Any], bytes]:
    """Decrypt an ECDH-ES/A256GCM JWE with the key named by its ``kid``.

    Returns the protected header and the plaintext.
    """
    parsed = parse_jwe(token)
    return parsed.header, parsed.decrypt(keys)
