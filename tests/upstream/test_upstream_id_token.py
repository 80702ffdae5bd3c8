"""ID-token validation (A_23049, A_23005, A_22861, A_23202-02, A_27593, A_27505, A_23037)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from joserfc import jwe as rfc_jwe
from joserfc import jws as rfc_jws
from joserfc.jwk import ECKey

from healthid_broker.crypto.jose import JWK, b64u_decode, b64u_encode, sign_jws
from healthid_broker.upstream.errors import IdTokenError, UnknownSigningKey
from healthid_broker.upstream.id_token import (
    ACR_HIGH,
    ACR_SUBSTANTIAL,
    ValidatedIdToken,
    acr_sufficient,
    validate_id_token,
)

from .helpers import (
    IDP,
    NONCE,
    NOW,
    RP,
    id_token_claims,
    idp_token_key,
    make_id_token,
    rp_enc_key,
    tamper_header,
)

SIG = idp_token_key()
ENC = rp_enc_key()


def validate(token: str, **over: Any) -> ValidatedIdToken:
    kw: dict[str, Any] = {
        "decryption_keys": [ENC],
        "signing_keys": [SIG.public()],
        "issuer": IDP,
        "audience": RP,
        "nonce": NONCE,
        "required_acr": ACR_HIGH,
        "now": NOW,
    }
    kw.update(over)
    return validate_id_token(token, **kw)


def token(claims: dict[str, Any] | None = None, **kw: Any) -> str:
    kw.setdefault("sig_key", SIG)
    kw.setdefault("enc_key", ENC)
    return make_id_token(claims if claims is not None else id_token_claims(), **kw)


def reject(tok: str, reason: str, **over: Any) -> IdTokenError:
    with pytest.raises(IdTokenError) as ei:
        validate(tok, **over)
    assert ei.value.reason == reason, str(ei.value)
    return ei.value


# ------------------------------------------------------------------ positive


def test_version_1_without_header() -> None:
    v = validate(token())
    assert (v.iss, v.sub, v.acr, v.version) == (IDP, "a" * 64, ACR_HIGH, "1.0.0")
    assert v.amr == ("urn:telematik:auth:eGK",)
    assert v.auth_time == int(NOW) - 10
    assert v.claims["urn:telematik:claims:id"] == "X110411675"


def test_version_2_in_jwe_header() -> None:
    assert validate(token(jwe_version="2.0.0")).version == "2.0.0"


def test_version_in_inner_jws_header_like_reference_idp() -> None:
    # gematik's gsi-server writes version into the signed JWT header, also for 1.0.0.
    assert validate(token(jws_version="2.0.0")).version == "2.0.0"
    assert validate(token(jws_version="1.0.0")).version == "1.0.0"
    assert validate(token(jwe_version="2.0.0", jws_version="2.0.0")).version == "2.0.0"


def test_rotation_two_encryption_keys() -> None:
    old, new = rp_enc_key(), rp_enc_key()
    for k in (old, new):
        v = validate(token(enc_key=k), decryption_keys=[old, new])
        assert v.sub == "a" * 64


def test_aud_as_one_element_list() -> None:
    assert validate(token(id_token_claims(aud=[RP]))).iss == IDP


def test_leeway_accepts_small_skew() -> None:
    c = id_token_claims(iat=int(NOW) + 30, exp=int(NOW) - 30)
    assert validate(token(c)).iss == IDP


def test_missing_or_empty_optional_claims_tolerated() -> None:
    # A_23037
    c = id_token_claims(amr=None, auth_time=None, birthdate="")
    c["urn:telematik:claims:email"] = ""
    c["urn:telematik:claims:given_name"] = None
    v = validate(token(c))
    assert v.amr == () and v.auth_time is None and v.claims["birthdate"] == ""


def test_repr_hides_personal_data() -> None:
    v = validate(token())
    assert "X110411675" not in repr(v) and "a" * 64 not in repr(v)


# ------------------------------------------------------------------ JWE


def test_bad_jwe_alg() -> None:
    reject(tamper_header(token(), alg="ECDH-ES+A256KW"), "header")


def test_bad_jwe_enc() -> None:
    reject(tamper_header(token(), enc="A128GCM"), "header")


def test_wrong_cty() -> None:
    reject(token(cty=None), "header")
    reject(token(cty="json"), "header")


def test_unencrypted_id_token_rejected() -> None:
    reject(sign_jws(id_token_claims(), SIG), "header")


def test_wrong_encryption_key() -> None:
    other = rp_enc_key()
    reject(token(enc_key=other), "decryption")  # kid unknown to us
    same_kid = JWK.from_private_key(other.private_key, kid=ENC.kid)  # type: ignore[arg-type]
    reject(token(enc_key=same_kid), "decryption")  # known kid, wrong key


def test_tampered_ciphertext() -> None:
    parts = token().split(".")
    ct = bytearray(b64u_decode(parts[3]))
    ct[5] ^= 1
    parts[3] = b64u_encode(bytes(ct))
    reject(".".join(parts), "decryption")


def test_tampered_protected_header_breaks_tag() -> None:
    reject(tamper_header(token(), kid=ENC.kid, extra="x"), "decryption")


# ------------------------------------------------------------------ version


def test_unknown_version_rejected() -> None:
    reject(token(jwe_version="3.0.0"), "version")
    reject(token(jws_version="9"), "version")


def test_conflicting_versions_rejected() -> None:
    reject(token(jwe_version="2.0.0", jws_version="1.0.0"), "version")


def test_version_not_negotiated_is_rejected() -> None:
    reject(token(jwe_version="2.0.0"), "version", accepted_versions=("1.0.0",))
    reject(token(), "version", accepted_versions=("2.0.0",))


# ------------------------------------------------------------------ signature


def test_wrong_signature() -> None:
    forger = JWK.generate(kid=SIG.kid, use="sig")
    reject(token(sig_key=forger), "signature")


def test_unknown_kid_is_distinct_error() -> None:
    other = idp_token_key()
    with pytest.raises(UnknownSigningKey) as ei:
        validate(token(sig_key=other))
    assert ei.value.kid == other.kid and ei.value.reason == "unknown_kid"
    # after the re-fetch the new key is known: it validates
    assert validate(token(sig_key=other), signing_keys=[SIG, other.public()]).iss == IDP


def test_missing_kid_in_jws() -> None:
    nokid = JWK.from_private_key(SIG.private_key)  # type: ignore[arg-type]
    reject(token(sig_key=nokid), "header")


# ------------------------------------------------------------------ claims


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"exp": int(NOW) - 61}, "expired"),
        ({"iat": int(NOW) + 61, "exp": int(NOW) + 400}, "not_yet_valid"),
        ({"aud": [RP, "https://other.example"]}, "aud"),
        ({"aud": []}, "aud"),
        ({"aud": "https://other.example"}, "aud"),
        ({"aud": None}, "aud"),
        ({"iss": "https://evil.example"}, "iss"),
        ({"nonce": "other-nonce"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"sub": None}, "claims"),
        ({"sub": ""}, "claims"),
        ({"sub": 12345}, "claims"),
        ({"iat": None}, "claims"),
        ({"exp": "soon"}, "claims"),
        ({"acr": None}, "acr"),
        ({"acr": "gematik-ehealth-loa-low"}, "acr"),
    ],
)
def test_claim_checks(over: dict[str, Any], reason: str) -> None:
    err = reject(token(id_token_claims(**over)), reason)
    assert "X110411675" not in str(err) and NONCE not in str(err)


def test_insufficient_acr_for_high() -> None:
    c = id_token_claims(acr=ACR_SUBSTANTIAL, amr=["urn:telematik:auth:mEW"])
    reject(token(c), "acr", required_acr=ACR_HIGH)


@pytest.mark.parametrize("amr", [["urn:telematik:auth:mEW"], ["urn:telematik:auth:sso"]])
def test_substantial_with_allowed_amr(amr: list[str]) -> None:
    c = id_token_claims(acr=ACR_SUBSTANTIAL, amr=amr)
    assert validate(token(c), required_acr=ACR_SUBSTANTIAL).acr == ACR_SUBSTANTIAL


@pytest.mark.parametrize("consent", [["loa-substantial"], "loa-substantial"])
def test_substantial_with_consent_claim_v2(consent: Any) -> None:
    # A_27593; the reference IdP maps mEW/sso to amr "other" in version 2.0.0
    c = id_token_claims(acr=ACR_SUBSTANTIAL, amr=["urn:telematik:auth:other"])
    c["urn:telematik:auth:consent"] = consent
    v = validate(token(c, jwe_version="2.0.0"), required_acr=ACR_SUBSTANTIAL)
    assert v.version == "2.0.0"


@pytest.mark.parametrize(
    ("amr", "consent"),
    [
        (["urn:telematik:auth:other"], None),
        (["urn:telematik:auth:eGK"], None),
        (None, None),
        (["urn:telematik:auth:other"], ["something-else"]),
        ("urn:telematik:auth:other", "loa-high"),
    ],
)
def test_substantial_without_allowed_amr(amr: Any, consent: Any) -> None:
    c = id_token_claims(acr=ACR_SUBSTANTIAL, amr=amr)
    if consent is not None:
        c["urn:telematik:auth:consent"] = consent
    reject(token(c), "acr", required_acr=ACR_SUBSTANTIAL)


def test_high_satisfies_substantial() -> None:
    assert validate(token(), required_acr=ACR_SUBSTANTIAL).acr == ACR_HIGH


_AMRS = st.lists(
    st.sampled_from(
        [
            "urn:telematik:auth:eGK", "urn:telematik:auth:eID", "urn:telematik:auth:sso",
            "urn:telematik:auth:mEW", "urn:telematik:auth:other", "urn:telematik:auth:guest:eGK",
        ]
    ),
    max_size=4,
)


@settings(max_examples=200, deadline=None)
@given(
    required=st.sampled_from([ACR_HIGH, ACR_SUBSTANTIAL]),
    acr=st.sampled_from([ACR_HIGH, ACR_SUBSTANTIAL, "x", ""]),
    amr=_AMRS,
    consent=st.one_of(st.none(), st.sampled_from(["loa-substantial", "loa-high"]),
                      st.lists(st.sampled_from(["loa-substantial", "loa-high"]), max_size=2)),
)
def test_acr_rule_property(required: str, acr: str, amr: list[str], consent: Any) -> None:
    claims = {} if consent is None else {"urn:telematik:auth:consent": consent}
    ok = acr_sufficient(required, acr, amr, claims)
    cons = [consent] if isinstance(consent, str) else (consent or [])
    expected = acr == ACR_HIGH or (
        acr == ACR_SUBSTANTIAL and required == ACR_SUBSTANTIAL
        and (bool({"urn:telematik:auth:mEW", "urn:telematik:auth:sso"} & set(amr))
             or "loa-substantial" in cons)
    )
    assert ok == expected


def test_acr_rule_rejects_unknown_requirement() -> None:
    with pytest.raises(ValueError):
        acr_sufficient("gematik-ehealth-loa-low", ACR_HIGH, [], {})


# ------------------------------------------------------------------ joserfc cross-check


def test_joserfc_built_id_token_decrypts_and_validates() -> None:
    """An ID token made by the independent joserfc library, like the gematik IdP does."""
    sig = ECKey.generate_key("P-256", parameters={"kid": "idp-sig-1"}, private=True)
    enc_priv = rp_enc_key()
    enc_pub = ECKey.import_key(enc_priv.public_dict())
    claims = json.dumps(id_token_claims()).encode()
    x5c = list(idp_token_key().x5c or ())  # any certificate: x5c is carried, key from JWKS
    inner = rfc_jws.serialize_compact(
        {"alg": "ES256", "kid": "idp-sig-1", "typ": "JWT", "version": "2.0.0", "x5c": x5c},
        claims,
        sig,
        registry=rfc_jws.JWSRegistry(algorithms=["ES256"], strict_check_header=False),
    )
    outer = rfc_jwe.encrypt_compact(
        {"alg": "ECDH-ES", "enc": "A256GCM", "cty": "JWT", "kid": enc_priv.kid,
         "version": "2.0.0"},
        inner.encode(),
        enc_pub,
        registry=rfc_jwe.JWERegistry(algorithms=["ECDH-ES", "A256GCM"],
                                     strict_check_header=False),
    )
    sig_pub = JWK.from_dict(sig.as_dict(private=False) | {"use": "sig"})
    v = validate(outer, signing_keys=[sig_pub], decryption_keys=[rp_enc_key(), enc_priv])
    assert v.version == "2.0.0" and v.claims["birthdate"] == "1970-01-01"
