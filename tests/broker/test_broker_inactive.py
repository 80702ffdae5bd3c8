"""T-05: no active application and client → no login, no data.

A deactivated client cannot start a login (error page, never a redirect) nor redeem a code it
obtained before; a deactivated application disappears as an OpenID Provider and as a
federation entity."""

from __future__ import annotations

import time

import httpx
import pytest

from e2e.harness import DemoThread, ca_context

from .broker_checks import assert_clean, authorize, base_params, login_code

pytestmark = pytest.mark.slow

SCOPES = ("openid", "urn:telematik:versicherter")


def _tenancy(demo: DemoThread):  # type: ignore[no-untyped-def]
    tenancy = demo.demo.tenancy
    assert tenancy is not None
    return tenancy


def test_deactivated_client_gets_no_login_and_no_tokens(demo: DemoThread) -> None:
    issuer = demo.add_application("t05-client", scopes=SCOPES)
    redirect = "https://t05.example/cb"
    cid, secret = demo.add_client("t05-client", auth_method="client_secret_basic",
                                  redirect_uris=[redirect])
    assert secret is not None
    code, verifier, _ = login_code(demo, client_id=cid, redirect_uri=redirect, issuer=issuer)
    _tenancy(demo).deactivate_client("t05-client", cid, now=time.time())
    demo.invalidate()
    r = authorize(demo, base_params(demo, client_id=cid, redirect_uri=redirect),
                  short_key="t05-client")
    assert r.status_code == 400 and "location" not in r.headers
    assert_clean(r.text)
    t = httpx.post(f"{issuer}/token", auth=(cid, secret), verify=ca_context(demo.info), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect,
        "code_verifier": verifier})
    assert t.status_code == 401 and t.json()["error"] == "invalid_client"


def test_deactivated_application_disappears(demo: DemoThread) -> None:
    issuer = demo.add_application("t05-app", scopes=SCOPES)
    verify = ca_context(demo.info)
    assert httpx.get(f"{issuer}/.well-known/openid-configuration", verify=verify).status_code \
        == 200
    _tenancy(demo).deactivate_application("t05-app", now=time.time())
    demo.invalidate()
    for path in ("/.well-known/openid-configuration", "/.well-known/openid-federation",
                 "/jwks", "/idps"):
        r = httpx.get(issuer + path, verify=verify)
        assert r.status_code == 404, path
    r = authorize(demo, base_params(demo), short_key="t05-app")
    assert r.status_code == 404 and "location" not in r.headers
    assert_clean(r.text)
