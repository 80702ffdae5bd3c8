"""JOSE core: published RFC test vectors, cross-checks with joserfc, and hostile input."""

from __future__ import annotations

import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st
from joserfc import jwe as rfc_jwe
from joserfc import jws as rfc_jws
from joserfc.jwk import ECKey

from healthid_broker.crypto import jose
from healthid_broker.crypto.jose import (
    JWK,
    JoseError,
    JWSHeaderError,
    JWSSignatureError,
    b64u_decode,
    b64u_encode,
    decrypt_jwe,
    encrypt_jwe,
    parse_jws,
    sign_jws,
    verify_jws,
)

# RFC 7515 Appendix A.3 (ES256)
RFC7515_A3_KEY = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}
RFC7515_A3_JWS = (
    "eyJhbGciOiJFUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q"
)

# RFC 7518 Appendix C (ECDH-ES key agreement)
RFC7518_C_ALICE_EPK = {
    "kty": "EC",
    "crv": "P-256",
    "x": "gI0GAILBdu7T53akrFmMyGcsF3n5dO7MmwNBHKW5SV0",
    "y": "SLW_xSffzlPWrHEVI30DHM_4egVwt3NQqeUD7nMFpps",
    "d": "0_NxaRPUMQoAJt50Gz8YiTr8gRTwyEaCumd-MToTmIo",
}
RFC7518_C_BOB = {
    "kty": "EC",
    "crv": "P-256",
    "x": "weNJy2HscCSM6AEDTDg04biOvhFhyyWvOHQfeF_PxMQ",
    "y": "e8lnCO-AlStT-NJVX-crhB7QRYhiix03illJOVAOyck",
    "d": "VEmDZpDXXK8p8N0Cndsxs924q6nS1RXFASRl6BfUqdw",
}


def test_rfc7515_a3_es256_vector_verifies() -> None:
    key = JWK.from_dict(RFC7515_A3_KEY).public()
    parsed = parse_jws(RFC7515_A3_JWS)
    assert verify_jws(parsed, [key], require_kid=False) is key
    assert parsed.payload_json()["iss"] == "joe"
    # The same vector with one flipped signature byte must fail.
    bad = RFC7515_A3_JWS[:-2] + ("A" if RFC7515_A3_JWS[-2] != "A" else "B") + "Q"
    with pytest.raises(JWSSignatureError):
        verify_jws(parse_jws(bad), [key], require_kid=False)


def test_rfc7518_appendix_c_concat_kdf_vector() -> None:
    alice = JWK.from_dict(RFC7518_C_ALICE_EPK)
    bob = JWK.from_dict(RFC7518_C_BOB)
    assert alice.private_key is not None
    shared = alice.private_key.exchange(ec.ECDH(), bob.public_key)
    derived = jose._concat_kdf(shared, "A128GCM", b"Alice", b"Bob", key_bits=128)
    assert b64u_encode(derived) == "VqqN6vgjbSBcIijNcacQGg"


def test_jwk_thumbprint_matches_joserfc() -> None:
    key = JWK.generate()
    assert key.thumbprint() == ECKey.import_key(key.public_dict()).thumbprint()


def test_our_jws_verifies_in_joserfc_and_back() -> None:
    key = JWK.generate(kid="k1")
    token = sign_jws({"a": 1}, key, typ="entity-statement+jwt")
    rk = ECKey.import_key(key.private_dict())
    obj = rfc_jws.deserialize_compact(token, rk, algorithms=["ES256"])
    assert json.loads(obj.payload) == {"a": 1}
    theirs = rfc_jws.serialize_compact({"alg": "ES256", "kid": "k1"}, b'{"b":2}', rk,
                                       algorithms=["ES256"])
    assert verify_jws(parse_jws(theirs), [key.public()]).kid == "k1"


def test_jwe_interop_both_directions() -> None:
    rcpt = JWK.generate(kid="enc-1", use="enc", alg="ECDH-ES")
    rk = ECKey.import_key(rcpt.private_dict())
    ours = encrypt_jwe(b"payload", rcpt.public(), cty="JWT")
    plain = rfc_jwe.decrypt_compact(ours, rk, algorithms=["ECDH-ES", "A256GCM"]).plaintext
    assert plain == b"payload"
    theirs = rfc_jwe.encrypt_compact(
        {"alg": "ECDH-ES", "enc": "A256GCM", "kid": "enc-1", "cty": "JWT"}, b"hi", rk,
        algorithms=["ECDH-ES", "A256GCM"],
    )
    header, plain = decrypt_jwe(theirs, [rcpt])
    assert plain == b"hi" and header["cty"] == "JWT"


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256", "ES384", None])
def test_only_es256_accepted(alg: str | None) -> None:
    header = b64u_encode(json.dumps({"alg": alg, "kid": "k"}).encode())
    body = b64u_encode(b"{}")
    with pytest.raises(JWSHeaderError):
        parse_jws(f"{header}.{body}.")


