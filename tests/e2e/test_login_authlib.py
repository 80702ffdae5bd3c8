"""End-to-end acceptance: a full GesundheitsID login through the demo with Authlib.

The application side is an unmodified third-party OIDC client (Authlib's httpx client,
PKCE S256, client_secret_basic / private_key_jwt / none), the browser side plain httpx,
the ID token is validated by Authlib's own JOSE/OIDC code (OIDC Core §3.1.3.7) and, when
encrypted, decrypted with joserfc (OIDC Core §10.2). Sandbox IdPs: nordkasse (ID token
1.0.0), suedkasse (2.0.0), mittelland-bkk (substantial, amr mEW), privat (PKV).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from authlib.jose import JsonWebKey, jwt
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from joserfc import jwe
from joserfc.jwk import ECKey

from healthid_broker.demo.run import DemoConfig
from healthid_broker.sandbox.persons import PERSONS

from .harness import (
    SLUGS,
    DemoThread,
    browser_login,
    ca_context,
    discovery,
    published_jwks,
    verify_id_token,
)

pytestmark = pytest.mark.slow

ALL_SCOPES = ("openid urn:telematik:versicherter urn:telematik:display_name "
              "urn:telematik:given_name urn:telematik:family_name urn:telematik:geburtsdatum "
              "urn:telematik:email")
KVNR_CLAIM = "urn:telematik:claims:id"


def _client(demo: DemoThread, *, client_id: str | None = None, secret: str | None = None,
            redirect_uri: str | None = None, scope: str = ALL_SCOPES,
            method: str = "client_secret_basic") -> OAuth2Client:
    info = demo.info
    return OAuth2Client(
        client_id=client_id or info["client_id"],
        client_secret=secret if client_id else info["client_secret"],
        scope=scope, redirect_uri=redirect_uri or info["redirect_uri"],
        code_challenge_method="S256", token_endpoint_auth_method=method,
        verify=ca_context(info))


def _login(demo: DemoThread, client: OAuth2Client, *, slug: str, kvnr: str,
           hint: bool = False, issuer: str | None = None, acr_values: str | None = None,
           **fetch: Any) -> tuple[dict[str, Any], str, dict[str, str]]:
    """One login; returns (token response, nonce, redirect parameters)."""
    meta = discovery(demo.info, issuer)
    nonce = secrets.token_urlsafe(16)
    verifier = generate_token(64)
    extra = {"idp_hint": demo.idp(slug)} if hint else {}
    if acr_values:
        extra["acr_values"] = acr_values
    url, state = client.create_authorization_url(
        meta["authorization_endpoint"], nonce=nonce, code_verifier=verifier, **extra)
    res = browser_login(url, str(client.redirect_uri), idp=None if hint else demo.idp(slug),
                        kvnr=kvnr)
    assert res.params["state"] == state
    assert res.params["iss"] == meta["issuer"]  # RFC 9207
    token = client.fetch_token(meta["token_endpoint"], authorization_response=res.location,
                               code_verifier=verifier, **fetch)
    return dict(token), nonce, res.params


def _person(i: int) -> Any:
    return PERSONS[i % len(PERSONS)]


# ------------------------------------------------------------------ discovery / federation


def test_discovery_document(demo: DemoThread) -> None:
    info = demo.info
    meta = discovery(info)
    assert meta["issuer"] == info["issuer"]
    assert meta["authorization_endpoint"] == f"{info['broker_browser_base']}/demo/authorize"
    assert meta["token_endpoint"] == f"{info['issuer']}/token"
    assert meta["jwks_uri"] == f"{info['issuer']}/jwks"
    assert meta["idp_list_endpoint"] == f"{info['issuer']}/idps"
    assert meta["response_types_supported"] == ["code"]
    assert meta["subject_types_supported"] == ["pairwise"]
    assert meta["id_token_signing_alg_values_supported"] == ["ES256", "RS256", "PS256"]
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert set(meta["token_endpoint_auth_methods_supported"]) == {
        "client_secret_basic", "private_key_jwt", "none"}
    assert "client_secret_post" not in meta["token_endpoint_auth_methods_supported"]
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert "openid" in meta["scopes_supported"]
    assert KVNR_CLAIM in meta["claims_supported"]
    keys = published_jwks(info)["keys"]
    assert keys and all(k["kty"] == "EC" and k["crv"] == "P-256" and "d" not in k
                        for k in keys if k["kty"] != "RSA")
    assert all(not {"d", "p", "q", "dp", "dq", "qi"} & set(k) for k in keys)


def test_authorization_server_metadata_agrees(demo: DemoThread) -> None:
    """RFC 8414 metadata at the path-inserted URL (§3.1) and beside the discovery document:
    every field a strict client checks, equal to the discovery document's."""
    info = demo.info
    meta = discovery(info)
    issuer = httpx.URL(info["issuer"])
    inserted = f"{issuer.scheme}://{issuer.netloc.decode()}/.well-known/" \
               f"oauth-authorization-server{issuer.path}"
    beside = f"{info['issuer']}/.well-known/oauth-authorization-server"
    for url in (inserted, beside):
        r = httpx.get(url, verify=ca_context(info))
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        as_meta = r.json()
        assert as_meta["issuer"] == info["issuer"]  # RFC 8414 §3.3
        for field in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri",
                      "authorization_response_iss_parameter_supported",
                      "code_challenge_methods_supported",
                      "token_endpoint_auth_methods_supported",
                      "token_endpoint_auth_signing_alg_values_supported",
                      "response_types_supported", "response_modes_supported",
                      "grant_types_supported", "scopes_supported"):
            assert as_meta[field] == meta[field], field
        assert as_meta == meta
    assert meta["authorization_response_iss_parameter_supported"] is True
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert {"openid", "profile", "email"} <= set(meta["scopes_supported"])
    assert {"name", "given_name", "family_name", "birthdate", "email"} <= set(
        meta["claims_supported"])
    missing = f"{issuer.scheme}://{issuer.netloc.decode()}/.well-known/" \
              "oauth-authorization-server/no-such-app"
    r = httpx.get(missing, verify=ca_context(info))
    assert r.status_code == 404 and r.json() == {"error": "not_found"}


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_rsa_signed_id_token(demo: DemoThread, alg: str) -> None:
    """A client that registered id_token_signed_response_alg RS256/PS256 gets an ID token
    signed with the application's RSA key (≥ 3072 bit), verifiable against the published
    JWKS with joserfc and with Authlib's OIDC checks."""
    from joserfc import jwt as jrfc_jwt
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    info = demo.info
    redirect = f"https://rsa-{alg.lower()}.example/cb"
    cid, secret = demo.add_client("demo", auth_method="client_secret_basic",
                                  redirect_uris=[redirect], id_token_alg=alg)
    client = _client(demo, client_id=cid, secret=secret, redirect_uri=redirect,
                     scope="openid profile")
    person = _person(2)
    token, nonce, _ = _login(demo, client, slug="nordkasse", kvnr=person.kvnr)
    header = _b64json(token["id_token"].split(".")[0])
    assert header["alg"] == alg and header["typ"] == "JWT"
    jwks = published_jwks(info)
    rsa_keys = [k for k in jwks["keys"] if k["kty"] == "RSA"]
    assert [k["kid"] for k in rsa_keys].count(header["kid"]) == 1
    n = next(k["n"] for k in rsa_keys if k["kid"] == header["kid"])
    assert len(base64.urlsafe_b64decode(n + "=" * (-len(n) % 4))) * 8 >= 3072
    decoded = jrfc_jwt.decode(token["id_token"], KeySet.import_key_set(jwks),
                              algorithms=[alg])
    assert decoded.claims["aud"] == cid and decoded.claims["nonce"] == nonce
    # the other RSA algorithm does not verify it (the header's alg is the one used)
    other = "PS256" if alg == "RS256" else "RS256"
    with pytest.raises(JoseError):
        jrfc_jwt.decode(token["id_token"], KeySet.import_key_set(jwks), algorithms=[other])
    claims = verify_id_token(info, token["id_token"], client_id=cid, nonce=nonce,
                             access_token=token["access_token"])
    assert claims["given_name"] == person.given_name


