"""Native apps (RFC 8252), single-page apps (CORS) and the authorization request's
``prompt``/``max_age``/``ui_locales``, through the running demo over real sockets and TLS.
"""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from e2e.harness import DemoThread, authorize_url, browser_login, ca_context, pkce_pair, query
from healthid_broker.sandbox.persons import PERSONS
from healthid_broker.tenancy.errors import InvalidInput

from .broker_checks import assert_clean, authorize

pytestmark = pytest.mark.slow

SPA = "https://spa.example:8443"
NATIVE_SCHEME = "com.example.healthapp:/oauth2redirect"
LOOPBACK = "http://127.0.0.1:7777/native/cb"


@pytest.fixture(scope="module")
def public_client(demo: DemoThread) -> str:
    client_id, secret = demo.add_client(
        "demo", auth_method="none",
        redirect_uris=[f"{SPA}/callback", NATIVE_SCHEME, LOOPBACK, "http://[::1]:7777/cb"])
    assert secret is None
    return client_id


@pytest.fixture(scope="module")
def confidential_client(demo: DemoThread) -> tuple[str, str]:
    client_id, secret = demo.add_client("demo", auth_method="client_secret_basic",
                                        redirect_uris=[LOOPBACK, "https://web.example/cb"])
    assert secret is not None
    return client_id, secret


def _params(client_id: str, redirect_uri: str, **over: str) -> dict[str, str]:
    _v, challenge = pkce_pair()
    return {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
            "scope": "openid urn:telematik:versicherter", "state": secrets.token_hex(4),
            "nonce": secrets.token_hex(4), "code_challenge": challenge,
            "code_challenge_method": "S256", **over}


# ------------------------------------------------------------------ native apps


def test_confidential_client_cannot_register_private_use_scheme(demo: DemoThread) -> None:
    with pytest.raises(InvalidInput, match="native apps, which are public clients"):
        demo.add_client("demo", auth_method="client_secret_basic",
                        redirect_uris=[NATIVE_SCHEME])
    with pytest.raises(InvalidInput, match="public clients"):
        demo.add_client("demo", auth_method="private_key_jwt", redirect_uris=[NATIVE_SCHEME],
                        jwks={"keys": []})


@pytest.mark.parametrize("redirect_uri", [
    "http://127.0.0.1:51234/native/cb",  # another port: RFC 8252 §7.3
    "http://127.0.0.1/native/cb",
    "http://[::1]:40000/cb",
    LOOPBACK,
    NATIVE_SCHEME,
])
def test_public_client_redirects_accepted(demo: DemoThread, public_client: str,
                                          redirect_uri: str) -> None:
    r = authorize(demo, _params(public_client, redirect_uri))
    assert r.status_code == 200, r.text  # the hosted chooser
    assert 'name="idp"' in r.text


@pytest.mark.parametrize("redirect_uri", [
    "http://127.0.0.1:51234/native/other",  # another path
    "http://localhost:7777/native/cb",  # localhost is never the loopback IP (RFC 8252 §8.3)
    "https://127.0.0.1:7777/native/cb",
    "com.example.healthapp:/other",
    "com.example.evil:/oauth2redirect",
])
def test_public_client_other_redirects_refused(demo: DemoThread, public_client: str,
                                               redirect_uri: str) -> None:
    r = authorize(demo, _params(public_client, redirect_uri))
    assert r.status_code == 400
    assert "location" not in r.headers
    assert_clean(r.text)


def test_confidential_client_loopback_port_must_match(
        demo: DemoThread, confidential_client: tuple[str, str]) -> None:
    client_id, _secret = confidential_client
    ok = authorize(demo, _params(client_id, LOOPBACK))
    assert ok.status_code == 200
    other = authorize(demo, _params(client_id, "http://127.0.0.1:51234/native/cb"))
    assert other.status_code == 400
    assert "location" not in other.headers


