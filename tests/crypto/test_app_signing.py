"""RS256/PS256 toward the apps (joserfc): RSA ≥ 3072 bit, only these two algorithms, and
the federation's verification stays ES256-only."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwt
from joserfc.jwk import KeySet

from healthid_broker.crypto.app_signing import (
    MIN_RSA_BITS,
    RSASigningKey,
    load_rsa_private_key_pem,
    rsa_private_key_pem,
    sign_jws_rsa,
)
from healthid_broker.crypto.jose import JoseError, JWSHeaderError, parse_jws

KEY = RSASigningKey.generate(kid="k1")


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_signature_verifies_against_the_published_key(alg: str) -> None:
    token = sign_jws_rsa({"sub": "s", "n": 1}, KEY, alg, typ="JWT")
    keys = KeySet.import_key_set({"keys": [KEY.public_dict()]})
    tok = jwt.decode(token, keys, algorithms=[alg])
    assert tok.header == {"alg": alg, "kid": "k1", "typ": "JWT"}
    assert tok.claims == {"sub": "s", "n": 1}
    # the federation's own parser never accepts it (ES256 only, A_23196)
    with pytest.raises(JWSHeaderError):
        parse_jws(token)


def test_published_key_round_trip_and_no_private_members() -> None:
    pub = KEY.public_dict()
    assert pub["kty"] == "RSA" and pub["use"] == "sig" and "alg" not in pub
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(pub)
    again = RSASigningKey.from_public_dict(pub)
    assert again.public_key.public_numbers() == KEY.public_key.public_numbers()
    assert again.thumbprint() == KEY.thumbprint()
    assert load_rsa_private_key_pem(rsa_private_key_pem(
        KEY.private_key)).private_numbers() == KEY.private_key.private_numbers()  # type: ignore[union-attr]


def test_short_rsa_keys_and_other_algorithms_are_refused() -> None:
    short = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(JoseError, match="3072"):
        RSASigningKey.from_private_key(short, kid="s")
    for alg in ("ES256", "HS256", "none", "RS512", "PS384"):
        with pytest.raises(JoseError):
            sign_jws_rsa({"a": 1}, KEY, alg)
    with pytest.raises(JoseError, match="private"):
        sign_jws_rsa({"a": 1}, KEY.public(), "RS256")
    assert MIN_RSA_BITS == 3072


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.sampled_from(["kty", "n", "e", "kid", "d"]),
                       st.one_of(st.text(max_size=12), st.integers(), st.none())))
def test_hostile_public_jwks_raise_only_jose_errors(d: dict[str, object]) -> None:
    try:
        RSASigningKey.from_public_dict(d)
    except JoseError:
        pass
