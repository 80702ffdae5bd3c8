"""JOSE for exactly what the TI federation uses: joserfc, behind the profile's own checks.

The cryptography — JWS signing input and ES256 signatures, ECDH-ES key agreement with the
Concat KDF, A256GCM content encryption, JWK import/export, RFC 7638 thumbprints and the
base64url codec — is joserfc's (``joserfc.jws``, ``joserfc.jwe``, ``joserfc.jwk.ECKey``,
``joserfc.util``), always called with registries that allow only the profile's algorithms:

* JWS compact serialisation with ``ES256`` on P-256 (RFC 7515, RFC 7518 §3.4);
* JWE compact serialisation with ``alg=ECDH-ES`` (direct key agreement, RFC 7518 §4.6)
  and ``enc=A256GCM`` (RFC 7518 §5.3);
* EC P-256 keys only (gematik A_23196).

What this module adds is validation policy (docs/decisions/0008-jose-on-joserfc.md):

* ``alg=none``, HMAC, RSA and every other algorithm are refused before any key is touched;
* ``crit`` is refused (we understand no extension, RFC 7515 §4.1.11), and so is ``b64``
  (RFC 7797 unencoded payloads) and ``zip`` (compressed JWE plaintext);
* ``typ`` is compared when the caller expects one; ``kid`` must be a string and, where the
  federation requires it, name one of the given keys;
* a key marked for another use (``use``) or algorithm (``alg``) is not used;
* the JWE's ephemeral key must be a public P-256 point with 32-byte coordinates (and
  on the curve, which joserfc's import checks), the IV 96 bits, the tag 128 bits, the
  encrypted key empty;
* sizes: compact serialisations, protected headers, payloads and signatures are bounded
  before anything is decoded;
* whatever the input, the only exception that leaves this module is :class:`JoseError`.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final

from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jwe as _jwe
from joserfc import jws as _jws
from joserfc.errors import JoseError as _LibraryError
from joserfc.jwk import ECKey
from joserfc.util import json_b64decode, urlsafe_b64decode, urlsafe_b64encode

from .. import jsoncodec

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

JWS_ALG: Final = "ES256"
JWE_ALG: Final = "ECDH-ES"
JWE_ENC: Final = "A256GCM"
CURVE: Final = "P-256"
_P256_COORD_LEN = 32

# Size limits, in characters of the compact serialisation (= bytes: it is ASCII).
# An ID-token JWS header carries one x5c certificate (~1.5 KB); entity statements, signed
# JWKS and IdP lists stay well below the payload bound.
MAX_JWS_HEADER: Final = 8 * 1024
MAX_JWS_PAYLOAD: Final = 128_000
MAX_JWS_SIGNATURE: Final = 1024  # ES256 needs 86; an RSA signature still reaches the alg check
MAX_JWS_LENGTH: Final = MAX_JWS_HEADER + MAX_JWS_PAYLOAD + MAX_JWS_SIGNATURE + 2
MAX_JWE_HEADER: Final = 4 * 1024  # alg, enc, cty, kid, epk, version: ~400 characters
MAX_JWE_CIPHERTEXT: Final = 64 * 1024  # the inner JWS of an ID token: a few KB
MAX_JWE_LENGTH: Final = MAX_JWE_HEADER + MAX_JWE_CIPHERTEXT + 16 + 22 + 4
_IV_CHARS = 16  # 96-bit IV (RFC 7518 §5.3)
_TAG_CHARS = 22  # 128-bit tag


class JoseError(ValueError):
    """Any malformed or unacceptable JOSE object."""


class JWSHeaderError(JoseError):
    """The protected header is malformed or names something we refuse."""


class JWSSignatureError(JoseError):
    """The signature does not verify with the given key(s)."""


class JWEError(JoseError):
    """A JWE could not be parsed or decrypted."""


# What joserfc (and cryptography or the json module underneath) raise on hostile input:
# its own errors, ValueError (binascii.Error, "Invalid EC key", a short GCM tag, bad JSON),
# TypeError/KeyError on odd JSON shapes, RecursionError on deeply nested JSON.
_LIBRARY_FAILURES = (_LibraryError, ValueError, TypeError, KeyError, RecursionError)


class _JWSLimits(_jws.JWSRegistry):
    max_header_length = MAX_JWS_HEADER
    max_payload_length = MAX_JWS_PAYLOAD
    max_signature_length = MAX_JWS_SIGNATURE


class _JWELimits(_jwe.JWERegistry):
    max_protected_header_length = MAX_JWE_HEADER
    max_encrypted_key_length = 0  # direct key agreement: the encrypted key is empty
    max_initialization_vector_length = _IV_CHARS
    max_ciphertext_length = MAX_JWE_CIPHERTEXT
    max_auth_tag_length = _TAG_CHARS


# Unknown header parameters are ignored, as RFC 7515 §4 and RFC 7516 §4 require (gematik's
# IdPs add ``version``); the registered ones are type-checked by joserfc; ``crit`` is ours.
_JWS_REGISTRY: Final = _JWSLimits(algorithms=[JWS_ALG], strict_check_header=False)
_JWE_REGISTRY: Final = _JWELimits(algorithms=[JWE_ALG, JWE_ENC], strict_check_header=False)


# --------------------------------------------------------------------------- base64url


def b64u_encode(data: bytes) -> str:
    """Base64url without padding (RFC 7515 §2)."""
    return urlsafe_b64encode(data).decode("ascii")


def b64u_decode(data: str) -> bytes:
    """Strict base64url: the url-safe alphabet only, no padding, no whitespace, and only
    the canonical encoding (no stray bits in the last character)."""
    if not isinstance(data, str):
        raise JoseError("base64url value must be a string")
    try:
        return urlsafe_b64decode(data.encode("ascii"))
    except (UnicodeEncodeError, binascii.Error, ValueError):
        raise JoseError("not base64url without padding") from None


# --------------------------------------------------------------------------- JWK


def _coordinate(d: Mapping[str, Any], name: str) -> bytes:
    value = d.get(name)
    if value is None:
        raise JoseError(f"JWK lacks the member {name!r}")
    raw = b64u_decode(value)
    if len(raw) != _P256_COORD_LEN:
        raise JoseError(f"EC P-256 member {name!r} must be 32 bytes")
    return raw


def _p256_members(d: Any) -> dict[str, str]:
    """The key members of an EC P-256 JWK, checked for shape (the point itself is checked
    by joserfc's import): ``kty``/``crv`` exactly, 32-byte coordinates and private value."""
    if not isinstance(d, Mapping):
        raise JoseError("JWK must be a JSON object")
    if d.get("kty") != "EC" or d.get("crv") != CURVE:
        raise JoseError("only EC P-256 keys are allowed (A_23196)")
    names = ("x", "y", "d") if "d" in d else ("x", "y")
    for name in names:
        _coordinate(d, name)
    members = {"kty": "EC", "crv": CURVE}
    members.update((name, d[name]) for name in names)
    return members


def _import(members: Mapping[str, str]) -> ECKey:
    try:
        return ECKey.import_key(dict(members))
    except _LIBRARY_FAILURES as exc:
        # cryptography: "Point is not on the curve" or a private part that does not match
        raise JoseError(f"not a valid EC P-256 key: {exc}") from None


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
        key = ECKey.generate_key(CURVE)
        assert key.private_key is not None
        return cls(key.public_key, key.private_key, kid=kid, use=use, alg=alg)

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
        imported = _import(_p256_members(d))
        x5c = d.get("x5c")
        if x5c is not None and (
            not isinstance(x5c, list) or not all(isinstance(c, str) for c in x5c)
        ):
            raise JoseError("x5c must be a list of base64 strings")
        for name in ("kid", "use", "alg"):
            if name in d and not isinstance(d[name], str):
                raise JoseError(f"JWK member {name!r} must be a string")
        return cls(
            imported.public_key,
            imported.private_key,
            kid=d.get("kid"),
            use=d.get("use"),
            alg=d.get("alg"),
            x5c=tuple(x5c) if x5c is not None else None,
        )

    @cached_property
    def joserfc_key(self) -> ECKey:
        """This key as joserfc's ``ECKey`` (the bare key: ``use``/``alg`` are checked by
        this module, before joserfc is called). Built once per JWK."""
        return ECKey.import_key(self.private_key or self.public_key)

    def _members(self, *, private: bool) -> dict[str, Any]:
        exported = self.joserfc_key.as_dict(private=private)
        out: dict[str, Any] = {"kty": "EC", "crv": CURVE, "x": exported["x"],
                               "y": exported["y"]}
        if self.kid is not None:
            out["kid"] = self.kid
        if self.use is not None:
            out["use"] = self.use
        if self.alg is not None:
            out["alg"] = self.alg
        if self.x5c is not None:
            out["x5c"] = list(self.x5c)
        if private:
            out["d"] = exported["d"]
        return out

    def public_dict(self) -> dict[str, Any]:
        return self._members(private=False)

    def private_dict(self) -> dict[str, Any]:
        if self.private_key is None:
            raise JoseError("no private key")
        return self._members(private=True)

    def thumbprint(self) -> str:
        """RFC 7638 JWK thumbprint (SHA-256), base64url."""
        return self.joserfc_key.thumbprint()

    def public(self) -> JWK:
        return JWK(self.public_key, None, self.kid, self.use, self.alg, self.x5c)

    def same_public_key(self, other: JWK) -> bool:
        return self.public_key.public_numbers() == other.public_key.public_numbers()


def _usable_for(key: JWK, use: str, alg: str) -> bool:
    """RFC 7517 §4.2/§4.4: a key published for another use or algorithm is not used."""
    return key.use in (None, use) and key.alg in (None, alg)


def _refuse_header_overrides(extra: Mapping[str, Any], fixed: Iterable[str]) -> None:
    clash = sorted(set(extra).intersection(fixed))
    if clash:
        raise JoseError(f"these header parameters are not the caller's to set: {clash}")


# --------------------------------------------------------------------------- JWS


@dataclass(frozen=True)
class ParsedJWS:
    """A compact JWS split into its parts; the signature is *not* verified yet."""

    header: dict[str, Any]
    payload_bytes: bytes
    compact: _jws.CompactSignature = field(repr=False, compare=False)

    @property
    def signing_input(self) -> bytes:
        """ASCII(BASE64URL(header) || '.' || BASE64URL(payload)) (RFC 7515 §5.1)."""
        segments = self.compact.segments
        return segments["header"] + b"." + segments["payload"]

    @property
    def signature(self) -> bytes:
        return b64u_decode(self.compact.segments["signature"].decode("ascii"))

    def payload_json(self) -> dict[str, Any]:
        try:
            data = jsoncodec.loads(self.payload_bytes)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
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
    if not _usable_for(key, "sig", JWS_ALG):
        raise JoseError(f"key {key.kid!r} is not an ES256 signing key")
    header: dict[str, Any] = {"alg": JWS_ALG}
    if key.kid is not None:
        header["kid"] = key.kid
    if typ is not None:
        header["typ"] = typ
    if extra_headers:
        _refuse_header_overrides(extra_headers, ("alg", "crit", "b64"))
        header.update(extra_headers)
    body = payload if isinstance(payload, bytes) else jsoncodec.dumps(payload)
    try:
        return _jws.serialize_compact(header, body, key.joserfc_key, registry=_JWS_REGISTRY)
    except _LIBRARY_FAILURES as exc:
        raise JoseError(f"cannot sign: {exc}") from None


def parse_jws(token: str, *, expected_typ: str | None = None) -> ParsedJWS:
    """Split and check a compact JWS without verifying the signature."""
    if not isinstance(token, str):
        raise JWSHeaderError("JWS must be a string")
    if len(token) > MAX_JWS_LENGTH:
        raise JWSHeaderError(f"JWS is longer than {MAX_JWS_LENGTH} characters")
    parts = token.split(".")
    if len(parts) != 3:
        raise JWSHeaderError("a compact JWS has exactly three parts")
    if not token.isascii():
        raise JWSHeaderError("JWS is not base64url")
    try:
        # sizes, base64url and the header's JSON; the header checked below is the very
        # dictionary joserfc verifies against
        compact = _jws.extract_compact(token.encode("ascii"), registry=_JWS_REGISTRY)
    except _LIBRARY_FAILURES as exc:
        raise JWSHeaderError(f"malformed JWS: {exc}") from None
    header = compact.protected
    if not isinstance(header, dict):
        raise JWSHeaderError("JWS header is not a JSON object")
    alg = header.get("alg")
    if alg != JWS_ALG:
        raise JWSHeaderError(f"JWS alg {alg!r} is not accepted (only ES256)")
    if "crit" in header:
        raise JWSHeaderError("JWS crit names extensions this profile does not support")
    if "b64" in header:
        raise JWSHeaderError("JWS b64 (RFC 7797 unencoded payload) is not accepted")
    if expected_typ is not None and header.get("typ") != expected_typ:
        raise JWSHeaderError(
            f"JWS typ is {header.get('typ')!r}, expected {expected_typ!r}"
        )
    if "kid" in header and not isinstance(header["kid"], str):
        raise JWSHeaderError("JWS kid must be a string")
    try:
        _JWS_REGISTRY.check_header(header)  # types of the registered parameters (x5c, …)
    except _LIBRARY_FAILURES as exc:
        raise JWSHeaderError(f"JWS header: {exc}") from None
    return ParsedJWS(header, compact.payload, compact)


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
        if not _usable_for(key, "sig", JWS_ALG):
            continue
        try:
            if _jws.validate_compact(parsed.compact, key.joserfc_key, registry=_JWS_REGISTRY):
                return key
        except _LIBRARY_FAILURES:
            continue
    raise JWSSignatureError(
        f"signature does not verify with key {kid!r}" if kid else "signature does not verify"
    )


# --------------------------------------------------------------------------- JWE


def encrypt_jwe(
    plaintext: bytes,
    recipient: JWK,
    *,
    cty: str | None = None,
    extra_headers: Mapping[str, Any] | None = None,
) -> str:
    """Encrypt to ``recipient`` with ECDH-ES (direct) and A256GCM."""
    if not _usable_for(recipient, "enc", JWE_ALG):
        raise JWEError(f"key {recipient.kid!r} is not an ECDH-ES encryption key")
    header: dict[str, Any] = {"alg": JWE_ALG, "enc": JWE_ENC}
    if cty is not None:
        header["cty"] = cty
    if recipient.kid is not None:
        header["kid"] = recipient.kid
    if extra_headers:
        _refuse_header_overrides(extra_headers, ("alg", "enc", "epk", "crit", "zip"))
        header.update(extra_headers)
    try:
        return _jwe.encrypt_compact(header, plaintext, recipient.joserfc_key,
                                    registry=_JWE_REGISTRY)
    except _LIBRARY_FAILURES as exc:
        raise JWEError(f"cannot encrypt: {exc}") from None


_COORD_CHARS = 43  # 32 bytes in unpadded base64url; joserfc's decoder takes only canonical


def _check_epk(epk: Any) -> None:
    """The ephemeral key's shape: a public EC P-256 JWK with 32-byte coordinates. Checked by
    length (the hot path: once per ID token); joserfc's import then decodes the coordinates
    strictly and cryptography refuses a point that is not on the curve."""
    if not isinstance(epk, dict) or epk.get("kty") != "EC" or epk.get("crv") != CURVE:
        raise JWEError("JWE epk unusable: only EC P-256 keys are allowed (A_23196)")
    if "d" in epk:
        raise JWEError("JWE epk unusable: an ephemeral public key must not carry 'd'")
    for name in ("x", "y"):
        value = epk.get(name)
        if not isinstance(value, str) or len(value) != _COORD_CHARS:
            raise JWEError(f"JWE epk unusable: {name!r} must be a 32-byte coordinate")


@dataclass(frozen=True)
class ParsedJWE:
    """A compact JWE split into its five parts, its protected header parsed; nothing is
    decrypted yet (so a caller can check the header first without parsing it twice)."""

    header: dict[str, Any]
    parts: tuple[str, ...]

    def decrypt(self, keys: Iterable[JWK]) -> bytes:
        """The plaintext, with the key named by the header's ``kid`` (ECDH-ES/A256GCM)."""
        header, parts = self.header, self.parts
        if header.get("alg") != JWE_ALG:
            raise JWEError(f"JWE alg {header.get('alg')!r} is not accepted (only ECDH-ES)")
        if header.get("enc") != JWE_ENC:
            raise JWEError(f"JWE enc {header.get('enc')!r} is not accepted (only A256GCM)")
        if "crit" in header:
            raise JWEError("JWE crit is not supported")
        if "zip" in header:
            raise JWEError("JWE zip (compressed plaintext) is not accepted")
        if parts[1] != "":
            raise JWEError("ECDH-ES direct key agreement has an empty encrypted key")
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise JWEError("JWE kid must be a string")
        candidates = [k for k in keys if k.private_key is not None
                      and _usable_for(k, "enc", JWE_ALG)]
        if kid is not None:
            candidates = [k for k in candidates if k.kid == kid]
            if not candidates:
                raise JWEError(f"no decryption key with kid {kid!r}")
        if not candidates:
            raise JWEError("no decryption key")
        if "epk" not in header:
            raise JWEError("JWE header lacks epk")
        _check_epk(header["epk"])
        if len(parts[2]) != _IV_CHARS or len(parts[4]) != _TAG_CHARS:
            raise JWEError("JWE iv or tag has the wrong length for A256GCM")
        token = ".".join(parts).encode("ascii")
        failure: Exception | None = None
        for key in candidates:
            try:
                return _jwe.decrypt_compact(token, key.joserfc_key,
                                            registry=_JWE_REGISTRY).plaintext or b""
            except _LIBRARY_FAILURES as exc:
                failure = exc
        raise JWEError(f"JWE does not decrypt with the available key(s): {failure}")


def parse_jwe(token: str) -> ParsedJWE:
    if not isinstance(token, str):
        raise JWEError("JWE must be a string")
    if len(token) > MAX_JWE_LENGTH:
        raise JWEError(f"JWE is longer than {MAX_JWE_LENGTH} characters")
    parts = token.split(".")
    if len(parts) != 5:
        raise JWEError("a compact JWE has exactly five parts")
    if len(parts[0]) > MAX_JWE_HEADER:
        raise JWEError(f"JWE header is longer than {MAX_JWE_HEADER} characters")
    if not token.isascii():
        raise JWEError("JWE is not base64url")
    try:
        # joserfc's own reading of the header, so the header checked here is the one it
        # decrypts with
        header = json_b64decode(parts[0].encode("ascii"))
    except _LIBRARY_FAILURES:
        raise JWEError("JWE header is not base64url JSON") from None
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