@pytest.mark.parametrize("redirect_uri", [NATIVE_SCHEME, "http://127.0.0.1:49152/native/cb"])
def test_native_login_end_to_end(demo: DemoThread, public_client: str,
                                 redirect_uri: str) -> None:
    """A native app's whole login: private-use scheme or a loopback port chosen at run time,
    PKCE, no secret; the code is redeemed with the same redirect URI."""
    info = demo.info
    verifier, challenge = pkce_pair()
    params = _params(public_client, redirect_uri, code_challenge=challenge,
                     idp_hint=demo.idp("nordkasse"))
    res = browser_login(authorize_url(info, params), redirect_uri, idp=None,
                        kvnr=PERSONS[0].kvnr)
    assert res.params["iss"] == info["issuer"]
    r = httpx.post(f"{info['issuer']}/token", verify=ca_context(info), data={
        "grant_type": "authorization_code", "code": res.params["code"],
        "redirect_uri": redirect_uri, "client_id": public_client,
        "code_verifier": verifier})
    assert r.status_code == 200, r.text
    assert r.json()["token_type"] == "Bearer"


def test_chooser_works_in_an_in_app_browser_tab(demo: DemoThread, public_client: str) -> None:
    """RFC 8252 §8.12: the chooser is a plain top-level page (an in-app browser tab, e.g.
    SFSafariViewController or Custom Tabs): a form POST to the broker itself and then
    redirects; no pop-up, no frame, no script needed to continue."""
    r = authorize(demo, _params(public_client, NATIVE_SCHEME))
    assert r.status_code == 200
    assert 'method="post"' in r.text and "target=" not in r.text
    assert "window.open" not in r.text
    csp = r.headers["content-security-policy"]
    # the form's navigation may end in the app's private-use scheme: form-action names it
    assert "form-action 'self' http: https: com.example.healthapp:;" in csp
    assert "frame-ancestors 'none'" in csp  # never framed; the tab is top-level anyway


def test_chooser_form_action_only_widened_for_private_use(demo: DemoThread,
                                                          public_client: str) -> None:
    r = authorize(demo, _params(public_client, LOOPBACK))
    assert "form-action 'self' http: https:;" in r.headers["content-security-policy"]


# ------------------------------------------------------------------ single-page apps (CORS)

CORS_GETS = (".well-known/openid-configuration", "jwks")


def _url(demo: DemoThread, path: str) -> str:
    return f"{demo.info['issuer']}/{path}"


@pytest.mark.parametrize("path", CORS_GETS)
def test_cors_get_for_registered_origin(demo: DemoThread, public_client: str,
                                        path: str) -> None:
    r = httpx.get(_url(demo, path), headers={"origin": SPA}, verify=ca_context(demo.info))
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == SPA
    assert "access-control-allow-credentials" not in r.headers
    assert "Origin" in r.headers["vary"]


@pytest.mark.parametrize("path", CORS_GETS)
@pytest.mark.parametrize("origin", [
    "https://evil.example", "https://spa.example", "https://spa.example:8444",
    "http://spa.example:8443", "null", "https://web.example",  # the confidential one's
    "http://127.0.0.1:7778",
    "com.example.healthapp:", "https://spa.example:8443.evil.example",
])
def test_cors_nothing_for_other_origins(demo: DemoThread, public_client: str,
                                        confidential_client: tuple[str, str], path: str,
                                        origin: str) -> None:
    r = httpx.get(_url(demo, path), headers={"origin": origin}, verify=ca_context(demo.info))
    assert r.status_code == 200
    assert not any(h.startswith("access-control-") for h in r.headers)
    assert "Origin" in r.headers["vary"]


def _preflight(demo: DemoThread, path: str, origin: str, method: str) -> httpx.Response:
    return httpx.options(_url(demo, path), verify=ca_context(demo.info), headers={
        "origin": origin, "access-control-request-method": method,
        "access-control-request-headers": "content-type"})


def test_cors_preflight_and_token_request(demo: DemoThread, public_client: str) -> None:
    pre = _preflight(demo, "token", SPA, "POST")
    assert pre.status_code == 204
    assert pre.headers["access-control-allow-origin"] == SPA
    assert "POST" in pre.headers["access-control-allow-methods"]
    assert "content-type" in pre.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in pre.headers
    assert "Origin" in pre.headers["vary"]
    # the actual request (a wrong code: the CORS headers are on error answers too, so the
    # single-page app can read the OAuth error)
    r = httpx.post(_url(demo, "token"), verify=ca_context(demo.info), headers={"origin": SPA},
                   data={"grant_type": "authorization_code", "code": "nope",
                         "redirect_uri": f"{SPA}/callback", "client_id": public_client,
                         "code_verifier": "v" * 43})
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_grant"
    assert r.headers["access-control-allow-origin"] == SPA