def _b64json(part: str) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return out


def test_rp_entity_configuration(demo: DemoThread) -> None:
    """docs/ti-profile.md §5 (A_23034, A_23183, A_23194, A_23196)."""
    info = demo.info
    # one login first, so that the sandbox IdP has seen the broker's TLS client certificate
    _login(demo, _client(demo), slug="nordkasse", kvnr=_person(0).kvnr)
    r = httpx.get(f"{info['issuer']}/.well-known/openid-federation", verify=ca_context(info))
    assert r.status_code == 200
    assert r.headers["content-type"].split(";")[0] == "application/entity-statement+jwt"
    token = r.text.strip()
    header = _b64json(token.split(".")[0])
    assert header["alg"] == "ES256" and header["typ"] == "entity-statement+jwt" and header["kid"]
    body = _b64json(token.split(".")[1])
    # self-signed: verified with Authlib against the statement's own jwks
    claims = jwt.decode(token, JsonWebKey.import_key_set(body["jwks"]))
    assert claims["iss"] == claims["sub"] == info["issuer"]
    assert 0 < claims["exp"] - claims["iat"] <= 86400
    assert claims["authority_hints"] == [info["federation_master"]]
    assert all(k["kty"] == "EC" and k["crv"] == "P-256" for k in claims["jwks"]["keys"])
    rp = claims["metadata"]["openid_relying_party"]
    assert claims["metadata"]["federation_entity"]["organization_name"]
    assert isinstance(rp["scope"], str) and "openid" in rp["scope"].split(" ")
    assert rp["response_types"] == ["code"]
    assert rp["client_registration_types"] == ["automatic"]
    assert rp["grant_types"] == ["authorization_code"]
    assert rp["require_pushed_authorization_requests"] is True
    assert rp["token_endpoint_auth_method"] == "self_signed_tls_client_auth"
    assert rp["id_token_signed_response_alg"] == "ES256"
    assert rp["id_token_encrypted_response_alg"] == "ECDH-ES"
    assert rp["id_token_encrypted_response_enc"] == "A256GCM"
    assert rp["redirect_uris"] == [f"{info['broker_browser_base']}/demo/callback"]
    assert set(rp["ti_features_supported"]["id_token_version_supported"]) <= {"1.0.0", "2.0.0"}
    keys = rp["jwks"]["keys"]
    enc = [k for k in keys if k.get("use") == "enc"]
    sig = [k for k in keys if k.get("use") == "sig"]
    assert enc and all(k["crv"] == "P-256" and k.get("alg") for k in enc)  # A_23194
    assert sig and all(len(k["x5c"]) == 1 for k in sig)  # A_23183
    tenancy = demo.demo.tenancy
    assert tenancy is not None
    mtls = tenancy.application_keys("demo", time.time()).mtls
    assert mtls.x5c[0] in {k["x5c"][0] for k in sig}
    # the certificate actually presented in the mutual TLS handshake to the sandbox IdP
    seen = {base64.b64encode(der).decode() for der in demo.demo.sandbox.peer_certs.values()}
    assert seen and seen <= {k["x5c"][0] for k in sig}


