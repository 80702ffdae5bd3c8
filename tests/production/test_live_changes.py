"""Changes are live at once: with two `serve` processes running (PostgreSQL, Redis), a
client created through the CLI logs in within one second on either of them, and a client or
an application deactivated through the CLI is refused within one second — although both
processes had the application cached (the periodic refresh alone takes 30 s)."""

from __future__ import annotations

import secrets
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from healthid_broker.crypto.jose import JWK, parse_jws, verify_jws

from .helpers import (
    CLI,
    base_env,
    cli_json,
    free_port,
    pkce_pair,
    processes,
    register_with_sandbox,
    start_sandbox,
    start_serve_nodes,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

KVNR = "A123456780"
SCOPE = "openid urn:telematik:display_name"
ACR = "gematik-ehealth-loa-substantial"
LIVE_WITHIN = 1.0


def _at(url: str, port: int) -> str:
    """``url`` sent to the broker process listening on ``port`` instead."""
    return urlunsplit(urlsplit(url)._replace(netloc=f"127.0.0.1:{port}"))


def _authorize(c: httpx.Client, disc: dict[str, Any], port: int, client: dict[str, str],
               idp: str) -> tuple[httpx.Response, dict[str, str]]:
    verifier, challenge = pkce_pair()
    flow = {"state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16),
            "verifier": verifier}
    r = c.get(_at(disc["authorization_endpoint"], port) + "?" + urlencode({
        "response_type": "code", "client_id": client["client_id"],
        "redirect_uri": client["redirect_uri"], "scope": SCOPE, "state": flow["state"],
        "nonce": flow["nonce"], "code_challenge": challenge, "code_challenge_method": "S256",
        "idp_hint": idp}))
    return r, flow


def _seen_within(check: Any, limit: float) -> float:
    """Repeat ``check()`` until it holds; the delay of the first request that saw the
    change, counted from now (the CLI has returned: the change is committed)."""
    t0 = time.monotonic()
    while True:
        sent = time.monotonic() - t0
        if check():
            return sent
        assert sent < limit, f"the change was not seen within {limit} s"
        time.sleep(0.02)


def _complete_login(c: httpx.Client, disc: dict[str, Any], issuer: str, ports: tuple[int, int],
                    client: dict[str, str], idp: str) -> dict[str, Any]:
    """A complete login: authorize and the IdP's callback at ports[0], the token request
    at ports[1]; returns the verified ID token's claims."""
    at_browser, at_token = ports
    r1, flow = _authorize(c, disc, at_browser, client, idp)
    assert r1.status_code == 302, r1.text  # PAR at the IdP done by this process
    r2 = c.get(r1.headers["location"])  # sandbox IdP, auto person
    assert r2.status_code == 302, r2.text
    r3 = c.get(_at(r2.headers["location"], at_browser))
    assert r3.status_code == 302, r3.text
    q = parse_qs(urlsplit(r3.headers["location"]).query)
    assert q["state"] == [flow["state"]] and q["iss"] == [issuer], q
    tok = c.post(_at(disc["token_endpoint"], at_token), data={
        "grant_type": "authorization_code", "code": q["code"][0],
        "redirect_uri": client["redirect_uri"], "code_verifier": flow["verifier"]},
        auth=(client["client_id"], client["client_secret"]))
    assert tok.status_code == 200, tok.text
    jwks = c.get(_at(disc["jwks_uri"], at_token)).json()
    parsed = parse_jws(tok.json()["id_token"])
    verify_jws(parsed, [JWK.from_dict(k) for k in jwks["keys"]])
    claims: dict[str, Any] = parsed.payload_json()
    assert claims["iss"] == issuer and claims["aud"] == client["client_id"]
    assert claims["nonce"] == flow["nonce"]
    return claims


def test_cli_changes_are_live_on_every_serve_process_within_a_second(
        tmp_path: Path, pg_role_pair: Any, redis_prefix: str) -> None:
    env = base_env()
    data = tmp_path / "broker"
    # the owner role migrates (init), the runtime role serves and provisions (T-15)
    common = ["--data-dir", str(data), "--database-url", pg_role_pair.runtime_url]
    with processes() as procs:
        info = start_sandbox(procs, tmp_path, env, "--auto-person", KVNR)
        ca_file = info["ca_cert"]
        idp = info["idps"][0]["entity_id"]
        port_a, port_b = free_port(), free_port()
        public_base = f"https://127.0.0.1:{port_a}"
        browser_base = f"https://127.0.0.1:{port_b}"
        cli_json("init", "--data-dir", str(data), "--database-url", pg_role_pair.owner_url,
                 env=env)
        cli_json("tenant", "create", "acme", *common, env=env)
        cli_json("app", "create", "acme-app", "--tenant", "acme", "--organization",
                 "ACME DiGA GmbH", "--scope", "openid", "--scope", "urn:telematik:display_name",
                 "--acr", ACR, *common, env=env)
        first = {"redirect_uri": "https://app.example/callback"}
        made = cli_json("client", "create", "acme-app", "--redirect-uri", first["redirect_uri"],
                        *common, env=env)
        first |= {"client_id": made["client_id"], "client_secret": made["client_secret"]}
        register_with_sandbox(tmp_path, cli_json(
            "app", "registration", "acme-app", "--base", public_base,
            "--environment", "sandbox", *common, env=env), env)
        start_serve_nodes(procs, tmp_path, ca_file, common, public_base, browser_base,
                          (port_a, port_b), env, redis_prefix)

        issuer = f"{public_base}/acme-app"
        tls = ssl.create_default_context(cafile=ca_file)
        with httpx.Client(verify=tls, timeout=20) as c:
            disc = c.get(f"{issuer}/.well-known/openid-configuration").json()
            # Both processes have the application cached (a login through each of them).
            _complete_login(c, disc, issuer, (port_b, port_a), first, idp)
            _complete_login(c, disc, issuer, (port_a, port_b), first, idp)

            # A client created through the CLI (a process of its own) ...
            second = {"redirect_uri": "https://app.example/second"}
            made = cli_json("client", "create", "acme-app", "--name", "second",
                            "--redirect-uri", second["redirect_uri"], *common, env=env)
            second |= {"client_id": made["client_id"], "client_secret": made["client_secret"]}
            # ... is accepted by each serve process within a second ...
            for port in (port_b, port_a):
                delay = _seen_within(
                    lambda p=port: _authorize(c, disc, p, second, idp)[0].status_code == 302,
                    LIVE_WITHIN)
                assert delay < LIVE_WITHIN
            # ... and logs in: authorized at one process, redeemed at the other.
            claims = _complete_login(c, disc, issuer, (port_b, port_a), second, idp)
            assert "urn:telematik:claims:display_name" in claims

            # The client deactivated through the CLI (`apply` with active = false) ...
            desc = tmp_path / "deactivate.toml"
            desc.write_text(
                '[[tenants]]\nname = "acme"\n[[tenants.applications]]\n'
                'short_key = "acme-app"\ndisplay_name = "acme-app"\n'
                'organization_name = "ACME DiGA GmbH"\n'
                'scopes = ["openid", "urn:telematik:display_name"]\n'
                f'required_acr = "{ACR}"\n'
                '[[tenants.applications.clients]]\nname = "second"\n'
                'auth_method = "client_secret_basic"\n'
                f'redirect_uris = ["{second["redirect_uri"]}"]\nactive = false\n',
                encoding="utf-8")
            out = subprocess.run([*CLI, "apply", str(desc), *common], env=env,
                                 capture_output=True, text=True, timeout=60, check=False)
            assert out.returncode == 0, out.stderr
            assert "~ client acme-app/second: active: True -> False" in out.stdout
            # ... is refused by each serve process within a second.
            for port in (port_b, port_a):
                _seen_within(
                    lambda p=port: _authorize(c, disc, p, second, idp)[0].status_code == 400,
                    LIVE_WITHIN)
            # The first client was not touched and still logs in.
            _complete_login(c, disc, issuer, (port_a, port_b), first, idp)

            # The application deactivated through the CLI is gone within a second too.
            cli_json("app", "deactivate", "acme-app", *common, env=env)
            for port in (port_a, port_b):
                _seen_within(
                    lambda p=port: c.get(_at(f"{issuer}/.well-known/openid-configuration",
                                             p)).status_code == 404,
                    LIVE_WITHIN)
        for p in procs:
            assert p.poll() is None, "a process stopped"
