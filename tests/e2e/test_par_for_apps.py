"""Pushed authorization requests of apps (RFC 9126) through the demo, with Authlib as the
app: the client authenticates at ``/par`` as at the token endpoint, gets a ``request_uri``,
sends the browser to ``/authorize`` with only ``client_id`` and ``request_uri``, and redeems
the code; a client that requires PAR cannot send plain parameters."""

from __future__ import annotations

import secrets
import time
from typing import Any

import httpx
import pytest
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc.jwk import ECKey

from healthid_broker.sandbox.persons import PERSONS

from .harness import (
    DemoThread,
    authorize_url,
    browser_login,
    ca_context,
    discovery,
    pkce_pair,
    query,
    verify_id_token,
)

pytestmark = pytest.mark.slow

SCOPE = "openid urn:telematik:versicherter"
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"


def _require_par(demo: DemoThread, client_id: str, on: bool = True) -> None:
    tenancy = demo.demo.tenancy
    assert tenancy is not None
    view = tenancy.update_client("demo", client_id, now=time.time(), require_par=on)
    assert view.require_par is on
    demo.invalidate()


def _pushed_params(redirect_uri: str, challenge: str, **over: str) -> dict[str, str]:
    return {"response_type": "code", "redirect_uri": redirect_uri, "scope": SCOPE,
            "state": secrets.token_hex(8), "nonce": secrets.token_hex(8),
            "code_challenge": challenge, "code_challenge_method": "S256", **over}


def _front_channel(demo: DemoThread, client_id: str, request_uri: str,
                   redirect_uri: str, idp: str | None = "nordkasse") -> dict[str, str]:
    url = authorize_url(demo.info, {"client_id": client_id, "request_uri": request_uri})
    res = browser_login(url, redirect_uri, idp=demo.idp(idp) if idp else None,
                        kvnr=PERSONS[0].kvnr)
    return res.params


def test_discovery_advertises_par(demo: DemoThread) -> None:
    meta = discovery(demo.info)
    assert meta["pushed_authorization_request_endpoint"] == f"{demo.info['issuer']}/par"
    assert meta["require_pushed_authorization_requests"] is False


@pytest.mark.parametrize("method", ["client_secret_basic", "private_key_jwt"])
def test_par_login_end_to_end_with_authlib(demo: DemoThread, method: str) -> None:
    info = demo.info
    redirect = f"https://par-{method.replace('_', '-')}.example/cb"
    secret: Any
    if method == "private_key_jwt":
        key = ECKey.generate_key("P-256", parameters={"kid": "par-sig", "use": "sig"})
        cid, _ = demo.add_client("demo", auth_method=method, redirect_uris=[redirect],
                                 jwks={"keys": [key.as_dict(private=False)]})
        secret = key
    else:
        cid, secret = demo.add_client("demo", auth_method=method, redirect_uris=[redirect])
    _require_par(demo, cid)
    meta = discovery(info)
    par_endpoint = meta["pushed_authorization_request_endpoint"]
    client = OAuth2Client(client_id=cid, client_secret=secret, scope=SCOPE,
                          redirect_uri=redirect, token_endpoint_auth_method=method,
                          verify=ca_context(info))
    if method == "private_key_jwt":
        # Authlib's default: the assertion's aud is the URL it is sent to (here the PAR
        # endpoint), which RFC 9126 §2 makes the broker accept
        client.register_client_auth_method(PrivateKeyJWT(alg="ES256"))
    verifier, challenge = pkce_pair()
    params = _pushed_params(redirect, challenge)
    r = client.post(par_endpoint, data={"client_id": cid, **params},
                    auth=client.client_auth(method))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["request_uri"].startswith(REQUEST_URI_PREFIX)
    assert body["expires_in"] == 60
    assert r.headers["cache-control"] == "no-store"

    back = _front_channel(demo, cid, body["request_uri"], redirect)
    assert back["state"] == params["state"]
    assert back["iss"] == info["issuer"]
    token = client.fetch_token(meta["token_endpoint"], code=back["code"],
                               code_verifier=verifier, redirect_uri=redirect)
    verify_id_token(info, token["id_token"], client_id=cid, nonce=params["nonce"],
                    access_token=token["access_token"])

    # the request_uri works once
    again = httpx.get(authorize_url(info, {"client_id": cid,
                                           "request_uri": body["request_uri"]}))
    assert again.status_code == 400
    assert "location" not in again.headers

    # plain parameters are refused for a client that requires PAR (RFC 9126 §5)
    plain = httpx.get(authorize_url(info, {"client_id": cid, **params}))
    assert plain.status_code == 302
    q = query(plain.headers["location"])
    assert q["error"] == "invalid_request" and "PAR" in q["error_description"]


