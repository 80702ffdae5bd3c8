"""JOSE: published RFC test vectors, cross-checks with independent implementations, the
profile's policy on top of joserfc, and hostile input (only ``JoseError`` ever leaves)."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.concatkdf import ConcatKDFHash
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwe as rfc_jwe
from joserfc import jws as rfc_jws
from joserfc.jwk import ECKey, OctKey, RSAKey
from joserfc.registry import HeaderParameter

from healthid_broker.crypto import jose
from healthid_broker.crypto.jose import (
    JWK,
    JoseError,
    JWEError,
    JWSHeaderError,
    JWSSignatureError,
    b64u_decode,
    b64u_encode,
    decrypt_jwe,
    encrypt_jwe,
    parse_jwe,
    parse_jwe_header,
    parse_jws,
    sign_jws,
    verify_jws,
)

# authlib.jose is deprecated in favour of joserfc, which is exactly why it is useful here:
# an implementation of its own to cross-check against.
pytestmark = pytest.mark.filterwarnings("ignore::authlib.deprecate.AuthlibDeprecationWarning")

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

# RFC 7518 Appendix C (ECDH-ES key agreement, A128GCM, apu "Alice", apv "Bob")
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
RFC7518_C_DERIVED_KEY = "VqqN6vgjbSBcIijNcacQGg"

# RFC 7638 §3.1 (an RSA key: the RFC's only example)
RFC7638_RSA_KEY = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc"
    "_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FD"
    "W2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQF"
    "h6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"

# Keys made once (hypothesis runs the tests below hundreds of times).
SIG = JWK.generate(kid="sig-1", use="sig", alg="ES256")
ENC = JWK.generate(kid="enc-1", use="enc", alg="ECDH-ES")
VALID_JWS = sign_jws({"iss": "https://idp.example", "n": 1}, SIG, typ="JWT")
VALID_JWE = encrypt_jwe(VALID_JWS.encode(), ENC.public(), cty="JWT")


def b64j(obj: Any) -> str:
    return b64u_encode(json.dumps(obj).encode())


def with_header(token: str, header: dict[str, Any]) -> str:
    parts = token.split(".")
    parts[0] = b64j(header)
    return ".".join(parts)


def concat_kdf(shared: bytes, enc: str, apu: bytes, apv: bytes, bits: int) -> bytes:
    """RFC 7518 §4.6.2, written out here as the test's reference."""

    def lp(b: bytes) -> bytes:
        return len(b).to_bytes(4, "big") + b

    other = lp(enc.encode()) + lp(apu) + lp(apv) + bits.to_bytes(4, "big")
    return ConcatKDFHash(hashes.SHA256(), bits // 8, other).derive(shared)


def hand_made_jwe(header: dict[str, Any], cek: bytes, plaintext: bytes) -> str:
    protected = b64j(header)
    iv = bytes(range(12))
    sealed = AESGCM(cek).encrypt(iv, plaintext, protected.encode())
    return ".".join([protected, "", b64u_encode(iv), b64u_encode(sealed[:-16]),
                     b64u_encode(sealed[-16:])])


# --------------------------------------------------------------------------- RFC vectors


def test_rfc7515_a3_es256_vector_verifies() -> None:
    key = JWK.from_dict(RFC7515_A3_KEY).public()
    parsed = parse_jws(RFC7515_A3_JWS)
    assert verify_jws(parsed, [key], require_kid=False) is key
    assert parsed.payload_json()["iss"] == "joe"
    assert parsed.signing_input == RFC7515_A3_JWS.rsplit(".", 1)[0].encode()
    assert len(parsed.signature) == 64
    # The same vector with one flipped signature byte must fail.
    bad = RFC7515_A3_JWS[:-2] + ("A" if RFC7515_A3_JWS[-2] != "A" else "B") + "Q"
    with pytest.raises(JWSSignatureError):
        verify_jws(parse_jws(bad), [key], require_kid=False)


def test_rfc7518_appendix_c_key_agreement() -> None:
    """The RFC's ECDH-ES vector, end to end: the reference KDF gives the RFC's key; joserfc
    decrypts a JWE built with exactly that key (so its Concat KDF is the RFC's); and our
    profile refuses that JWE, because A128GCM is not A256GCM."""
    alice, bob = JWK.from_dict(RFC7518_C_ALICE_EPK), JWK.from_dict(RFC7518_C_BOB)
    assert alice.private_key is not None
    shared = alice.private_key.exchange(ec.ECDH(), bob.public_key)
    cek = concat_kdf(shared, "A128GCM", b"Alice", b"Bob", 128)
    assert b64u_encode(cek) == RFC7518_C_DERIVED_KEY
    header = {"alg": "ECDH-ES", "enc": "A128GCM", "apu": b64u_encode(b"Alice"),
              "apv": b64u_encode(b"Bob"), "epk": alice.public().public_dict()}
    token = hand_made_jwe(header, cek, b"RFC 7518 C")
    rk = ECKey.import_key(RFC7518_C_BOB)
    assert rfc_jwe.decrypt_compact(token, rk, algorithms=["ECDH-ES", "A128GCM"]).plaintext \
        == b"RFC 7518 C"
    with pytest.raises(JWEError, match="A256GCM"):
        decrypt_jwe(token, [bob])


def test_rfc7518_appendix_c_keys_with_a256gcm_decrypt_through_our_api() -> None:
    alice, bob = JWK.from_dict(RFC7518_C_ALICE_EPK), JWK.from_dict(RFC7518_C_BOB)
    assert alice.private_key is not None
    shared = alice.private_key.exchange(ec.ECDH(), bob.public_key)
    cek = concat_kdf(shared, "A256GCM", b"Alice", b"Bob", 256)
    header = {"alg": "ECDH-ES", "enc": "A256GCM", "apu": b64u_encode(b"Alice"),
              "apv": b64u_encode(b"Bob"), "epk": alice.public().public_dict()}
    header["epk"].pop("kid", None)
    assert decrypt_jwe(hand_made_jwe(header, cek, b"hello"), [bob])[1] == b"hello"
    # apu/apv are bound into the key: another apv, another key
    header["apv"] = b64u_encode(b"Eve")
    with pytest.raises(JWEError):
        decrypt_jwe(hand_made_jwe(header, cek, b"hello"), [bob])


def test_rfc7638_thumbprint() -> None:
    # the RFC's example, through joserfc (whose thumbprint our JWK uses)
    assert RSAKey.import_key(RFC7638_RSA_KEY).thumbprint() == RFC7638_THUMBPRINT
    # §3.2 for EC: the required members in lexicographic order, no whitespace
    key = JWK.from_dict(RFC7515_A3_KEY)
    canon = json.dumps({k: RFC7515_A3_KEY[k] for k in ("crv", "kty", "x", "y")},
                       separators=(",", ":"), sort_keys=True)
    expected = b64u_encode(hashlib.sha256(canon.encode()).digest())
    assert key.thumbprint() == expected
    # kid, use, alg and x5c do not take part
    assert JWK.from_dict({**RFC7515_A3_KEY, "kid": "x", "use": "sig"}).thumbprint() == expected


def test_jwk_roundtrip_and_fixed_width_coordinates() -> None:
    for _ in range(20):  # some keys have coordinates with leading zero bytes
        key = JWK.generate(kid="k", use="sig", alg="ES256")
        priv = key.private_dict()
        assert len(b64u_decode(priv["x"])) == len(b64u_decode(priv["d"])) == 32
        again = JWK.from_dict(priv)
        assert again.same_public_key(key) and again.kid == "k" and again.private_key
        assert "d" not in key.public_dict() and key.public().private_key is None
    with pytest.raises(JoseError):
        key.public().private_dict()


# --------------------------------------------------------------------------- cross-checks


def test_our_jws_verifies_in_joserfc_and_back() -> None:
    key = JWK.generate(kid="k1")
    token = sign_jws({"a": 1}, key, typ="entity-statement+jwt")
    rk = ECKey.import_key(key.private_dict())
    obj = rfc_jws.deserialize_compact(token, rk, algorithms=["ES256"])
    assert json.loads(obj.payload) == {"a": 1}
    theirs = rfc_jws.serialize_compact({"alg": "ES256", "kid": "k1"}, b'{"b":2}', rk,
                                       algorithms=["ES256"])
    assert verify_jws(parse_jws(theirs), [key.public()]).kid == "k1"


def test_jws_interop_with_authlib_both_directions() -> None:
    from authlib.jose import JsonWebKey, JsonWebSignature  # type: ignore[import-untyped]

    key = JWK.generate(kid="a1", use="sig", alg="ES256")
    ajws = JsonWebSignature(algorithms=["ES256"])
    ours = sign_jws({"x": [1, 2]}, key, typ="JWT")
    got = ajws.deserialize_compact(ours, JsonWebKey.import_key(key.public_dict()))
    assert json.loads(got["payload"]) == {"x": [1, 2]} and got["header"]["typ"] == "JWT"
    theirs = ajws.serialize_compact({"alg": "ES256", "kid": "a1"}, b'{"y":3}',
                                    JsonWebKey.import_key(key.private_dict())).decode()
    parsed = parse_jws(theirs)
    assert verify_jws(parsed, [key.public()]).kid == "a1"
    assert parsed.payload_json() == {"y": 3}


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


def test_jwe_interop_with_authlib_both_directions() -> None:
    from authlib.jose import JsonWebEncryption, JsonWebKey

    rcpt = JWK.generate(kid="e2", use="enc", alg="ECDH-ES")
    ajwe = JsonWebEncryption(algorithms=["ECDH-ES", "A256GCM"])
    ours = encrypt_jwe(b"to authlib", rcpt.public(), cty="JWT",
                       extra_headers={"version": "2.0.0"})
    got = ajwe.deserialize_compact(ours, JsonWebKey.import_key(rcpt.private_dict()))
    assert got["payload"] == b"to authlib" and got["header"]["version"] == "2.0.0"
    theirs = ajwe.serialize_compact(
        {"alg": "ECDH-ES", "enc": "A256GCM", "kid": "e2", "cty": "JWT"}, b"from authlib",
        JsonWebKey.import_key(rcpt.public_dict())).decode()
    assert decrypt_jwe(theirs, [rcpt])[1] == b"from authlib"


def test_id_token_shape_header_members_survive() -> None:
    """The TI ID token: JWS {alg, kid, typ, x5c} inside JWE {alg, enc, cty, kid, epk,
    version} — registered and unregistered header members pass through unchanged."""
    inner = sign_jws({"sub": "s"}, SIG, typ="JWT",
                     extra_headers={"x5c": ["MIIB"], "version": "2.0.0"})
    token = encrypt_jwe(inner.encode(), ENC.public(), cty="JWT",
                        extra_headers={"version": "2.0.0"})
    header = parse_jwe_header(token)
    assert {"alg", "enc", "cty", "kid", "epk", "version"} <= set(header)
    assert header["kid"] == "enc-1" and set(header["epk"]) == {"kty", "crv", "x", "y"}
    header, plain = decrypt_jwe(token, [ENC])
    jws = parse_jws(plain.decode(), expected_typ="JWT")
    assert jws.header == {"alg": "ES256", "kid": "sig-1", "typ": "JWT", "x5c": ["MIIB"],
                          "version": "2.0.0"}
    assert verify_jws(jws, [SIG.public()]).kid == "sig-1"


# --------------------------------------------------------------------------- JWS policy


@pytest.mark.parametrize("alg", ["none", "HS256", "RS256", "PS256", "ES384", "EdDSA", None,
                                 1, ["ES256"], "es256"])
def test_only_es256_accepted(alg: object) -> None:
    header = b64j({"alg": alg, "kid": "k"})
    body = b64u_encode(b"{}")
    with pytest.raises(JWSHeaderError, match="alg"):
        parse_jws(f"{header}.{body}.")


def test_alg_confusion_hmac_with_the_public_key_refused() -> None:
    """The classic attack: HS256 keyed with the verifier's public key bytes."""
    secret = json.dumps(SIG.public_dict()).encode()
    forged = rfc_jws.serialize_compact({"alg": "HS256", "kid": "sig-1"}, b'{"iss":"x"}',
                                       OctKey.import_key(secret), algorithms=["HS256"])
    with pytest.raises(JWSHeaderError, match="HS256"):
        verify_jws(parse_jws(forged), [SIG.public()])


def test_real_rsa_and_other_curve_tokens_refused() -> None:
    rsa = RSAKey.generate_key(2048)
    token = rfc_jws.serialize_compact({"alg": "RS256", "kid": "sig-1"}, b"{}", rsa,
                                      algorithms=["RS256"])
    with pytest.raises(JWSHeaderError, match="RS256"):
        parse_jws(token)
    p384 = ECKey.generate_key("P-384")
    token = rfc_jws.serialize_compact({"alg": "ES384", "kid": "sig-1"}, b"{}", p384,
                                      algorithms=["ES384"])
    with pytest.raises(JWSHeaderError, match="ES384"):
        parse_jws(token)


def test_alg_none_with_an_empty_signature_never_verifies() -> None:
    token = f"{b64j({'alg': 'none'})}.{b64u_encode(b'{}')}."
    with pytest.raises(JWSHeaderError):
        parse_jws(token)
    # an ES256 header with an empty signature parses but never verifies
    token = f"{b64j({'alg': 'ES256', 'kid': 'sig-1'})}.{b64u_encode(b'{}')}."
    with pytest.raises(JWSSignatureError):
        verify_jws(parse_jws(token), [SIG.public()])


def test_unknown_crit_rejected() -> None:
    key = JWK.generate(kid="k")
    registry = rfc_jws.JWSRegistry(header_registry={"exp-ext": HeaderParameter("x", "int")},
                                   algorithms=["ES256"])
    token = rfc_jws.serialize_compact(
        {"alg": "ES256", "kid": "k", "crit": ["exp-ext"], "exp-ext": 1}, b"{}",
        key.joserfc_key, registry=registry)
    with pytest.raises(JWSHeaderError, match="crit"):
        parse_jws(token)


def test_rfc7797_unencoded_payload_rejected() -> None:
    token = rfc_jws.serialize_compact(
        {"alg": "ES256", "kid": "sig-1", "b64": False, "crit": ["b64"]}, "payload",
        SIG.joserfc_key, algorithms=["ES256"])
    with pytest.raises(JWSHeaderError):
        parse_jws(token)
    with pytest.raises(JWSHeaderError, match="b64"):
        parse_jws(with_header(VALID_JWS, {"alg": "ES256", "kid": "sig-1", "b64": True}))


def test_sign_refuses_overriding_the_profile_headers() -> None:
    for extra in ({"alg": "none"}, {"crit": ["x"]}, {"b64": False}):
        with pytest.raises(JoseError, match="not the caller's"):
            sign_jws({}, SIG, extra_headers=extra)
    with pytest.raises(JoseError, match="private key"):
        sign_jws({}, SIG.public())


def test_wrong_typ_rejected() -> None:
    token = sign_jws({}, JWK.generate(kid="k"), typ="JWT")
    with pytest.raises(JWSHeaderError, match="typ"):
        parse_jws(token, expected_typ="entity-statement+jwt")
    assert parse_jws(token, expected_typ="JWT").header["typ"] == "JWT"


def test_kid_rules() -> None:
    k1, k2 = JWK.generate(kid="k1"), JWK.generate(kid="k2")
    parsed = parse_jws(sign_jws({}, k1))
    with pytest.raises(JWSSignatureError, match="no key with kid"):
        verify_jws(parsed, [k2.public()])
    impostor = JWK(k2.public_key, kid="k1")
    with pytest.raises(JWSSignatureError, match="does not verify"):
        verify_jws(parsed, [impostor])
    nokid = parse_jws(sign_jws({}, JWK(k1.public_key, k1.private_key)))
    with pytest.raises(JWSHeaderError, match="no kid"):
        verify_jws(nokid, [k1.public()])
    assert verify_jws(nokid, [k2.public(), k1.public()], require_kid=False).kid == "k1"
    with pytest.raises(JWSHeaderError, match="kid"):
        parse_jws(with_header(VALID_JWS, {"alg": "ES256", "kid": 7}))


def test_registered_header_members_are_type_checked() -> None:
    with pytest.raises(JWSHeaderError):
        parse_jws(with_header(VALID_JWS, {"alg": "ES256", "kid": "sig-1", "x5c": "MIIB"}))
    with pytest.raises(JWSHeaderError):
        parse_jws(with_header(VALID_JWS, {"alg": "ES256", "kid": "sig-1", "typ": ["JWT"]}))


def test_key_marked_for_another_use_or_alg_is_not_used() -> None:
    raw = JWK.generate(kid="k")
    token = sign_jws({}, raw)
    for use, alg in (("enc", None), (None, "ECDH-ES"), (None, "ES384")):
        other = JWK(raw.public_key, kid="k", use=use, alg=alg)
        with pytest.raises(JWSSignatureError):
            verify_jws(parse_jws(token), [other])
        with pytest.raises(JoseError, match="signing key"):
            sign_jws({}, JWK(raw.public_key, raw.private_key, kid="k", use=use, alg=alg))
    with pytest.raises(JWEError, match="encryption key"):
        encrypt_jwe(b"x", SIG.public())


def test_jws_size_limits() -> None:
    big_header = {"alg": "ES256", "kid": "sig-1", "pad": "x" * jose.MAX_JWS_HEADER}
    with pytest.raises(JWSHeaderError, match=r"header|size"):
        parse_jws(with_header(VALID_JWS, big_header))
    with pytest.raises(JWSHeaderError, match="longer"):
        parse_jws("a" * (jose.MAX_JWS_LENGTH + 1))
    big = sign_jws({"p": "x" * jose.MAX_JWS_PAYLOAD}, SIG)
    with pytest.raises(JWSHeaderError):
        parse_jws(big)
    # an entity statement of realistic size passes
    fine = sign_jws({"jwks": {"keys": [SIG.public_dict()] * 50}, "p": "x" * 20_000}, SIG)
    assert verify_jws(parse_jws(fine), [SIG.public()])


def test_deeply_nested_json_is_a_jose_error() -> None:
    nested_header = b64u_encode(b"[" * 3000 + b"]" * 3000)
    with pytest.raises(JWSHeaderError):
        parse_jws(f"{nested_header}.{b64u_encode(b'{}')}.")
    parsed = parse_jws(sign_jws(b'{"a":' + b"[" * 5000 + b"]" * 5000 + b"}", SIG))
    with pytest.raises(JoseError, match="payload"):
        parsed.payload_json()
    with pytest.raises(JWEError):
        parse_jwe(f"{nested_header}....")


# --------------------------------------------------------------------------- JWE policy


def test_jwe_tampering_and_wrong_key_fail() -> None:
    rcpt = JWK.generate(kid="e")
    token = encrypt_jwe(b"secret", rcpt.public())
    parts = token.split(".")
    ct = bytearray(b64u_decode(parts[3]))
    ct[0] ^= 1
    parts[3] = b64u_encode(bytes(ct))
    with pytest.raises(JWEError):
        decrypt_jwe(".".join(parts), [rcpt])
    with pytest.raises(JWEError):
        decrypt_jwe(token, [JWK.generate(kid="e")])
    with pytest.raises(JWEError, match="kid"):
        decrypt_jwe(token, [JWK.generate(kid="other")])
    with pytest.raises(JWEError, match="no decryption key"):
        decrypt_jwe(token, [rcpt.public()])


def test_jwe_key_rotation_without_kid_tries_each_key() -> None:
    old, new = JWK.generate(kid="old"), JWK.generate(kid="new")
    token = encrypt_jwe(b"x", JWK(new.public_key))  # no kid in the header
    assert "kid" not in parse_jwe_header(token)
    assert decrypt_jwe(token, [old, new])[1] == b"x"


_B64U = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _epk_variants() -> list[tuple[str, Any, str]]:
    """(what, epk, where it is caught): "epk" by the profile's shape check, "decrypt" by
    joserfc's import (strict base64url, the point on the curve)."""
    good = ECKey.generate_key("P-256").as_dict()
    p384 = ECKey.generate_key("P-384").as_dict()
    return [
        ("other curve", p384, "epk"),
        ("crv lies", {**p384, "crv": "P-256"}, "epk"),
        ("short coordinate", {**good, "x": good["x"][:-2]}, "epk"),
        ("private part", {**good, "d": ECKey.generate_key("P-256").as_dict(private=True)["d"]},
         "epk"),
        ("not an object", "epk", "epk"),
        ("RSA", {"kty": "RSA", "n": "AQAB", "e": "AQAB"}, "epk"),
        ("not on the curve", {**good, "y": good["x"]}, "decrypt"),
        ("bad base64", {**good, "x": "!" * 43}, "decrypt"),
        ("url-unsafe base64", {**good, "x": good["x"][:-1] + "/"}, "decrypt"),
        ("non-canonical base64", {**good, "x": good["x"][:-1] + _B64U[_B64U.index(
            good["x"][-1]) + 1]}, "decrypt"),  # a padding bit set in the last character
    ]


@pytest.mark.parametrize(("why", "epk", "caught"), _epk_variants(), ids=lambda v: str(v)[:20])
def test_invalid_ephemeral_keys_rejected(why: str, epk: Any, caught: str) -> None:
    header = parse_jwe_header(VALID_JWE) | {"epk": epk}
    with pytest.raises(JWEError, match=caught):
        decrypt_jwe(with_header(VALID_JWE, header), [ENC])


@pytest.mark.parametrize(("change", "match"), [
    ({"alg": "ECDH-ES+A256KW"}, "alg"),
    ({"alg": "RSA-OAEP"}, "alg"),
    ({"alg": "dir"}, "alg"),
    ({"enc": "A128GCM"}, "enc"),
    ({"enc": "A256CBC-HS512"}, "enc"),
    ({"zip": "DEF"}, "zip"),
    ({"crit": ["exp"], "exp": 1}, "crit"),
    ({"kid": 5}, "kid"),
])
def test_jwe_header_policy(change: dict[str, Any], match: str) -> None:
    header = parse_jwe_header(VALID_JWE) | change
    with pytest.raises(JWEError, match=match):
        decrypt_jwe(with_header(VALID_JWE, header), [ENC])


def test_jwe_segment_policy() -> None:
    parts = VALID_JWE.split(".")
    for index, value, match in (
        (1, b64u_encode(b"k" * 40), "encrypted key"),
        (2, b64u_encode(b"\0" * 16), "iv"),
        (4, b64u_encode(b"\0" * 8), "tag"),
    ):
        bad = list(parts)
        bad[index] = value
        with pytest.raises(JWEError, match=match):
            decrypt_jwe(".".join(bad), [ENC])


def test_jwe_size_limits() -> None:
    with pytest.raises(JWEError, match="longer"):
        parse_jwe("a" * (jose.MAX_JWE_LENGTH + 1))
    header = parse_jwe_header(VALID_JWE) | {"pad": "x" * jose.MAX_JWE_HEADER}
    with pytest.raises(JWEError, match="header"):
        parse_jwe(with_header(VALID_JWE, header))
    big = encrypt_jwe(b"x" * (jose.MAX_JWE_CIPHERTEXT + 1), ENC.public())
    with pytest.raises(JWEError):
        decrypt_jwe(big, [ENC])


# --------------------------------------------------------------------------- base64url


@given(st.binary(max_size=100))
def test_b64u_roundtrip(data: bytes) -> None:
    assert b64u_decode(b64u_encode(data)) == data


@given(st.binary(max_size=300))
def test_b64u_encode_matches_the_standard_library(data: bytes) -> None:
    assert b64u_encode(data) == base64.urlsafe_b64encode(data).rstrip(b"=").decode()


_B64U_CHARS = st.sampled_from(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/= \n.é")


@given(st.text(_B64U_CHARS, max_size=60) | st.text(max_size=60))
def test_b64u_decode_accepts_exactly_canonical_unpadded_base64url(s: str) -> None:
    """Same verdict and bytes as a reference built on the base64 module: only the url-safe
    alphabet, no padding, no whitespace, a length that is not 1 mod 4, and the one
    canonical spelling (unused bits of the last character zero, RFC 4648 §3.5)."""
    import binascii

    ref: bytes | None
    try:
        ref = (base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))
               if re.fullmatch(r"[A-Za-z0-9_-]*", s) else None)
    except (binascii.Error, ValueError):
        ref = None
    if ref is not None and b64u_encode(ref) != s:
        ref = None
    try:
        got: bytes | None = b64u_decode(s)
    except JoseError:
        got = None
    assert got == ref


