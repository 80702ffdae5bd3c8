"""End-to-end: real sandbox, real https, real self-signed mutual TLS."""

from __future__ import annotations

import base64
import json
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sandbox_env_helpers import Env, RPFixture, par_params, pkce, sandbox_env

from healthid_broker.crypto.jose import decrypt_jwe, parse_jws, verify_jws
from healthid_broker.federation.statements import (
    decode_statement,
    jwks_to_keys,
    verify_self_signed,
    verify_statement,
)

pytestmark = [pytest.mark.slow, pytest.mark.anyio]


async def _par(
    env: Env, rp: RPFixture, slug: str, **over: str | None
) -> tuple[httpx.Response, str]:
    verifier, challenge = pkce()
    async with env.client(rp) as c:
        r = await c.post(f"{env.idp(slug).ep.mtls_base}/par",
                         data=par_params(rp, challenge, **over))
    return r, verifier


async def _login(env: Env, rp: RPFixture, slug: str, kvnr: str, **over: str | None
                 ) -> tuple[dict[str, str], str, str]:
    r, verifier = await _par(env, rp, slug, **over)
    assert r.status_code == 201, r.text
    request_uri = r.json()["request_uri"]
    idp = env.idp(slug)
    async with httpx.AsyncClient() as c:
        page = await c.get(f"{idp.ep.front_base}/auth",
                           params={"request_uri": request_uri, "client_id": rp.entity_id})
        assert page.status_code == 200
        r2 = await c.post(f"{idp.ep.front_base}/auth", data={
            "request_uri": request_uri, "client_id": rp.entity_id, "kvnr": kvnr,
            "action": "approve"})
    assert r2.status_code == 303
    loc = r2.headers["location"]
    assert loc.startswith(rp.redirect_uri + "?")
    q = {k: v[0] for k, v in parse_qs(urlsplit(loc).query).items()}
    return q, verifier, request_uri


async def _token(env: Env, rp: RPFixture, slug: str, code: str, verifier: str,
                 redirect_uri: str | None = None) -> httpx.Response:
    async with env.client(rp) as c:
        return await c.post(f"{env.idp(slug).ep.mtls_base}/token", data={
            "grant_type": "authorization_code", "code": code, "code_verifier": verifier,
            "client_id": rp.entity_id, "redirect_uri": redirect_uri or rp.redirect_uri})


async def _idp_token_keys(env: Env, slug: str) -> list:  # type: ignore[type-arg]
    idp = env.idp(slug)
    async with env.client() as c:
        ec = (await c.get(f"{idp.entity_id}/.well-known/openid-federation")).text
        r = await c.get(f"{idp.entity_id}/jwks")
    assert r.headers["content-type"].startswith("application/jwk-set+json")
    stmt = verify_self_signed(ec, now=time.time())
    parsed = parse_jws(r.text)
    verify_jws(parsed, stmt.keys())
    return jwks_to_keys(parsed.payload_json())


@pytest.mark.parametrize(
    ("slug", "version", "acr", "amr"),
    [
        ("nordkasse", None, "gematik-ehealth-loa-high", "urn:telematik:auth:eGK"),
        ("suedkasse", "2.0.0", "gematik-ehealth-loa-high", "urn:telematik:auth:eID"),
        ("mittelland-bkk", None, "gematik-ehealth-loa-substantial", "urn:telematik:auth:mEW"),
    ],
)
async def test_happy_path(env: Env, slug: str, version: str | None, acr: str, amr: str) -> None:
    rp = env.rps["rp"]
    q, verifier, _ = await _login(env, rp, slug, "X110411675")
    r = await _token(env, rp, slug, q["code"], verifier)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 300
    header, plain = decrypt_jwe(body["id_token"], [rp.enc_key])
    assert header["cty"] == "JWT" and header["kid"] == rp.enc_key.kid
    assert header["alg"] == "ECDH-ES" and header["enc"] == "A256GCM"
    assert header.get("version") == version
    jws = parse_jws(plain.decode())
    assert jws.header["x5c"] and jws.header["kid"]
    verify_jws(jws, await _idp_token_keys(env, slug))
    claims = jws.payload_json()
    assert claims["iss"] == env.idp(slug).entity_id
    assert claims["aud"] == rp.entity_id
    assert claims["exp"] - claims["iat"] == 300
    assert claims["acr"] == acr and claims["amr"] == [amr]
    assert claims["urn:telematik:claims:id"] == "X110411675"
    assert len(claims["urn:telematik:claims:organization"]) == 9
    assert claims["birthdate"] == "1977-08-08"
    assert claims["urn:telematik:claims:email"].endswith("@example.org")
    assert "urn:telematik:claims:given_name" not in claims  # scope not requested
    assert q["state"]