def test_public_client_par_with_pkce_and_chooser(demo: DemoThread) -> None:
    info = demo.info
    redirect = "com.example.parapp:/cb"
    cid, _ = demo.add_client("demo", auth_method="none", redirect_uris=[redirect])
    verifier, challenge = pkce_pair()
    params = _pushed_params(redirect, challenge, prompt="login")
    r = httpx.post(f"{info['issuer']}/par", data={"client_id": cid, **params},
                   verify=ca_context(info))
    assert r.status_code == 201, r.text
    back = _front_channel(demo, cid, r.json()["request_uri"], redirect, idp="suedkasse")
    t = httpx.post(f"{info['issuer']}/token", verify=ca_context(info), data={
        "grant_type": "authorization_code", "code": back["code"], "redirect_uri": redirect,
        "client_id": cid, "code_verifier": verifier})
    assert t.status_code == 200, t.text


def test_plain_request_still_works_without_require_par(demo: DemoThread) -> None:
    info = demo.info
    redirect = "https://plain.example/cb"
    cid, _ = demo.add_client("demo", auth_method="none", redirect_uris=[redirect])
    _v, challenge = pkce_pair()
    r = httpx.get(authorize_url(info, {"client_id": cid, **_pushed_params(redirect, challenge)}))
    assert r.status_code == 200


@pytest.mark.parametrize(("over", "status", "error"), [
    ({"redirect_uri": "https://evil.example/cb"}, 400, "invalid_request"),
    ({"response_type": "token"}, 400, "unsupported_response_type"),
    ({"scope": "urn:telematik:versicherter"}, 400, "invalid_scope"),
    ({"code_challenge": "short"}, 400, "invalid_request"),
    ({"request_uri": REQUEST_URI_PREFIX + "x"}, 400, "invalid_request"),
    ({"prompt": "none"}, 400, "login_required"),
    ({"client_id": "nope"}, 401, "invalid_client"),
])
def test_par_errors_are_oauth_json(demo: DemoThread, over: dict[str, str], status: int,
                                   error: str) -> None:
    info = demo.info
    redirect = "https://par-errors.example/cb"
    cid, _ = demo.add_client("demo", auth_method="none", redirect_uris=[redirect])
    _v, challenge = pkce_pair()
    form = {"client_id": cid, **_pushed_params(redirect, challenge), **over}
    r = httpx.post(f"{info['issuer']}/par", data=form, verify=ca_context(info))
    assert r.status_code == status, r.text
    assert r.json()["error"] == error


def test_par_confidential_client_must_authenticate(demo: DemoThread) -> None:
    info = demo.info
    redirect = "https://par-auth.example/cb"
    cid, secret = demo.add_client("demo", auth_method="client_secret_basic",
                                  redirect_uris=[redirect])
    assert secret is not None
    _v, challenge = pkce_pair()
    form = {"client_id": cid, **_pushed_params(redirect, challenge)}
    r = httpx.post(f"{info['issuer']}/par", data=form, verify=ca_context(info))
    assert r.status_code == 401
    r = httpx.post(f"{info['issuer']}/par", data=form, verify=ca_context(info),
                   auth=(cid, secret + "x"))
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"


def test_request_uri_of_another_client_is_refused(demo: DemoThread) -> None:
    info = demo.info
    redirect = "https://par-other.example/cb"
    a, _ = demo.add_client("demo", auth_method="none", redirect_uris=[redirect])
    b, _ = demo.add_client("demo", auth_method="none", redirect_uris=[redirect])
    _v, challenge = pkce_pair()
    r = httpx.post(f"{info['issuer']}/par", verify=ca_context(info),
                   data={"client_id": a, **_pushed_params(redirect, challenge)})
    uri = r.json()["request_uri"]
    wrong = httpx.get(authorize_url(info, {"client_id": b, "request_uri": uri}))
    assert wrong.status_code == 400
    assert "location" not in wrong.headers
    for bad in ("urn:other:x", REQUEST_URI_PREFIX, REQUEST_URI_PREFIX + "y" * 100):
        r2 = httpx.get(authorize_url(info, {"client_id": a, "request_uri": bad}))
        assert r2.status_code == 400


def test_cli_client_create_and_update_require_par(demo: DemoThread) -> None:
    """``client create --require-par`` / ``client update --no-require-par`` against the
    demo's own database."""
    from healthid_broker.cli import main

    data_dir = str(demo.demo.cfg.data_dir)
    rc = main(["client", "create", "demo", "--data-dir", data_dir, "--auth-method", "none",
               "--redirect-uri", "com.example.cli:/cb", "--require-par", "--name",
               "cli-par", "--json"])
    assert rc == 0
    tenancy = demo.demo.tenancy
    assert tenancy is not None
    view = next(c for c in tenancy.list_clients("demo") if c.name == "cli-par")
    assert view.require_par is True
    assert view.summary()["require_pushed_authorization_requests"] is True
    rc = main(["client", "update", "demo", "cli-par", "--data-dir", data_dir,
               "--no-require-par"])
    assert rc == 0
    view = next(c for c in tenancy.list_clients("demo") if c.name == "cli-par")
    assert view.require_par is False
