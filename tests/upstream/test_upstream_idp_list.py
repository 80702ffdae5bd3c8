"""The master's IdP list (typ idp-list+jwt) and an IdP's signed JWKS."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker.crypto.jose import JWK, sign_jws
from healthid_broker.crypto.keys import signing_jwk
from healthid_broker.http import HttpResponse
from healthid_broker.http.testing import RoutingClient, jwt_response
from healthid_broker.upstream.errors import IdpListError, SignedJwksError
from healthid_broker.upstream.idp_list import IdpEntry, fetch_idp_list, verify_idp_list
from healthid_broker.upstream.signed_jwks import fetch_signed_jwks, verify_signed_jwks

from .helpers import IDP, MASTER, NOW, idp_token_key

MASTER_KEY = signing_jwk()
IDP_FED_KEY = signing_jwk()


def entry(iss: str = "https://idp.tk.example", **over: Any) -> dict[str, Any]:
    e: dict[str, Any] = {
        "iss": iss,
        "organization_name": "Techniker Test",
        "logo_uri": "https://idp.tk.example/logo.png",
        "user_type_supported": "IP",
        "pkv": False,
    }
    e.update(over)
    return e


def idp_list(entries: list[Any] | None = None, *, key: JWK = MASTER_KEY, typ: str = "idp-list+jwt",
             **over: Any) -> str:
    payload: dict[str, Any] = {
        "iss": MASTER,
        "iat": int(NOW) - 10,
        "exp": int(NOW) + 86400,
        "idp_entity": entries if entries is not None else [entry(), entry(
            "https://idp.pkv.example", organization_name="PKV Test", pkv=True, logo_uri=None)],
        "unknown_extra": {"x": 1},
    }
    payload.update(over)
    return sign_jws(payload, key, typ=typ)


def verify(tok: str) -> Any:
    return verify_idp_list(tok, [MASTER_KEY.public()], master=MASTER, now=NOW)


def test_good_list() -> None:
    lst = verify(idp_list())
    assert lst.entries == (
        IdpEntry("https://idp.tk.example", "Techniker Test", "https://idp.tk.example/logo.png",
                 ("IP",), False),
        IdpEntry("https://idp.pkv.example", "PKV Test", None, ("IP",), True),
    )
    assert lst.skipped == () and lst.iss == MASTER
    assert lst.get("https://idp.pkv.example") is not None and lst.get("https://x") is None


def test_bad_signature() -> None:
    forger = JWK.generate(kid=MASTER_KEY.kid)
    with pytest.raises(IdpListError, match="does not verify"):
        verify(idp_list(key=forger))


def test_unknown_master_kid() -> None:
    with pytest.raises(IdpListError, match="does not verify"):
        verify(idp_list(key=signing_jwk()))


def test_wrong_typ() -> None:
    with pytest.raises(IdpListError, match="typ"):
        verify(idp_list(typ="entity-statement+jwt"))


@pytest.mark.parametrize(
    ("over", "match"),
    [
        ({"exp": int(NOW) - 61}, "expired"),
        ({"iat": int(NOW) + 61}, "future"),
        ({"iss": "https://other-master.example"}, "not the master"),
        ({"iat": None}, "iat"),
        ({"idp_entity": {"iss": "x"}}, "idp_entity"),
    ],
)
def test_envelope_errors(over: dict[str, Any], match: str) -> None:
    with pytest.raises(IdpListError, match=match):
        verify(idp_list(**over))


def test_malformed_entries_skipped_with_reason() -> None:
    entries = [
        entry(),
        "not an object",
        entry("http://plain-http.example"),
        entry("https://idp.q.example/?a=b"),
        entry("https://idp.noname.example", organization_name=""),
        entry("https://idp.pkv.example", pkv="yes"),
        entry("https://idp.ut.example", user_type_supported=[1]),
        entry(),  # duplicate
        entry("https://idp.logo.example", logo_uri="javascript:alert(1)"),
        entry("https://idp.list.example", user_type_supported=["IP", "HP"]),
    ]
    lst = verify(idp_list(entries))
    assert [e.iss for e in lst.entries] == [
        "https://idp.tk.example", "https://idp.logo.example", "https://idp.list.example"]
    assert lst.entries[1].logo_uri is None
    assert lst.entries[2].user_type_supported == ("IP", "HP")
    assert [s.index for s in lst.skipped] == [1, 2, 3, 4, 5, 6, 7]
    assert "duplicate" in lst.skipped[-1].reason


@pytest.mark.parametrize("logo", [
    "http://127.0.0.1:8404/static/logo.svg", "http://localhost/l.svg", "http://[::1]:9/l.svg"])
def test_loopback_http_logo_only_when_allowed(logo: str) -> None:
    tok = idp_list([entry(logo_uri=logo)])
    assert verify(tok).entries[0].logo_uri is None  # production: https logos only
    sandbox = verify_idp_list(tok, [MASTER_KEY.public()], master=MASTER, now=NOW,
                              allow_loopback_http_logos=True)
    assert sandbox.entries[0].logo_uri == logo


def test_non_loopback_http_logo_dropped_even_in_sandbox() -> None:
    tok = idp_list([entry(logo_uri="http://logos.example/l.svg")])
    sandbox = verify_idp_list(tok, [MASTER_KEY.public()], master=MASTER, now=NOW,
                              allow_loopback_http_logos=True)
    assert sandbox.entries[0].logo_uri is None


@settings(max_examples=100, deadline=None)
@given(st.lists(st.one_of(
    st.none(), st.integers(), st.text(max_size=5),
    st.dictionaries(st.sampled_from(["iss", "organization_name", "logo_uri", "pkv",
                                     "user_type_supported"]),
                    st.one_of(st.none(), st.booleans(), st.text(max_size=30),
                              st.just("https://idp.h.example")), max_size=5),
), max_size=6))
def test_entries_never_crash(entries: list[Any]) -> None:
    lst = verify(idp_list(entries))
    assert len(lst.entries) + len(lst.skipped) == len(entries)
    for e in lst.entries:
        assert e.iss.startswith("https://") and e.organization_name


@pytest.mark.anyio
async def test_fetch_idp_list() -> None:
    http = RoutingClient()
    http.add(f"{MASTER}/idp_list", jwt_response(idp_list(), "application/jwt"))
    lst = await fetch_idp_list(http, f"{MASTER}/idp_list", [MASTER_KEY.public()],
                               master=MASTER, now=NOW)
    assert len(lst.entries) == 2
    http.add(f"{MASTER}/idp_list", HttpResponse(503, {}, b"down"))
    with pytest.raises(IdpListError, match="503") as ei:
        await fetch_idp_list(http, f"{MASTER}/idp_list", [MASTER_KEY.public()],
                             master=MASTER, now=NOW)
    assert ei.value.status == 503
    with pytest.raises(IdpListError, match="unreachable"):
        await fetch_idp_list(http, f"{MASTER}/nowhere", [MASTER_KEY.public()],
                             master=MASTER, now=NOW)


# ------------------------------------------------------------------ signed JWKS

TOKEN_KEY = idp_token_key()


def signed_jwks(*, key: JWK = IDP_FED_KEY, keys: list[dict[str, Any]] | None = None,
                typ: str | None = "jwk-set+json", **over: Any) -> str:
    payload: dict[str, Any] = {
        "iss": IDP,
        "iat": int(NOW) - 100,
        "keys": keys if keys is not None else [
            TOKEN_KEY.public_dict(),
            JWK.generate(kid="enc-1", use="enc").public_dict(),
        ],
    }
    payload.update({k: v for k, v in over.items()})
    payload = {k: v for k, v in payload.items() if v is not None}
    return sign_jws(payload, key, typ=typ)


def vjwks(tok: str) -> Any:
    return verify_signed_jwks(tok, [IDP_FED_KEY.public()], idp=IDP, now=NOW)


def test_signed_jwks_good() -> None:
    s = vjwks(signed_jwks())
    assert len(s.keys) == 2
    assert [k.kid for k in s.signing_keys] == [TOKEN_KEY.kid]
    assert s.signing_keys[0].x5c == TOKEN_KEY.x5c


def test_signed_jwks_bad_signature() -> None:
    with pytest.raises(SignedJwksError, match="does not verify"):
        vjwks(signed_jwks(key=JWK.generate(kid=IDP_FED_KEY.kid)))
    with pytest.raises(SignedJwksError, match="does not verify"):
        vjwks(signed_jwks(key=TOKEN_KEY))  # a token key is no federation key


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"iss": "https://other-idp.example"}, "not the IdP"),
        ({"iat": int(NOW) + 600}, "future"),
        ({"iat": None}, "iat"),
        ({"exp": int(NOW) - 600}, "expired"),
        ({"keys": []}, "keys"),
        ({"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "r", "use": "sig"}]}, "P-256"),
        ({"keys": [JWK.generate(kid="e", use="enc").public_dict()]}, "no signing key"),
        ({"typ": "entity-statement+jwt"}, "another federation object"),
    ],
)
def test_signed_jwks_rejections(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(SignedJwksError, match=match):
        vjwks(signed_jwks(**kw))


@pytest.mark.anyio
async def test_fetch_signed_jwks_content_type() -> None:
    http = RoutingClient()
    url = f"{IDP}/jws.json"
    http.add(url, jwt_response(signed_jwks(), "application/jwk-set+json; charset=utf-8"))
    s = await fetch_signed_jwks(http, url, [IDP_FED_KEY.public()], idp=IDP, now=NOW)
    assert s.iss == IDP
    http.add(url, jwt_response(signed_jwks(), "application/json"))
    with pytest.raises(SignedJwksError, match="content type"):
        await fetch_signed_jwks(http, url, [IDP_FED_KEY.public()], idp=IDP, now=NOW)
    http.add(url, HttpResponse(404, {}, b""))
    with pytest.raises(SignedJwksError, match="404"):
        await fetch_signed_jwks(http, url, [IDP_FED_KEY.public()], idp=IDP, now=NOW)