def test_b64u_decode_refuses_non_strings() -> None:
    with pytest.raises(JoseError):
        b64u_decode(b"AAAA")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- hostile input

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) \
    | st.text(max_size=20)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
HEADER_NAMES = st.sampled_from(["alg", "kid", "typ", "crit", "b64", "x5c", "jku", "jwk",
                                "cty", "enc", "epk", "zip", "apu", "apv", "version"])
ALGS = st.sampled_from(["ES256", "none", "HS256", "RS256", "ES384", "ECDH-ES", "dir",
                        "ECDH-ES+A256KW", "A256GCM", ""]) | JSON_VALUES
HEADERS = st.dictionaries(HEADER_NAMES, JSON_VALUES, max_size=6).flatmap(
    lambda h: st.builds(lambda alg: {**h, "alg": alg}, ALGS) | st.just(h))
SEGMENT = st.text(st.sampled_from("ABCDabcd0123-_=+/. é\n"), max_size=40) \
    | st.builds(b64u_encode, st.binary(max_size=64)) | st.builds(b64j, JSON_VALUES)


def _only_jose_errors(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except JoseError:
        return None


def _jws_pipeline(token: Any) -> None:
    parsed = parse_jws(token)
    parsed.payload_json()
    verify_jws(parsed, [SIG.public()], require_kid=False)


def _jwe_pipeline(token: Any) -> None:
    decrypt_jwe(token, [ENC])


@given(st.text(max_size=300) | st.binary(max_size=50) | st.integers() | st.none())
@settings(deadline=None)  # real ECDH/ECDSA per example, on a shared machine
def test_arbitrary_values_raise_only_jose_errors(value: Any) -> None:
    _only_jose_errors(_jws_pipeline, value)
    _only_jose_errors(_jwe_pipeline, value)
    _only_jose_errors(parse_jwe_header, value)


@given(st.lists(SEGMENT, min_size=0, max_size=7))
@settings(deadline=None)  # real ECDH/ECDSA per example, on a shared machine
def test_any_segment_count_and_content_raise_only_jose_errors(segments: list[str]) -> None:
    token = ".".join(segments)
    _only_jose_errors(_jws_pipeline, token)
    _only_jose_errors(_jwe_pipeline, token)


@given(HEADERS)
@settings(max_examples=300, deadline=None)
def test_hostile_jws_headers(header: dict[str, Any]) -> None:
    """Any header on a real signature: refused with a JoseError, or it is a header the
    profile allows (ES256, no crit/b64) and the signature still decides."""
    token = with_header(VALID_JWS, header)
    parsed = _only_jose_errors(parse_jws, token)
    if parsed is not None:
        assert parsed.header["alg"] == "ES256"
        assert "crit" not in parsed.header and "b64" not in parsed.header
        with pytest.raises(JoseError):
            verify_jws(parsed, [SIG.public()], require_kid=False)


@given(HEADERS)
@settings(max_examples=300, deadline=None)
def test_hostile_jwe_headers(header: dict[str, Any]) -> None:
    token = with_header(VALID_JWE, header)
    with pytest.raises(JoseError):
        decrypt_jwe(token, [ENC])


@given(st.sampled_from(["alg", "kid", "typ", "x5c", "cty", "enc", "epk", "b64", "crit"]),
       JSON_VALUES)
@settings(deadline=None)  # real ECDH/ECDSA per example, on a shared machine
def test_one_hostile_member_in_a_real_id_token_header(name: str, value: Any) -> None:
    """One member of a genuine header replaced: the JWS may only still verify if the
    header did not change the signing input (it does: the header is signed)."""
    jws_header = {**parse_jws(VALID_JWS).header, name: value}
    _only_jose_errors(_jws_pipeline, with_header(VALID_JWS, jws_header))
    jwe_header = {**parse_jwe_header(VALID_JWE), name: value}
    _only_jose_errors(_jwe_pipeline, with_header(VALID_JWE, jwe_header))


@given(st.data())
@settings(deadline=None)  # real ECDH/ECDSA per example, on a shared machine
def test_mutated_tokens_never_pass(data: st.DataObject) -> None:
    for token, run in ((VALID_JWS, _jws_pipeline), (VALID_JWE, _jwe_pipeline)):
        pos = data.draw(st.integers(0, len(token) - 1))
        op = data.draw(st.sampled_from(["replace", "insert", "delete"]))
        char = data.draw(st.sampled_from("AQgw_-.0z=+/ "))
        cut = pos + (op != "insert")
        mutated = token[:pos] + ("" if op == "delete" else char) + token[cut:]
        if mutated == token:
            continue
        with pytest.raises(JoseError):
            run(mutated)


@given(st.integers(1, 40_000), st.sampled_from(["[", "{\"a\":", "\"", "A", "é"]))
@settings(max_examples=40, deadline=None)
def test_huge_or_nested_headers(n: int, unit: str) -> None:
    raw = (unit * n).encode()
    for token in (f"{b64u_encode(raw)}.e30.", f"{b64u_encode(raw)}.." + "A" * 16 + ".."):
        _only_jose_errors(_jws_pipeline, token)
        _only_jose_errors(_jwe_pipeline, token)


@given(st.dictionaries(st.sampled_from(["kty", "crv", "x", "y", "d", "kid", "use", "alg",
                                        "x5c"]), JSON_VALUES | SEGMENT, max_size=9))
@settings(deadline=None)  # real ECDH/ECDSA per example, on a shared machine
def test_hostile_jwk_dicts(d: dict[str, Any]) -> None:
    d = {**RFC7515_A3_KEY, **d} if len(d) % 2 else d
    key = _only_jose_errors(JWK.from_dict, d)
    if key is not None:
        assert d["kty"] == "EC" and d["crv"] == "P-256"
        assert key.public_dict()["x"] == d["x"]
