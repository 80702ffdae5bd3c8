"""Shared assertions and request helpers of the broker's negative tests."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from e2e.harness import DemoThread, authorize_url, browser_login, ca_context, pkce_pair
from healthid_broker.sandbox.persons import PERSONS

PERSONAL: tuple[str, ...] = tuple(
    v for p in PERSONS
    for v in (p.kvnr, p.given_name, p.family_name, p.birthdate.isoformat(), p.email))
"""Every identity value of the sandbox's synthetic persons."""

STACK_MARKERS = ("Traceback", 'File "', "Exception", "healthid_broker.", "line ")


def assert_clean(text: str) -> None:
    """No stack trace and no personal data in an answer (GS-A_3813)."""
    for marker in STACK_MARKERS:
        assert marker not in text, f"answer shows a stack trace marker {marker!r}"
    for value in PERSONAL:
        assert value not in text, "answer contains personal data"


def base_params(demo: DemoThread, **over: str | None) -> dict[str, str]:
    info = demo.info
    _v, challenge = pkce_pair()
    p: dict[str, str | None] = {
        "response_type": "code", "client_id": info["client_id"],
        "redirect_uri": info["redirect_uri"], "scope": "openid urn:telematik:versicherter",
        "state": "st-" + secrets.token_hex(4), "nonce": "n-" + secrets.token_hex(4),
        "code_challenge": challenge, "code_challenge_method": "S256",
    }
    p.update(over)
    return {k: v for k, v in p.items() if v is not None}


def authorize(demo: DemoThread, params: dict[str, str] | list[tuple[str, str]],
              short_key: str = "demo") -> httpx.Response:
    base = f"{demo.info['broker_browser_base']}/{short_key}/authorize"
    items = list(params.items()) if isinstance(params, dict) else params
    return httpx.get(base, params=httpx.QueryParams(tuple(items)), follow_redirects=False)


def redirect_params(r: httpx.Response, redirect_uri: str) -> dict[str, str]:
    assert r.status_code == 302, r.status_code
    loc = r.headers["location"]
    assert loc.startswith(redirect_uri + "?"), "redirected somewhere else"
    return dict(httpx.URL(loc).params)


def login_code(demo: DemoThread, *, client_id: str | None = None,
               redirect_uri: str | None = None, slug: str = "nordkasse",
               kvnr: str | None = None, issuer: str | None = None,
               **over: str) -> tuple[str, str, dict[str, str]]:
    """A real authorization code (gateway path); returns (code, verifier, params)."""
    info = demo.info
    verifier, challenge = pkce_pair()
    params = base_params(demo, client_id=client_id or info["client_id"],
                         redirect_uri=redirect_uri or info["redirect_uri"],
                         code_challenge=challenge, idp_hint=demo.idp(slug), **over)
    res = browser_login(authorize_url(info, params, issuer), params["redirect_uri"], idp=None,
                        kvnr=kvnr or PERSONS[0].kvnr)
    assert "code" in res.params, res.params.get("error")
    return res.params["code"], verifier, res.params


def token(demo: DemoThread, data: dict[str, str] | None = None, *,
          auth: tuple[str, str] | bool | None = True, **kw: Any) -> httpx.Response:
    info = demo.info
    basic = (info["client_id"], info["client_secret"]) if auth is True else auth or None
    return httpx.post(f"{info['issuer']}/token", data=data, auth=basic,
                      verify=ca_context(info), **kw)