@pytest.mark.parametrize("origin", ["https://evil.example", "https://web.example"])
def test_cors_preflight_refused_for_other_origins(
        demo: DemoThread, public_client: str, confidential_client: tuple[str, str],
        origin: str) -> None:
    pre = _preflight(demo, "token", origin, "POST")
    assert pre.status_code == 405
    assert not any(h.startswith("access-control-") for h in pre.headers)
    r = httpx.post(_url(demo, "token"), verify=ca_context(demo.info),
                   headers={"origin": origin}, data={"grant_type": "authorization_code"})
    assert not any(h.startswith("access-control-") for h in r.headers)


def test_cors_not_on_browser_pages(demo: DemoThread, public_client: str) -> None:
    r = authorize(demo, _params(public_client, f"{SPA}/callback"))
    r2 = httpx.get(r.request.url, headers={"origin": SPA})
    assert r2.status_code == 200
    assert "access-control-allow-origin" not in r2.headers


def test_cors_unknown_application(demo: DemoThread) -> None:
    r = httpx.get(f"{demo.info['broker']}/no-such-app/jwks", headers={"origin": SPA},
                  verify=ca_context(demo.info))
    assert r.status_code == 404
    assert "access-control-allow-origin" not in r.headers


# ------------------------------------------------------------------ prompt, max_age, ui_locales


def _pushed(demo: DemoThread, redirect: str) -> Any:
    """The sandbox IdP's record of the PAR behind a front-channel redirect."""
    q = query(redirect)
    for idp in demo.demo.sandbox.idps:
        pushed = idp.s.par.get(q.get("request_uri", ""))
        if pushed is not None:
            return pushed
    raise AssertionError("no such pushed request at any sandbox IdP")


@pytest.mark.parametrize(("over", "prompt", "max_age"), [
    ({"prompt": "login"}, "login", None),
    ({"prompt": "consent login"}, "login", None),
    ({"max_age": "0"}, None, "0"),
    ({"max_age": "3600", "prompt": "login"}, "login", "3600"),
    ({}, None, None),
    ({"prompt": "consent"}, None, None),
])
def test_prompt_and_max_age_reach_the_idp_par(demo: DemoThread, over: dict[str, str],
                                              prompt: str | None,
                                              max_age: str | None) -> None:
    """A_23030: prompt/max_age go upstream only when the app forces re-authentication."""
    info = demo.info
    params = _params(info["client_id"], info["redirect_uri"],
                     idp_hint=demo.idp("nordkasse"), **over)
    r = authorize(demo, params)
    assert r.status_code == 302
    pushed = _pushed(demo, r.headers["location"])
    assert pushed.prompt == prompt
    assert pushed.max_age == max_age


def test_prompt_login_survives_the_chooser(demo: DemoThread) -> None:
    info = demo.info
    r = authorize(demo, _params(info["client_id"], info["redirect_uri"], prompt="login"))
    assert r.status_code == 200
    tx = r.text.split('name="tx" value="', 1)[1].split('"', 1)[0]
    action = f"{info['broker_browser_base']}/demo/authorize/choose"
    r2 = httpx.post(action, data={"tx": tx, "idp": demo.idp("suedkasse")})
    assert r2.status_code == 302
    assert _pushed(demo, r2.headers["location"]).prompt == "login"


@pytest.mark.parametrize("value", ["-1", "abc", "1.5", "99999999999", "", "٣"])
def test_bad_max_age_is_redirected_error(demo: DemoThread, value: str) -> None:
    info = demo.info
    r = authorize(demo, _params(info["client_id"], info["redirect_uri"], max_age=value))
    assert r.status_code == 302
    q = query(r.headers["location"])
    assert q["error"] == "invalid_request"


@pytest.mark.parametrize(("ui_locales", "accept", "expected"), [
    ("en", "de", "en"),
    ("en-US de", "de", "en"),
    ("fr-CA de-AT", "en", "de"),
    ("fr", "en", "en"),  # none supported: the browser's preference
    ("", "en", "en"),
])
def test_ui_locales_choose_the_chooser_language(demo: DemoThread, ui_locales: str,
                                                accept: str, expected: str) -> None:
    info = demo.info
    p = _params(info["client_id"], info["redirect_uri"])
    if ui_locales:
        p["ui_locales"] = ui_locales
    r = httpx.get(f"{info['broker_browser_base']}/demo/authorize", params=p,
                  headers={"accept-language": accept})
    assert r.status_code == 200
    assert f'<html lang="{expected}"' in r.text
