"""The broker's relying-party checks of the IdP's ID token, seen from the application.

docs/ti-profile.md §6.5 (A_23049, A_23005, A_23202-02): the unit tests in
tests/upstream cover the validator; here a tampering wrapper around the broker's outbound
HTTP client rewrites the sandbox IdP's real token answer (decrypt with the RP's key, change
one claim, sign with the IdP's own key, encrypt again) and proves that the broker turns
each failure into ``access_denied`` toward the app, writes a log line, and that neither
carries personal data (GS-A_3813, T-31).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import pytest

from e2e.harness import DemoThread, authorize_url, browser_login
from healthid_broker.crypto.jose import JWK, decrypt_jwe, encrypt_jwe, parse_jws, sign_jws
from healthid_broker.crypto.keys import signing_jwk
from healthid_broker.http import ClientIdentity, HttpClient, HttpResponse
from healthid_broker.sandbox.persons import PERSONS

from .broker_checks import PERSONAL, assert_clean, base_params

pytestmark = pytest.mark.slow

Mutation = Callable[[dict[str, Any]], dict[str, Any]]


@dataclass
class Tamper:
    """An :class:`HttpClient` that rewrites the ID token of IdP token answers."""

    inner: HttpClient
    idp_keys: Mapping[str, JWK]  # IdP entity id -> its private ID-token signing key
    rp_keys: tuple[JWK, ...]  # the RP's private decryption keys
    mutate: Mutation | None = None
    sign_with: JWK | None = None
    seen: int = 0

    async def get(self, url: str, *, headers: Mapping[str, str] | None = None,
                  identity: ClientIdentity | None = None) -> HttpResponse:
        return await self.inner.get(url, headers=headers, identity=identity)

    async def post_form(self, url: str, data: Mapping[str, str], *,
                        headers: Mapping[str, str] | None = None,
                        identity: ClientIdentity | None = None) -> HttpResponse:
        resp = await self.inner.post_form(url, data, headers=headers, identity=identity)
        if self.mutate is None or not url.endswith("/token") or resp.status != 200:
            return resp
        self.seen += 1
        body = resp.json()
        header, plain = decrypt_jwe(body["id_token"], self.rp_keys)
        jws = parse_jws(plain.decode())
        claims = self.mutate(dict(jws.payload_json()))
        idp_key = self.idp_keys[url.rsplit("/", 1)[0].split("/idp/")[1]]
        signed = sign_jws(claims, self.sign_with or idp_key, typ="JWT",
                          extra_headers={"x5c": jws.header["x5c"]})
        rp_pub = next(k for k in self.rp_keys if k.kid == header["kid"]).public()
        extra = {"version": header["version"]} if "version" in header else None
        body["id_token"] = encrypt_jwe(signed.encode(), rp_pub, cty="JWT", extra_headers=extra)
        return HttpResponse(resp.status, resp.headers, json.dumps(body).encode(), resp.url)


@pytest.fixture
def tamper(demo: DemoThread) -> Iterator[Tamper]:
    rt = demo.demo.runtime
    tenancy = demo.demo.tenancy
    assert rt is not None and tenancy is not None
    keys = {i.entity_id.rsplit("/idp/", 1)[1]: i.id_token_key for i in demo.demo.sandbox.idps}
    t = Tamper(rt.upstream.http, keys,
               tenancy.application_keys("demo", time.time()).id_token_encryption_keys)
    original = rt.upstream.http
    rt.upstream.http = t
    try:
        yield t
    finally:
        rt.upstream.http = original


def _set(**values: Any) -> Mutation:
    def m(claims: dict[str, Any]) -> dict[str, Any]:
        claims.update(values)
        return claims
    return m


def _expired(claims: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    claims.update(iat=now - 1200, exp=now - 900)
    return claims


def _login(demo: DemoThread, slug: str, **over: str) -> tuple[dict[str, str], dict[str, str]]:
    params = base_params(demo, idp_hint=demo.idp(slug), **over)
    res = browser_login(authorize_url(demo.info, params), demo.info["redirect_uri"],
                        idp=None, kvnr=PERSONS[3].kvnr)
    return res.params, params


def _log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)


def test_control_untouched_token_passes(demo: DemoThread, tamper: Tamper) -> None:
    """The tampering machinery itself (re-sign, re-encrypt) keeps a valid token valid."""
    tamper.mutate = lambda c: c
    q, params = _login(demo, "suedkasse")  # 2.0.0: the version header is kept
    assert tamper.seen == 1
    assert "code" in q and q["state"] == params["state"]


@pytest.mark.parametrize(("case", "mutation", "slug", "over"), [
    ("wrong aud", _set(aud="https://other-rp.example/app"), "nordkasse", {}),
    ("two audiences", None, "nordkasse", {}),
    ("wrong nonce", _set(nonce="not-the-broker-nonce"), "nordkasse", {}),
    ("wrong iss", _set(iss="https://other-idp.example"), "suedkasse", {}),
    ("expired", _expired, "suedkasse", {}),
    ("insufficient acr", _set(acr="gematik-ehealth-loa-substantial",
                              amr=["urn:telematik:auth:mEW"]),
     "nordkasse", {"acr_values": "gematik-ehealth-loa-high"}),
    ("substantial without mEW", _set(acr="gematik-ehealth-loa-substantial",
                                     amr=["urn:telematik:auth:other"]), "mittelland-bkk", {}),
    ("unknown acr", _set(acr="gematik-ehealth-loa-low"), "nordkasse", {}),
])
def test_rp_check_failure_is_access_denied(
    demo: DemoThread, tamper: Tamper, caplog: pytest.LogCaptureFixture, case: str,
    mutation: Mutation | None, slug: str, over: dict[str, str],
) -> None:
    if mutation is None:  # two audiences: ours plus another
        def mutation(c: dict[str, Any]) -> dict[str, Any]:
            c["aud"] = [c["aud"], "https://other-rp.example/app"]
            return c
    tamper.mutate = mutation
    caplog.set_level(logging.DEBUG)
    q, params = _login(demo, slug, **over)
    assert tamper.seen == 1, "the IdP's token answer was not intercepted"
    assert q["error"] == "access_denied", case
    assert q["state"] == params["state"] and q["iss"] == demo.info["issuer"]
    assert "code" not in q
    assert_clean(json.dumps(q))
    logs = _log_text(caplog)
    assert "upstream login failed" in logs, case
    for value in PERSONAL:
        assert value not in logs, f"{case}: personal data in the log"
    assert "eyJ" not in logs, f"{case}: a token in the log"


def test_bad_signature_is_access_denied(demo: DemoThread, tamper: Tamper,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """Signed by a key that is not the IdP's (same kid, so no A_22861 re-fetch rescues it)."""
    tamper.mutate = lambda c: c
    idp = next(i for i in demo.demo.sandbox.idps if i.entity_id.endswith("/nordkasse"))
    tamper.sign_with = signing_jwk(kid=idp.id_token_key.kid)
    caplog.set_level(logging.DEBUG)
    q, params = _login(demo, "nordkasse")
    assert q["error"] == "access_denied" and q["state"] == params["state"]
    logs = _log_text(caplog)
    assert "upstream login failed" in logs
    assert not any(v in logs for v in PERSONAL)
