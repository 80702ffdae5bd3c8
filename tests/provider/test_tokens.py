"""Pairwise subjects, ID tokens (signed and encrypted; decrypted with joserfc),
access tokens and authorization codes."""

from __future__ import annotations

import json
import os

import pytest
from authlib.oidc.core.util import create_half_hash  # type: ignore[import-untyped]
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwe, jws
from joserfc.jwk import ECKey

from healthid_broker.crypto.jose import JWK, parse_jws, verify_jws
from healthid_broker.crypto.keys import encryption_jwk, signing_jwk
from healthid_broker.provider.tokens import (
    ACCESS_TOKEN_MAX_LIFETIME,
    TokenError,
    at_hash,
    build_id_token,
    new_access_token,
    new_authorization_code,
    pairwise_subject,
)

SECRET_A, SECRET_B = os.urandom(32), os.urandom(32)
ids = st.text(min_size=1, max_size=60)


@settings(deadline=None)
@given(ids, ids)
def test_pairwise_stable_and_per_application(iss: str, sub: str) -> None:
    a1 = pairwise_subject(SECRET_A, iss, sub)
    assert a1 == pairwise_subject(SECRET_A, iss, sub)  # stable across logins
    assert a1 != pairwise_subject(SECRET_B, iss, sub)  # different per application
    assert len(a1) == 43


@settings(deadline=None)
@given(ids, ids, ids, ids)
def test_pairwise_distinguishes_people_and_idps(i1: str, s1: str, i2: str, s2: str) -> None:
    if (i1, s1) != (i2, s2):
        assert pairwise_subject(SECRET_A, i1, s1) != pairwise_subject(SECRET_A, i2, s2)


def test_pairwise_length_prefix_and_secret_size() -> None:
    assert pairwise_subject(SECRET_A, "a", "bc") != pairwise_subject(SECRET_A, "ab", "c")
    with pytest.raises(TokenError):
        pairwise_subject(b"short", "i", "s")
    with pytest.raises(TokenError):
        pairwise_subject(SECRET_A, "", "s")


SIG = signing_jwk()
CLAIMS = {"urn:telematik:claims:id": "X110411675"}


def _claims_of(token: str) -> dict[str, object]:
    parsed = parse_jws(token, expected_typ="JWT")
    verify_jws(parsed, [SIG.public()])
    return parsed.payload_json()


def test_signed_id_token_contents() -> None:
    token = build_id_token(
        signing_key=SIG, issuer="https://broker.example/app1", client_id="cid", subject="p",
        now=1000.7, claims=CLAIMS, nonce="n", auth_time=990, acr="gematik-ehealth-loa-high",
        amr=["urn:telematik:auth:eGK"], access_token="tok",
    )
    header = parse_jws(token).header
    assert header == {"alg": "ES256", "kid": SIG.kid, "typ": "JWT"}
    c = _claims_of(token)
    assert c == {
        "iss": "https://broker.example/app1", "sub": "p", "aud": "cid", "azp": "cid",
        "iat": 1000, "exp": 1300, "nonce": "n", "auth_time": 990,
        "acr": "gematik-ehealth-loa-high", "amr": ["urn:telematik:auth:eGK"],
        "at_hash": at_hash("tok"), **CLAIMS,
    }


def test_id_token_optional_claims_absent_and_reserved_refused() -> None:
    c = _claims_of(build_id_token(signing_key=SIG, issuer="i", client_id="c", subject="s",
                                  now=0))
    assert set(c) == {"iss", "sub", "aud", "azp", "iat", "exp"}
    with pytest.raises(TokenError, match="protocol claims"):
        build_id_token(signing_key=SIG, issuer="i", client_id="c", subject="s", now=0,
                       claims={"sub": "other"})
    with pytest.raises(TokenError, match="private"):
        build_id_token(signing_key=SIG.public(), issuer="i", client_id="c", subject="s", now=0)


@settings(deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
               min_size=1, max_size=64))
def test_at_hash_matches_authlib(token: str) -> None:
    # independent implementation: authlib's OIDC Core §3.1.3.6 half hash
    assert at_hash(token) == create_half_hash(token, "ES256").decode()


def test_encrypted_id_token_decrypts_with_joserfc() -> None:
    enc = encryption_jwk()
    token = build_id_token(signing_key=SIG, issuer="i", client_id="c", subject="s", now=0,
                           claims=CLAIMS, encryption_key=enc.public())
    assert token.count(".") == 4
    key = ECKey.import_key(enc.private_dict())
    obj = jwe.decrypt_compact(token, key)
    assert obj.protected["alg"] == "ECDH-ES" and obj.protected["enc"] == "A256GCM"
    assert obj.protected["cty"] == "JWT" and obj.protected["kid"] == enc.kid
    assert obj.plaintext is not None
    inner = obj.plaintext.decode()
    verified = jws.deserialize_compact(inner, ECKey.import_key(SIG.public_dict()))
    payload = json.loads(verified.payload)
    assert payload["urn:telematik:claims:id"] == "X110411675" and payload["aud"] == "c"
    # a different key cannot decrypt
    with pytest.raises(Exception):  # noqa: B017 - joserfc's own error type
        jwe.decrypt_compact(token, ECKey.import_key(encryption_jwk().private_dict()))


def test_encryption_key_must_be_enc() -> None:
    with pytest.raises(TokenError, match="enc key"):
        build_id_token(signing_key=SIG, issuer="i", client_id="c", subject="s", now=0,
                       encryption_key=signing_jwk().public())
    assert isinstance(JWK.generate(), JWK)


def test_access_tokens_and_codes() -> None:
    t = new_access_token()
    assert len(t.value) == 43 and t.expires_in == 300  # 32 bytes = 256 bit
    assert t.value != new_access_token().value
    body = t.response("idt")
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    assert set(body) == {"access_token", "token_type", "expires_in", "id_token"}
    for bad in (0, ACCESS_TOKEN_MAX_LIFETIME + 1):
        with pytest.raises(TokenError, match="A_23079"):
            new_access_token(lifetime=bad)
    assert new_access_token(lifetime=600).expires_in == 600
    # the token is the random input, nothing else (no personal data can be in it)
    assert new_access_token(random=lambda n: b"\x00" * n).value == "A" * 43
    with pytest.raises(TokenError):
        new_access_token(random=lambda n: b"\x00" * 16)
    code = new_authorization_code()
    assert len(code) == 43 and code != new_authorization_code()
    with pytest.raises(TokenError):
        new_authorization_code(random=lambda n: b"")
