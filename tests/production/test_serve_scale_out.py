"""The production shape for real: PostgreSQL, Redis, two stateless `serve` processes, a
sandbox federation in its own process, provisioning through the CLI only.

A login starts at process B (the pages people see), and its code is redeemed at process A
(the public base): no sticky sessions, every piece of login state is in Redis, sealed.
"""

from __future__ import annotations

import secrets
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import redis

from healthid_broker.crypto.jose import JWK, parse_jws, verify_jws

from .helpers import (
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


def test_two_serve_processes_share_postgres_and_redis(tmp_path: Path, pg_role_pair: Any,
                                                      redis_prefix: str) -> None:
    # the owner role migrates (init), the runtime role serves and provisions (T-15)
    database_url = pg_role_pair.runtime_url
    prefix = redis_prefix
    env = base_env()
    with processes() as procs:
        info = start_sandbox(procs, tmp_path, env, "--auto-person", KVNR)
        ca_file = info["ca_cert"]

        port_a, port_b = free_port(), free_port()
        public_base = f"https://127.0.0.1:{port_a}"
        browser_base = f"https://127.0.0.1:{port_b}"
        data = tmp_path / "broker"
        common = ["--data-dir", str(data), "--database-url", database_url]
        cli_json("init", "--data-dir", str(data), "--database-url", pg_role_pair.owner_url,
                 env=env)  # the shared shape: secrets and schema once
        cli_json("tenant", "create", "acme", *common, env=env)
        cli_json("app", "create", "acme-app", "--tenant", "acme",
                 "--organization", "ACME DiGA GmbH",
                 "--scope", "openid", "--scope", "urn:telematik:display_name",
                 "--acr", "gematik-ehealth-loa-substantial", *common, env=env)
        redirect_uri = "https://app.example/callback"
        client = cli_json("client", "create", "acme-app", "--auth-method", "client_secret_basic",
                          "--redirect-uri", redirect_uri, *common, env=env)
        client_id, client_secret = client["client_id"], client["client_secret"]
        register_with_sandbox(tmp_path, cli_json(
            "app", "registration", "acme-app", "--base", public_base,
            "--environment", "sandbox", *common, env=env), env)

        start_serve_nodes(procs, tmp_path, ca_file, common, public_base, browser_base,
                          (port_a, port_b), env, prefix)

        issuer = f"{public_base}/acme-app"
        with httpx.Client(verify=ssl.create_default_context(cafile=ca_file), timeout=20) as c:
            disc = c.get(f"{issuer}/.well-known/openid-configuration").json()
            assert disc["authorization_endpoint"].startswith(browser_base)
            assert disc["token_endpoint"].startswith(public_base)
            idp = info["idps"][0]["entity_id"]
            verifier, challenge = pkce_pair()
            state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
            url = disc["authorization_endpoint"] + "?" + urlencode({
                "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                "scope": "openid urn:telematik:display_name", "state": state, "nonce": nonce,
                "code_challenge": challenge, "code_challenge_method": "S256", "idp_hint": idp})
            r1 = c.get(url)  # process B: PAR over mTLS, 302 to the IdP
            assert r1.status_code == 302, r1.text
            r2 = c.get(r1.headers["location"])  # sandbox IdP, auto person: back to B
            assert r2.status_code == 302
            assert r2.headers["location"].startswith(f"{browser_base}/acme-app/callback")
            # Everything in flight is in Redis, sealed; nothing readable.
            rds = redis.Redis(host="127.0.0.1", port=6379)
            keys = list(rds.scan_iter(match=f"{prefix}*"))
            assert keys, "login state must live in Redis"
            r3 = c.get(r2.headers["location"])  # process B: token over mTLS, code for the app
            assert r3.status_code == 302
            back = urlsplit(r3.headers["location"])
            q = parse_qs(back.query)
            assert q["state"] == [state] and q["iss"] == [issuer]
            tok = c.post(disc["token_endpoint"], data={  # process A redeems B's code
                "grant_type": "authorization_code", "code": q["code"][0],
                "redirect_uri": redirect_uri, "code_verifier": verifier},
                auth=(client_id, client_secret))
            assert tok.status_code == 200, tok.text
            jwks = c.get(disc["jwks_uri"]).json()
            parsed = parse_jws(tok.json()["id_token"])
            verify_jws(parsed, [JWK.from_dict(k) for k in jwks["keys"]])
            claims = parsed.payload_json()
            assert claims["iss"] == issuer and claims["aud"] == client_id
            assert claims["nonce"] == nonce
            assert "urn:telematik:claims:display_name" in claims
            assert "urn:telematik:claims:id" not in claims  # not allowed for this app (T-07)
            again = c.post(disc["token_endpoint"], data={
                "grant_type": "authorization_code", "code": q["code"][0],
                "redirect_uri": redirect_uri, "code_verifier": verifier},
                auth=(client_id, client_secret))
            assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
            assert not list(rds.scan_iter(match=f"{prefix}login*")), "nothing left after redeem"