def test_unknown_crit_rejected() -> None:
    key = JWK.generate(kid="k")
    token = sign_jws({}, key, extra_headers={"crit": ["exp-ext"], "exp-ext": 1})
    with pytest.raises(JWSHeaderError, match="crit"):
        parse_jws(token)


def test_wrong_typ_rejected() -> None:
    token = sign_jws({}, JWK.generate(kid="k"), typ="JWT")
    with pytest.raises(JWSHeaderError, match="typ"):
        parse_jws(token, expected_typ="entity-statement+jwt")


def test_unknown_kid_and_wrong_key() -> None:
    k1, k2 = JWK.generate(kid="k1"), JWK.generate(kid="k2")
    parsed = parse_jws(sign_jws({}, k1))
    with pytest.raises(JWSSignatureError, match="no key with kid"):
        verify_jws(parsed, [k2.public()])
    impostor = JWK(k2.public_key, kid="k1")
    with pytest.raises(JWSSignatureError, match="does not verify"):
        verify_jws(parsed, [impostor])


def test_jwe_tampering_and_wrong_key_fail() -> None:
    rcpt = JWK.generate(kid="e")
    token = encrypt_jwe(b"secret", rcpt.public())
    parts = token.split(".")
    ct = bytearray(b64u_decode(parts[3]))
    ct[0] ^= 1
    parts[3] = b64u_encode(bytes(ct))
    with pytest.raises(jose.JWEError):
        decrypt_jwe(".".join(parts), [rcpt])
    with pytest.raises(jose.JWEError):
        decrypt_jwe(token, [JWK.generate(kid="e")])
    with pytest.raises(jose.JWEError, match="kid"):
        decrypt_jwe(token, [JWK.generate(kid="other")])


def test_point_not_on_curve_rejected() -> None:
    d = JWK.generate().public_dict()
    d["y"] = d["x"]
    with pytest.raises(JoseError):
        JWK.from_dict(d)


def test_invalid_curve_attack_epk_rejected() -> None:
    rcpt = JWK.generate(kid="e")
    token = encrypt_jwe(b"x", rcpt.public())
    header = jose.parse_jwe_header(token)
    header["epk"]["crv"] = "P-384"
    parts = token.split(".")
    parts[0] = b64u_encode(json.dumps(header).encode())
    with pytest.raises(jose.JWEError, match="epk"):
        decrypt_jwe(".".join(parts), [rcpt])


@given(st.text(max_size=200))
def test_parse_jws_never_raises_anything_but_jose_error(s: str) -> None:
    try:
        parse_jws(s)
    except JoseError:
        pass


@given(st.text(max_size=300))
def test_decrypt_jwe_never_raises_anything_but_jose_error(s: str) -> None:
    try:
        decrypt_jwe(s, [JWK.generate(kid="k")])
    except JoseError:
        pass


@given(st.binary(max_size=100))
def test_b64u_roundtrip(data: bytes) -> None:
    assert b64u_decode(b64u_encode(data)) == data


@given(st.binary(max_size=300))
def test_b64u_encode_matches_the_standard_library(data: bytes) -> None:
    import base64

    assert b64u_encode(data) == base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_B64U_CHARS = st.sampled_from(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= \n.é")


@given(st.text(_B64U_CHARS, max_size=60) | st.text(max_size=60))
def test_b64u_decode_accepts_exactly_unpadded_base64url(s: str) -> None:
    """Same verdict and bytes as a reference built on the base64 module: only the url-safe
    alphabet, no padding, no whitespace, and a length that is not 1 mod 4."""
    import base64
    import binascii
    import re

    try:
        ref: bytes | None = (
            base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
            if re.fullmatch(r"[A-Za-z0-9_-]*", s) else None)
    except (binascii.Error, ValueError):
        ref = None
    try:
        got: bytes | None = b64u_decode(s)
    except JoseError:
        got = None
    assert got == ref