async def test_v1_when_rp_does_not_list_v2(env: Env) -> None:
    rp = env.add_rp("v1only", versions=("1.0.0",))
    q, verifier, _ = await _login(env, rp, "suedkasse", "X110411675")
    body = (await _token(env, rp, "suedkasse", q["code"], verifier)).json()
    header, _ = decrypt_jwe(body["id_token"], [rp.enc_key])
    assert "version" not in header


async def test_pairwise_sub(env: Env) -> None:
    rp1, rp2 = env.rps["rp"], env.add_rp("other")
    subs = []
    for rp in (rp1, rp1, rp2):
        q, verifier, _ = await _login(env, rp, "nordkasse", "X110411675")
        body = (await _token(env, rp, "nordkasse", q["code"], verifier)).json()
        _, plain = decrypt_jwe(body["id_token"], [rp.enc_key])
        subs.append(parse_jws(plain.decode()).payload_json()["sub"])
    assert subs[0] == subs[1] != subs[2]


async def test_par_answer_shape(env: Env) -> None:
    rp = env.rps["rp"]
    r, _ = await _par(env, rp, "nordkasse")
    assert r.status_code == 201
    body = r.json()
    assert body["expires_in"] == 90
    prefix, _, tail = body["request_uri"].rpartition(":")
    assert prefix == f"urn:{rp.entity_id}" and len(tail) == 32
    int(tail, 16)


@pytest.mark.parametrize(
    ("over", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "openid urn:telematik:unknown"}, "invalid_scope"),
        ({"scope": "urn:telematik:email"}, "invalid_scope"),
        ({"acr_values": "gematik-ehealth-loa-low"}, "invalid_request"),
        ({"redirect_uri": "https://evil.example/cb"}, "invalid_request"),
        ({"code_challenge": "tooshort"}, "invalid_request"),
        ({"nonce": None}, "invalid_request"),
        ({"state": None}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"redirect_uri": None}, "invalid_request"),
        ({"client_id": None}, "invalid_request"),
    ],
)
async def test_par_errors(env: Env, over: dict[str, str | None], error: str) -> None:
    r, _ = await _par(env, env.rps["rp"], "nordkasse", **over)
    assert r.status_code == 400
    assert r.json()["error"] == error


async def test_par_scope_beyond_rp_scope(env: Env) -> None:
    rp = env.add_rp("narrow")
    # narrow RP's statement lists all scopes; use a second RP whose statement omits email
    rp2 = env.rps["rp"]
    assert rp and rp2
    from healthid_broker.sandbox import idp as idp_mod
    idp = env.idp("nordkasse")
    info = await idp.resolve_rp(rp.entity_id)
    info.scopes.discard("urn:telematik:email")
    r, _ = await _par(env, rp, "nordkasse")
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"
    assert idp_mod.ACR_HIGH


async def test_par_wrong_certificate(env: Env) -> None:
    rp, other = env.rps["rp"], env.add_rp("intruder")
    verifier_challenge = pkce()[1]
    async with env.client(other) as c:  # other's certificate, rp's client_id
        r = await c.post(f"{env.idp('nordkasse').ep.mtls_base}/par",
                         data=par_params(rp, verifier_challenge))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_par_without_certificate(env: Env) -> None:
    rp = env.rps["rp"]
    async with env.client() as c:
        r = await c.post(f"{env.idp('nordkasse').ep.mtls_base}/par",
                         data=par_params(rp, pkce()[1]))
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_par_unregistered_client(env: Env) -> None:
    rp = env.add_rp("unregistered", register=False)
    r, _ = await _par(env, rp, "nordkasse")
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_par_badly_signed_statement(env: Env) -> None:
    from healthid_broker.crypto.keys import signing_jwk

    rp = env.add_rp("badsig")
    rp.sign_with = signing_jwk()
    r, _ = await _par(env, rp, "nordkasse")
    assert 400 <= r.status_code < 500 and r.json()["error"] == "invalid_client"


async def test_par_expired_statement(env: Env) -> None:
    rp = env.add_rp("expired", iat_offset=-7200, lifetime=3600)
    r, _ = await _par(env, rp, "nordkasse")
    assert 400 <= r.status_code < 500 and r.json()["error"] == "invalid_client"