# ------------------------------------------------------------------ logins


SUBSTANTIAL, HIGH = "gematik-ehealth-loa-substantial", "gematik-ehealth-loa-high"


@pytest.mark.parametrize(("slug", "acr_values", "acr"), [
    ("nordkasse", None, SUBSTANTIAL),  # the demo application requires substantial
    ("suedkasse", None, SUBSTANTIAL),
    ("suedkasse", HIGH, HIGH),  # an app may raise the level per request
    ("mittelland-bkk", None, SUBSTANTIAL),
    ("privat", None, SUBSTANTIAL),
])
def test_hosted_chooser_login(demo: DemoThread, slug: str, acr_values: str | None,
                              acr: str) -> None:
    person = _person(SLUGS.index(slug) + 1)
    client = _client(demo)
    token, nonce, _ = _login(demo, client, slug=slug, kvnr=person.kvnr,
                             acr_values=acr_values)
    assert token["token_type"] == "Bearer"
    assert 0 < token["expires_in"] <= 600  # A_23079
    claims = verify_id_token(demo.info, token["id_token"], client_id=demo.info["client_id"],
                             nonce=nonce, access_token=token["access_token"])
    assert claims["exp"] - claims["iat"] <= 600
    assert claims[KVNR_CLAIM] == person.kvnr
    assert claims["urn:telematik:claims:given_name"] == person.given_name
    assert claims["urn:telematik:claims:family_name"] == person.family_name
    assert claims["birthdate"] == person.birthdate.isoformat()
    assert claims["urn:telematik:claims:email"] == person.email
    assert "urn:telematik:claims:alter" not in claims  # allowed but not requested
    assert claims["acr"] == acr
    if slug == "mittelland-bkk":
        assert claims["amr"] == ["urn:telematik:auth:mEW"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", claims["sub"])  # pairwise, not the IdP's sub
    # A_23078: the access token is opaque and carries nothing about the person
    at = token["access_token"]
    assert "." not in at and len(at) >= 32
    for value in (person.kvnr, person.given_name, person.family_name, person.email,
                  person.birthdate.isoformat(), claims["sub"]):
        assert value not in at


@pytest.mark.parametrize("slug", ["nordkasse", "mittelland-bkk"])
def test_gateway_mode_idp_hint(demo: DemoThread, slug: str) -> None:
    info = demo.info
    r = httpx.get(discovery(info)["idp_list_endpoint"], verify=ca_context(info))
    assert r.status_code == 200
    entries = r.json()["idps"]
    assert {e["idp_hint"] for e in entries} == set(info["idps"])
    assert all(e["organization_name"] for e in entries)
    person = _person(5)
    token, nonce, _ = _login(demo, _client(demo), slug=slug, kvnr=person.kvnr, hint=True)
    claims = verify_id_token(info, token["id_token"], client_id=info["client_id"], nonce=nonce,
                             access_token=token["access_token"])
    assert claims[KVNR_CLAIM] == person.kvnr


def test_pairwise_subjects(demo: DemoThread) -> None:
    info = demo.info
    p, q = _person(7), _person(8)

    def sub(client: OAuth2Client, person: Any, slug: str = "suedkasse",
            issuer: str | None = None, client_id: str | None = None) -> str:
        token, nonce, _ = _login(demo, client, slug=slug, kvnr=person.kvnr, issuer=issuer)
        claims = verify_id_token(info, token["id_token"], client_id=client_id or
                                 info["client_id"], nonce=nonce, issuer=issuer,
                                 access_token=token["access_token"])
        return str(claims["sub"])

    first = sub(_client(demo), p)
    assert sub(_client(demo), p) == first  # stable across logins
    assert sub(_client(demo), q) != first  # another person
    assert sub(_client(demo), p, slug="nordkasse") != first  # (iss, sub) is the pseudonym

    issuer2 = demo.add_application("second", scopes=("openid", "urn:telematik:display_name"))
    redirect = "https://second.example/cb"
    cid, secret = demo.add_client("second", auth_method="client_secret_basic",
                                  redirect_uris=[redirect])
    c2 = _client(demo, client_id=cid, secret=secret, redirect_uri=redirect,
                 scope="openid urn:telematik:display_name")
    other = sub(c2, p, issuer=issuer2, client_id=cid)
    assert other != first  # unlinkable across applications
    assert sub(c2, p, issuer=issuer2, client_id=cid) == other


def test_claim_minimisation(demo: DemoThread) -> None:
    """A client allowed only openid + display_name never receives the KVNR (T-07)."""
    info = demo.info
    redirect = "https://minimal.example/cb"
    cid, secret = demo.add_client("demo", auth_method="client_secret_basic",
                                  redirect_uris=[redirect],
                                  scopes=["openid", "urn:telematik:display_name"])
    scope = "openid urn:telematik:display_name"
    client = _client(demo, client_id=cid, secret=secret, redirect_uri=redirect, scope=scope)
    person = _person(3)
    token, nonce, _ = _login(demo, client, slug="nordkasse", kvnr=person.kvnr)
    claims = verify_id_token(info, token["id_token"], client_id=cid, nonce=nonce,
                             access_token=token["access_token"])
    assert claims["urn:telematik:claims:display_name"] == person.display_name
    assert KVNR_CLAIM not in claims and "birthdate" not in claims
    assert person.kvnr not in json.dumps(claims)
    assert token["scope"] == scope
    # asking for more than allowed: the known scope the client may not use is dropped and
    # the token response says what was granted (RFC 6749 §3.3); an unknown value is
    # ignored (OIDC Core §3.1.2.1)
    wide = _client(demo, client_id=cid, secret=secret, redirect_uri=redirect,
                   scope="openid urn:telematik:versicherter urn:telematik:display_name phone")
    token, nonce, _ = _login(demo, wide, slug="nordkasse", kvnr=person.kvnr)
    assert token["scope"] == "openid urn:telematik:display_name"
    claims = verify_id_token(info, token["id_token"], client_id=cid, nonce=nonce,
                             access_token=token["access_token"])
    assert claims["urn:telematik:claims:display_name"] == person.display_name
    assert KVNR_CLAIM not in claims and person.kvnr not in json.dumps(claims)


def test_standard_scopes_profile_email(demo: DemoThread) -> None:
    """``openid profile email`` — many libraries' default — is granted and yields the
    standard claims, derived from the telematik ones, under their standard names."""
    info = demo.info
    client = _client(demo, scope="openid profile email")
    person = _person(5)
    token, nonce, _ = _login(demo, client, slug="suedkasse", kvnr=person.kvnr)
    assert token["scope"] == "openid profile email"
    claims = verify_id_token(info, token["id_token"], client_id=info["client_id"],
                             nonce=nonce, access_token=token["access_token"])
    assert claims["name"] == person.display_name
    assert claims["given_name"] == person.given_name
    assert claims["family_name"] == person.family_name
    assert claims["birthdate"] == person.birthdate.isoformat()
    assert claims["email"] == person.email
    assert not [c for c in claims if c.startswith("urn:telematik:")]
    assert person.kvnr not in json.dumps(claims)


def test_public_client_with_pkce(demo: DemoThread) -> None:
    info = demo.info
    redirect = "https://public.example/cb"
    cid, secret = demo.add_client("demo", auth_method="none", redirect_uris=[redirect])
    assert secret is None
    client = _client(demo, client_id=cid, secret=None, redirect_uri=redirect, method="none")
    token, nonce, _ = _login(demo, client, slug="suedkasse", kvnr=_person(2).kvnr)
    claims = verify_id_token(info, token["id_token"], client_id=cid, nonce=nonce,
                             access_token=token["access_token"])
    assert claims[KVNR_CLAIM] == _person(2).kvnr


def test_private_key_jwt_client_and_jti_replay(demo: DemoThread) -> None:
    info = demo.info
    key = ECKey.generate_key("P-256", parameters={"kid": "app-sig-1", "use": "sig"})
    redirect = "https://pkjwt.example/cb"
    cid, _ = demo.add_client("demo", auth_method="private_key_jwt", redirect_uris=[redirect],
                             jwks={"keys": [key.as_dict(private=False)]})
    meta = discovery(info)
    client = OAuth2Client(client_id=cid, client_secret=key, scope=ALL_SCOPES,
                          redirect_uri=redirect, code_challenge_method="S256",
                          token_endpoint_auth_method="private_key_jwt", verify=ca_context(info))
    # Authlib's defaults as they are (exp = iat + 3600): the broker accepts the assertion
    # while it is fresh (≤ 300 s after iat) and remembers its jti that long.
    auth = PrivateKeyJWT(meta["token_endpoint"], alg="ES256")
    client.register_client_auth_method(auth)
    token, nonce, _ = _login(demo, client, slug="nordkasse", kvnr=_person(4).kvnr)
    verify_id_token(info, token["id_token"], client_id=cid, nonce=nonce,
                    access_token=token["access_token"])
    # replay: one assertion signed by Authlib, sent twice — the second use is refused
    assertion = private_key_jwt_sign(key, cid, meta["token_endpoint"], alg="ES256")
    form = {"grant_type": "authorization_code", "code": "x" * 43, "redirect_uri": redirect,
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion}
    first = httpx.post(meta["token_endpoint"], verify=ca_context(info), data=form)
    assert first.status_code == 400 and first.json()["error"] == "invalid_grant"  # client ok
    r = httpx.post(meta["token_endpoint"], verify=ca_context(info), data=form)
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert "replay" in r.json()["error_description"]


def test_encrypted_id_token(demo: DemoThread) -> None:
    info = demo.info
    enc = ECKey.generate_key("P-256", parameters={"kid": "app-enc-1", "use": "enc",
                                                 "alg": "ECDH-ES"})
    redirect = "https://enc.example/cb"
    cid, secret = demo.add_client("demo", auth_method="client_secret_basic",
                                  redirect_uris=[redirect],
                                  jwks={"keys": [enc.as_dict(private=False)]})
    client = _client(demo, client_id=cid, secret=secret, redirect_uri=redirect)
    person = _person(6)
    token, nonce, _ = _login(demo, client, slug="mittelland-bkk", kvnr=person.kvnr)
    id_token = token["id_token"]
    assert id_token.count(".") == 4  # a JWE
    obj = jwe.decrypt_compact(id_token, enc)
    assert obj.protected["alg"] == "ECDH-ES" and obj.protected["enc"] == "A256GCM"
    assert obj.protected["cty"] == "JWT"
    assert obj.plaintext is not None
    claims = verify_id_token(info, obj.plaintext.decode(), client_id=cid, nonce=nonce,
                             access_token=token["access_token"])
    assert claims[KVNR_CLAIM] == person.kvnr


# ------------------------------------------------------------------ the documented example


def _doc_example() -> dict[str, Any]:
    doc = Path(__file__).resolve().parents[2] / "docs" / "integration.md"
    text = doc.read_text(encoding="utf-8")
    section = text.split("## Complete example", 1)[1]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m is not None, "docs/integration.md lost its example"
    ns: dict[str, Any] = {"__name__": "integration_example"}
    exec(compile(m.group(1), str(doc), "exec"), ns)  # our own documentation
    return ns


@pytest.mark.parametrize("gateway", [False, True])
def test_documented_authlib_example(demo: DemoThread, gateway: bool) -> None:
    info = demo.info
    ex = _doc_example()
    client, meta = ex["make_client"](info["issuer"], info["client_id"], info["client_secret"],
                                     info["redirect_uri"], ca_file=info["ca_cert"])
    hint = demo.idp("suedkasse") if gateway else None
    url, pending = ex["start_login"](client, meta, idp_hint=hint)
    person = _person(9)
    res = browser_login(url, info["redirect_uri"], idp=None if gateway else demo.idp("suedkasse"),
                        kvnr=person.kvnr)
    claims = ex["finish_login"](client, meta, pending, res.location)
    assert claims[KVNR_CLAIM] == person.kvnr
    assert claims["iss"] == info["issuer"] and claims["aud"] == info["client_id"]
    # a tampered state is refused by the example
    url, pending = ex["start_login"](client, meta, idp_hint=demo.idp("nordkasse"))
    res = browser_login(url, info["redirect_uri"], idp=None, kvnr=person.kvnr)
    pending["state"] = "other"
    with pytest.raises(PermissionError):
        ex["finish_login"](client, meta, pending, res.location)


# ------------------------------------------------------------------ Redis transient store


@pytest.fixture(scope="module")
def redis_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoThread]:
    t = DemoThread(DemoConfig(host="127.0.0.1", port=0, data_dir=tmp_path_factory.mktemp("r"),
                              redis_url="redis://127.0.0.1:6379/0"))
    t.start()
    try:
        yield t
    finally:
        t.stop()


