"""``healthid-broker demo --tls`` for strict clients, and the master's keys in ``demo --json``.

The demo runs as a subprocess, exactly as a developer starts it. With ``--tls`` every URL a
browser or an app is given is https and verifies against the demo's local CA only; a complete
login with Authlib (PKCE S256, client_secret_basic) and a plain httpx "browser" that trusts
nothing but that CA works end to end. Without ``--tls`` the browser-facing pages stay on
loopback http (docs/decisions/0003-demo-ports-and-embedded-shape.md).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client

from healthid_broker.federation.statements import jwks_to_keys, verify_statement
from healthid_broker.sandbox.persons import PERSONS

from .harness import browser_login, ca_context, discovery, verify_id_token

pytestmark = pytest.mark.slow

SCOPE = "openid urn:telematik:versicherter urn:telematik:given_name"


def _start_demo(data_dir: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "healthid_broker.cli", "demo", "--port", "0", "--json",
         "--data-dir", str(data_dir), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        _, err = proc.communicate(timeout=20)
        raise AssertionError(f"demo did not start: {err[-2000:]}")
    return proc, json.loads(line)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    return err


@pytest.fixture(scope="module")
def tls_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    proc, info = _start_demo(tmp_path_factory.mktemp("demo-tls"), "--tls")
    info["_proc"] = proc
    try:
        yield info
    finally:
        err = _stop(proc)
        # the trust hint goes to stderr, so stdout stays one JSON object
        assert f"NODE_EXTRA_CA_CERTS={info['ca_cert']}" in err
        assert "SSL_CERT_FILE" in err


def _master_jwks_of(info: dict[str, Any]) -> dict[str, Any]:
    """The master's keys as the running sandbox publishes them (its self-signed entity
    configuration), verified with the keys the demo printed."""
    r = httpx.get(f"{info['federation_master']}/.well-known/openid-federation",
                  verify=ca_context(info))
    r.raise_for_status()
    stmt = verify_statement(r.text, jwks_to_keys(info["master_jwks"]), now=time.time())
    assert stmt.iss == info["federation_master"]
    payload = json.loads(base64.urlsafe_b64decode(r.text.split(".")[1] + "=="))
    jwks: dict[str, Any] = payload["jwks"]
    return jwks


def _port(url: str) -> int:
    port = urlsplit(url).port
    assert port is not None
    return port


def test_every_url_is_https_and_trusts_only_the_local_ca(tls_demo: dict[str, Any]) -> None:
    info = tls_demo
    assert info["tls"] is True
    for key in ("demo_app", "broker", "broker_browser_base", "issuer", "redirect_uri",
                "federation_master"):
        assert info[key].startswith("https://127.0.0.1:"), (key, info[key])
    meta = discovery(info)
    for key in ("authorization_endpoint", "token_endpoint", "jwks_uri", "userinfo_endpoint",
                "pushed_authorization_request_endpoint"):
        if key in meta:
            assert meta[key].startswith("https://"), (key, meta[key])
    assert meta["authorization_endpoint"].startswith(info["broker_browser_base"] + "/")

    ca = ca_context(info)
    # the demo app's page and the broker's authorize page answer on https …
    assert httpx.get(info["demo_app"], verify=ca).status_code == 200
    r = httpx.get(meta["authorization_endpoint"], verify=ca,
                  params={"client_id": info["client_id"], "response_type": "code",
                          "redirect_uri": info["redirect_uri"], "scope": "openid",
                          "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGSw9jD6Ww",
                          "code_challenge_method": "S256", "state": "s", "nonce": "n"})
    assert r.status_code == 200 and 'name="idp"' in r.text  # the hosted chooser
    # … with a certificate that public trust stores do not accept
    with pytest.raises(httpx.ConnectError):
        httpx.get(info["demo_app"], verify=ssl.create_default_context())
    # and the browser ports do not speak plain http at all
    for port in (_port(info["broker_browser_base"]), _port(info["idps"][0]) + 2):
        with pytest.raises(httpx.TransportError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=5)

    # the broker's own callback, registered at the federation, is https as well
    r = httpx.get(f"{info['issuer']}/.well-known/openid-federation", verify=ca)
    r.raise_for_status()
    payload = json.loads(base64.urlsafe_b64decode(r.text.split(".")[1] + "=="))
    rp = payload["metadata"]["openid_relying_party"]
    assert rp["redirect_uris"]
    assert all(u.startswith(info["broker_browser_base"] + "/") for u in rp["redirect_uris"])
    # the sandbox IdPs' authorization endpoints (the pages a person sees) are https too
    for idp in info["idps"]:
        r = httpx.get(f"{idp}/.well-known/openid-federation", verify=ca)
        r.raise_for_status()
        payload = json.loads(base64.urlsafe_b64decode(r.text.split(".")[1] + "=="))
        op = payload["metadata"]["openid_provider"]
        assert op["authorization_endpoint"].startswith("https://127.0.0.1:"), idp


def test_authlib_login_over_https(tls_demo: dict[str, Any]) -> None:
    info = tls_demo
    person = PERSONS[3]
    meta = discovery(info)
    client = OAuth2Client(client_id=info["client_id"], client_secret=info["client_secret"],
                          scope=SCOPE, redirect_uri=info["redirect_uri"],
                          code_challenge_method="S256",
                          token_endpoint_auth_method="client_secret_basic",
                          verify=ca_context(info))
    nonce = secrets.token_urlsafe(16)
    verifier = generate_token(64)
    url, state = client.create_authorization_url(meta["authorization_endpoint"], nonce=nonce,
                                                 code_verifier=verifier)
    idp = next(i for i in info["idps"] if i.endswith("/suedkasse"))
    res = browser_login(url, info["redirect_uri"], idp=idp, kvnr=person.kvnr,
                        verify=ca_context(info))
    assert res.location.startswith("https://")
    assert res.params["state"] == state
    assert res.params["iss"] == meta["issuer"]  # RFC 9207
    token = client.fetch_token(meta["token_endpoint"], authorization_response=res.location,
                               code_verifier=verifier)
    claims = verify_id_token(info, token["id_token"], client_id=info["client_id"], nonce=nonce,
                             access_token=token["access_token"])
    assert claims["urn:telematik:claims:id"] == person.kvnr


def test_master_jwks_in_tls_demo_json(tls_demo: dict[str, Any]) -> None:
    assert tls_demo["master_jwks"]["keys"]
    assert tls_demo["master_jwks"] == _master_jwks_of(tls_demo)


def test_plain_demo_json_carries_master_jwks(tmp_path: Path) -> None:
    proc, info = _start_demo(tmp_path / "demo")
    try:
        assert info["tls"] is False
        # without --tls nothing changes: people's pages on loopback http, the rest https
        assert info["broker_browser_base"].startswith("http://127.0.0.1:")
        assert info["redirect_uri"].startswith("http://127.0.0.1:")
        assert info["broker"].startswith("https://")
        assert info["master_jwks"]["keys"]
        assert info["master_jwks"] == _master_jwks_of(info)
    finally:
        err = _stop(proc)
    assert "NODE_EXTRA_CA_CERTS" not in err
    # `sandbox --json` on the demo's sandbox directory prints the same master keys
    sb = subprocess.Popen(
        [sys.executable, "-m", "healthid_broker.cli", "sandbox", "--port", "0", "--json",
         "--data-dir", str(tmp_path / "demo" / "sandbox")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert sb.stdout is not None
        sandbox_info = json.loads(sb.stdout.readline())
    finally:
        _stop(sb)
    assert info["master_jwks"] == sandbox_info["master_jwks"]