async def test_par_statement_longer_than_a_day(env: Env) -> None:
    rp = env.add_rp("toolong", lifetime=86401)
    r, _ = await _par(env, rp, "nordkasse")
    assert r.status_code == 401


async def test_authorize_errors(env: Env) -> None:
    rp = env.rps["rp"]
    r, _ = await _par(env, rp, "nordkasse")
    request_uri = r.json()["request_uri"]
    front = env.idp("nordkasse").ep.front_base
    async with httpx.AsyncClient() as c:
        unknown = await c.get(f"{front}/auth", params={
            "request_uri": request_uri + "00", "client_id": rp.entity_id})
        mismatch = await c.get(f"{front}/auth", params={
            "request_uri": request_uri, "client_id": rp.entity_id + "x"})
        missing = await c.get(f"{front}/auth", params={"client_id": rp.entity_id})
    assert unknown.status_code == mismatch.status_code == missing.status_code == 400
    assert "nicht möglich" in unknown.text


async def test_authorize_expired_request_uri(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with sandbox_env(tmp_path) as env:
        rp = env.rps["rp"]
        r, _ = await _par(env, rp, "nordkasse")
        request_uri = r.json()["request_uri"]
        pushed = env.idp("nordkasse").s.par[request_uri]
        pushed.expires -= 91  # as if 91 s had passed
        async with httpx.AsyncClient() as c:
            res = await c.get(f"{env.idp('nordkasse').ep.front_base}/auth", params={
                "request_uri": request_uri, "client_id": rp.entity_id})
        assert res.status_code == 400


def _tamper(verifier: str) -> str:
    """The verifier with its last character changed (never to itself)."""
    return verifier[:-1] + ("B" if verifier.endswith("A") else "A")


async def test_token_errors(env: Env) -> None:
    rp = env.rps["rp"]
    q, verifier, _ = await _login(env, rp, "nordkasse", "X110411675")
    bad = await _token(env, rp, "nordkasse", q["code"], _tamper(verifier))
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_grant"

    q, verifier, _ = await _login(env, rp, "nordkasse", "X110411675")
    wrong_redirect = await _token(env, rp, "nordkasse", q["code"], verifier,
                                  redirect_uri=rp.entity_id + "/other")
    assert wrong_redirect.status_code == 400
    assert wrong_redirect.json()["error"] == "invalid_grant"

    q, verifier, _ = await _login(env, rp, "nordkasse", "X110411675")
    ok = await _token(env, rp, "nordkasse", q["code"], verifier)
    assert ok.status_code == 200
    again = await _token(env, rp, "nordkasse", q["code"], verifier)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


async def test_token_needs_client_certificate(env: Env) -> None:
    rp, other = env.rps["rp"], env.add_rp("thief")
    q, verifier, _ = await _login(env, rp, "nordkasse", "X110411675")
    async with env.client(other) as c:
        r = await c.post(f"{env.idp('nordkasse').ep.mtls_base}/token", data={
            "grant_type": "authorization_code", "code": q["code"], "code_verifier": verifier,
            "client_id": rp.entity_id, "redirect_uri": rp.redirect_uri})
    assert r.status_code == 401


async def test_auto_person(tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with sandbox_env(tmp_path, auto_person="X110411675") as env:
        rp = env.rps["rp"]
        r, verifier = await _par(env, rp, "suedkasse")
        async with httpx.AsyncClient() as c:
            res = await c.get(f"{env.idp('suedkasse').ep.front_base}/auth", params={
                "request_uri": r.json()["request_uri"], "client_id": rp.entity_id})
        assert res.status_code == 302
        q = parse_qs(urlsplit(res.headers["location"]).query)
        tok = await _token(env, rp, "suedkasse", q["code"][0], verifier)
        assert tok.status_code == 200


async def test_picker_page(env: Env) -> None:
    rp = env.rps["rp"]
    r, _ = await _par(env, rp, "nordkasse")
    params = {"request_uri": r.json()["request_uri"], "client_id": rp.entity_id}
    url = f"{env.idp('nordkasse').ep.front_base}/auth"
    async with httpx.AsyncClient() as c:
        de = await c.get(url, params=params)
        en = await c.get(url, params={**params, "lang": "en"})
        en2 = await c.get(url, params=params, headers={"accept-language": "en-GB,en;q=0.9"})
        cancel = await c.post(url, data={**params, "action": "cancel"})
    assert de.status_code == 200
    assert "SANDBOX" in de.text and "Testperson" in de.text and 'lang="de"' in de.text
    assert "<script" not in de.text
    csp = de.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert rp.entity_id.split("/rp")[0] in csp  # form-action allows the redirect target
    assert "Choose a synthetic insured person" in en.text and 'lang="en"' in en.text
    assert 'lang="en"' in en2.text
    assert cancel.status_code == 303 and "error=access_denied" in cancel.headers["location"]
    async with httpx.AsyncClient() as c:
        logo = await c.get(env.idp("nordkasse").ep.logo_uri)
    assert logo.status_code == 200 and "svg" in logo.headers["content-type"]


async def test_master_entity_configuration_and_fetch(env: Env) -> None:
    sb = env.sb
    master = sb.master_entity_id
    async with env.client() as c:
        r = await c.get(f"{master}/.well-known/openid-federation")
        assert r.headers["content-type"].startswith("application/entity-statement+jwt")
        stmt = verify_statement(r.text, jwks_to_keys(sb.master_jwks), now=time.time())
        assert parse_jws(r.text).header["typ"] == "entity-statement+jwt"
        assert stmt.iss == stmt.sub == master and stmt.exp - stmt.iat == 86400
        assert "authority_hints" not in stmt.claims
        fe = stmt.metadata["federation_entity"]
        assert fe["federation_fetch_endpoint"] == f"{master}/fetch"
        wrong_iss = await c.get(fe["federation_fetch_endpoint"],
                                params={"iss": "https://x.example", "sub": master})
        unknown = await c.get(fe["federation_fetch_endpoint"],
                              params={"iss": master, "sub": "https://nobody.example"})
        rp = env.rps["rp"]
        about_rp = await c.get(fe["federation_fetch_endpoint"],
                               params={"iss": master, "sub": rp.entity_id})
        # OpenID Federation 1.0 §8.1.1: sub alone is a complete fetch request.
        sub_only = await c.get(fe["federation_fetch_endpoint"], params={"sub": rp.entity_id})
        listing = (await c.get(fe["federation_list_endpoint"])).json()
        idp_list = await c.get(fe["idp_list_endpoint"])
    for resp, code in ((wrong_iss, "6000"), (unknown, "6011")):
        assert resp.status_code == 400
        body = resp.json()
        assert body["operation"] == "FETCH" and body["error"] == "invalid_request"
        assert body["gematik_code"] == code and body["gematik_uuid"] and body["gematik_timestamp"]
        assert body["error_description"]
    assert sub_only.status_code == 200
    assert verify_statement(sub_only.text, jwks_to_keys(sb.master_jwks), now=time.time()).sub \
        == rp.entity_id
    rs = verify_statement(about_rp.text, jwks_to_keys(sb.master_jwks), now=time.time())
    assert rs.claims["jwks"]["keys"][0]["kid"] == rp.fed_key.kid
    assert rs.metadata == {"openid_relying_party": {"client_registration_types": ["automatic"]}}
    assert rp.entity_id in listing and env.idp("nordkasse").entity_id in listing
    parsed = parse_jws(idp_list.text, expected_typ="idp-list+jwt")
    verify_jws(parsed, jwks_to_keys(sb.master_jwks))
    entries = parsed.payload_json()["idp_entity"]
    assert len({e["organization_name"] for e in entries}) >= 3
    for e in entries:
        assert e["user_type_supported"] == "IP" and isinstance(e["pkv"], bool)
        assert e["logo_uri"] and e["iss"]


async def test_idp_entity_configuration_chains_to_master(env: Env) -> None:
    idp = env.idp("suedkasse")
    master = env.sb.master_entity_id
    async with env.client() as c:
        about = await c.get(f"{master}/fetch", params={"iss": master, "sub": idp.entity_id})
        ec = await c.get(f"{idp.entity_id}/.well-known/openid-federation")
    sub = verify_statement(about.text, jwks_to_keys(env.sb.master_jwks), now=time.time())
    stmt = verify_statement(ec.text, sub.keys(), now=time.time())
    assert stmt.exp - stmt.iat == 7200 and stmt.authority_hints == [master]
    op = stmt.metadata["openid_provider"]
    assert op["token_endpoint_auth_methods_supported"] == ["self_signed_tls_client_auth"]
    assert op["ti_features_supported"]["id_token_version_supported"] == ["1.0.0", "2.0.0"]
    assert op["require_pushed_authorization_requests"] is True
    assert stmt.metadata["federation_entity"]["organization_name"]
    keys = await _idp_token_keys(env, "suedkasse")
    assert keys[0].x5c and base64.b64decode(keys[0].x5c[0])
    assert decode_statement(ec.text).kid == idp.federation_key.kid
    json.dumps(env.sb.info())
