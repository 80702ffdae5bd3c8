"""One secret model for many nodes, for real: `init` processes started at the same moment on
an empty data directory and an empty PostgreSQL database, then `serve` processes started at
the same moment against them and Redis, and logins whose steps hit different processes."""

from __future__ import annotations

import json
import os
import ssl
import stat
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import psycopg
import pytest

from healthid_broker.crypto.jose import JWK, parse_jws, verify_jws
from healthid_broker.crypto.keys import LocalCA
from healthid_broker.runtime.secrets import SECRET_FILES
from healthid_broker.sandbox.persons import PERSONS
from healthid_broker.storage.db import alembic_config

from .helpers import (
    CLI,
    base_env,
    cli_json,
    free_port,
    pkce_pair,
    processes,
    register_with_sandbox,
    run_at_once,
    serve_args,
    start_at_once,
    start_sandbox,
    wait_json_line,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

NODES = 3
APPS = ("app-one", "app-two")
SCOPE = "openid urn:telematik:display_name"


def _snapshot(d: Path) -> dict[str, bytes]:
    return {name: (d / name).read_bytes() for name in SECRET_FILES}


def _head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _versions(pg_url: str) -> list[str]:
    url = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT version_num FROM alembic_version")]


def _init_four_at_once(tmp_path: Path, data: Path, pg_url: str,
                       env: dict[str, str]) -> list[dict[str, object]]:
    argv = ["init", "--data-dir", str(data), "--database-url", pg_url, "--json"]
    results = run_at_once([argv] * 4, tmp_path / "init-signal", env)
    for r in results:
        assert r.returncode == 0, r.stderr[-3000:]
    return [json.loads(r.stdout) for r in results]


def test_four_inits_at_once_make_one_set_of_secrets(tmp_path: Path, pg_url: str) -> None:
    env = base_env()
    data = tmp_path / "broker"
    outs = _init_four_at_once(tmp_path, data, pg_url, env)
    # every secret made by exactly one of the four; all four saw the schema current
    made = [n for o in outs for n in o["created"]]  # type: ignore[attr-defined]
    assert sorted(made) == sorted(SECRET_FILES)
    assert all(o["database_migrated"] is True for o in outs)
    assert _versions(pg_url) == [_head_revision()]
    # no temporary file left behind
    assert sorted(p.name for p in data.iterdir()) == sorted(SECRET_FILES)
    for name in SECRET_FILES:
        st = os.stat(data / name)
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    before = _snapshot(data)

    again = subprocess.run([*CLI, "init", "--data-dir", str(data), "--database-url", pg_url],
                           env=env, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 0, again.stderr
    assert "left unchanged" in again.stdout and "created" not in again.stdout
    assert _snapshot(data) == before  # byte for byte
    assert _versions(pg_url) == [_head_revision()]


def _at(url: str, port: int) -> str:
    """``url`` sent to the broker process listening on ``port`` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


def _login(tls: ssl.SSLContext, ports: tuple[int, int, int], issuer: str, app: dict[str, str],
           kvnr: str, idp: str) -> str:
    """One complete login: authorize at ports[0], the IdP's callback at ports[1], the token
    request at ports[2]; returns the ID token's ``sub``."""
    at_authorize, at_callback, at_token = ports
    with httpx.Client(verify=tls, timeout=30) as c:
        disc = c.get(_at(f"{issuer}/.well-known/openid-configuration", at_authorize)).json()
        verifier, challenge = pkce_pair()
        state, nonce = os.urandom(12).hex(), os.urandom(12).hex()
        r1 = c.get(_at(disc["authorization_endpoint"], at_authorize) + "?" + urlencode({
            "response_type": "code", "client_id": app["client_id"],
            "redirect_uri": app["redirect_uri"], "scope": SCOPE, "state": state,
            "nonce": nonce, "code_challenge": challenge, "code_challenge_method": "S256",
            "idp_hint": idp}))
        assert r1.status_code == 302, r1.text  # PAR at the IdP done by this process
        to_idp = urlsplit(r1.headers["location"])
        q_idp = parse_qs(to_idp.query)
        picker = c.get(r1.headers["location"])
        assert picker.status_code == 200
        r2 = c.post(urlunsplit(to_idp._replace(query="")), data={
            "request_uri": q_idp["request_uri"][0], "client_id": q_idp["client_id"][0],
            "kvnr": kvnr})
        assert r2.status_code == 303, r2.text
        r3 = c.get(_at(r2.headers["location"], at_callback))  # state sealed by another node
        assert r3.status_code == 302, r3.text
        back = urlsplit(r3.headers["location"])
        q = parse_qs(back.query)
        assert q["state"] == [state] and q["iss"] == [issuer], q
        tok = c.post(_at(disc["token_endpoint"], at_token), data={
            "grant_type": "authorization_code", "code": q["code"][0],
            "redirect_uri": app["redirect_uri"], "code_verifier": verifier},
            auth=(app["client_id"], app["client_secret"]))
        assert tok.status_code == 200, tok.text
        jwks = c.get(_at(disc["jwks_uri"], at_token)).json()
        parsed = parse_jws(tok.json()["id_token"])
        verify_jws(parsed, [JWK.from_dict(k) for k in jwks["keys"]])
        claims = parsed.payload_json()
        assert claims["iss"] == issuer and claims["aud"] == app["client_id"]
        assert claims["nonce"] == nonce
        sub = claims["sub"]
        assert isinstance(sub, str) and sub
        return sub


def test_nodes_started_at_once_share_one_secret_set(tmp_path: Path, pg_role_pair: Any,
                                                    redis_prefix: str) -> None:
    env = base_env()
    data = tmp_path / "broker"
    # the owner role migrates (init), the runtime role serves and provisions (T-15)
    common = ["--data-dir", str(data), "--database-url", pg_role_pair.runtime_url]
    ports = [free_port() for _ in range(NODES)]
    public_base = f"https://127.0.0.1:{ports[0]}"
    browser_base = f"https://127.0.0.1:{ports[1]}"
    with processes() as procs:
        info = start_sandbox(procs, tmp_path, env)  # the person picker, no auto person
        ca_file = info["ca_cert"]
        idp = info["idps"][0]["entity_id"]

        # empty → initialised, by four processes at once
        _init_four_at_once(tmp_path, data, pg_role_pair.owner_url, env)
        secrets_made = _snapshot(data)

        cli_json("tenant", "create", "acme", *common, env=env)
        apps: dict[str, dict[str, str]] = {}
        for short_key in APPS:
            cli_json("app", "create", short_key, "--tenant", "acme",
                     "--organization", "ACME DiGA GmbH", "--scope", "openid",
                     "--scope", "urn:telematik:display_name",
                     "--acr", "gematik-ehealth-loa-substantial", *common, env=env)
            redirect_uri = f"https://{short_key}.example/callback"
            client = cli_json("client", "create", short_key, "--auth-method",
                              "client_secret_basic", "--redirect-uri", redirect_uri,
                              *common, env=env)
            apps[short_key] = {"client_id": client["client_id"],
                               "client_secret": client["client_secret"],
                               "redirect_uri": redirect_uri}
            register_with_sandbox(tmp_path, cli_json(
                "app", "registration", short_key, "--base", public_base,
                "--environment", "sandbox", *common, env=env), env)

        sb_dir = Path(ca_file).parent
        ca = LocalCA.load(sb_dir / "ca.pem", sb_dir / "keys" / "ca.key")
        ca.issue_server_cert(["127.0.0.1"]).write(tmp_path / "tls.pem", tmp_path / "tls.key")
        senv = {**env, "HEALTHID_REDIS_URL": "redis://127.0.0.1:6379/0",
                "HEALTHID_REDIS_PREFIX": redis_prefix}
        nodes = start_at_once(
            [serve_args(tmp_path, common, public_base, browser_base, port) for port in ports],
            tmp_path / "serve-signal", senv)
        procs.extend(nodes)
        for node in nodes:
            wait_json_line(node, timeout=60)
        assert _snapshot(data) == secrets_made  # no node made or changed a secret

        tls = ssl.create_default_context(cafile=ca_file)
        persons = [p.kvnr for p in PERSONS[:2]]
        subs: dict[tuple[str, str], set[str]] = {}
        logins = 0
        for kvnr in persons:
            for short_key in APPS:
                for i in range(NODES):  # every node takes every step once
                    route = (ports[i], ports[(i + 1) % NODES], ports[(i + 2) % NODES])
                    sub = _login(tls, route, f"{public_base}/{short_key}",
                                 apps[short_key], kvnr, idp)
                    subs.setdefault((kvnr, short_key), set()).add(sub)
                    logins += 1
        assert logins == len(persons) * len(APPS) * NODES  # every login completed
        # one `sub` per person and application, whichever nodes served the login …
        assert all(len(s) == 1 for s in subs.values()), subs
        # … and a different one for every other person or application (pairwise, A_23035)
        assert len({next(iter(s)) for s in subs.values()}) == len(subs)
        for node in nodes:
            assert node.poll() is None, "a node stopped"