@pytest.mark.redis
def test_login_with_redis_store(redis_demo: DemoThread) -> None:
    import redis

    r = redis.Redis.from_url("redis://127.0.0.1:6379/0")
    client = _client(redis_demo)
    person = _person(10)
    meta = discovery(redis_demo.info)
    nonce, verifier = "n-" + secrets.token_urlsafe(8), generate_token(64)
    url, _ = client.create_authorization_url(meta["authorization_endpoint"], nonce=nonce,
                                             code_verifier=verifier)
    res = browser_login(url, redis_demo.info["redirect_uri"], idp=redis_demo.idp("privat"),
                        kvnr=person.kvnr)
    # the code (with the sealed claims) lives in Redis until it is redeemed
    assert any(r.scan_iter(match="hidb-demo:*"))
    token = client.fetch_token(meta["token_endpoint"], authorization_response=res.location,
                               code_verifier=verifier)
    claims = verify_id_token(redis_demo.info, token["id_token"],
                             client_id=redis_demo.info["client_id"], nonce=nonce,
                             access_token=token["access_token"])
    assert claims[KVNR_CLAIM] == person.kvnr
    # the code works once (single use across the shared store)
    again = httpx.post(meta["token_endpoint"], verify=ca_context(redis_demo.info),
                       auth=(redis_demo.info["client_id"], redis_demo.info["client_secret"]),
                       data={"grant_type": "authorization_code", "code": res.params["code"],
                             "redirect_uri": redis_demo.info["redirect_uri"],
                             "code_verifier": verifier})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
