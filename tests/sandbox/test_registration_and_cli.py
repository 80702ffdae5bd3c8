"""Registration (API, CLI, broker registration JSON) and the ``sandbox --json`` command."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sandbox_env_helpers import Env, RPFixture

from healthid_broker.cli import main as cli_main
from healthid_broker.crypto.keys import public_key_pem, signing_jwk
from healthid_broker.federation.statements import jwks_to_keys, verify_statement
from healthid_broker.sandbox.registry import RegistrationError, parse_registration

pytestmark = pytest.mark.anyio


def test_parse_registration_rejects_bad_input() -> None:
    key = signing_jwk()
    good = {"entity_id": "https://rp.example/app", "jwks": {"keys": [key.public_dict()]}}
    assert parse_registration(good).jwks["keys"][0]["kid"] == key.kid
    for bad in (
        {**good, "entity_id": "http://rp.example"},
        {**good, "entity_id": "https://rp.example/"},
        {**good, "entity_id": "https://rp.example?x=1"},
        {**good, "jwks": {"keys": []}},
        {"entity_id": "https://rp.example"},
        {"entity_id": "https://rp.example", "keys": [{"kid": "k", "pem": "nope"}]},
    ):
        with pytest.raises(RegistrationError):
            parse_registration(bad)


async def _fetch_about(env: Env, sub: str) -> httpx.Response:
    m = env.sb.master_entity_id
    async with env.client() as c:
        return await c.get(f"{m}/fetch", params={"iss": m, "sub": sub})


@pytest.mark.slow
async def test_registration_api(env: Env) -> None:
    key = signing_jwk()
    eid = f"{env.rp_base}/api-registered"
    assert (await _fetch_about(env, eid)).status_code == 400
    async with env.client() as c:
        bad = await c.post(f"{env.sb.master_entity_id}/registration", content=b"{")
        r = await c.post(f"{env.sb.master_entity_id}/registration", json={
            "entity_id": eid, "jwks": {"keys": [key.public_dict()]}, "scopes": ["openid"]})
    assert bad.status_code == 400 and r.status_code == 201
    about = await _fetch_about(env, eid)
    stmt = verify_statement(about.text, jwks_to_keys(env.sb.master_jwks), now=time.time())
    assert stmt.claims["jwks"]["keys"][0]["kid"] == key.kid


@pytest.mark.slow
async def test_cli_registration_is_picked_up_by_running_sandbox(env: Env, tmp_path: Path) -> None:
    key = signing_jwk()
    eid = f"{env.rp_base}/cli-registered"
    reg_file = tmp_path / "reg.json"
    # the shape printed by the broker's `app registration` command
    reg_file.write_text(json.dumps({
        "entity_id": eid, "organization_name": "CLI GmbH", "environment": "sandbox",
        "scopes": "openid urn:telematik:versicherter",
        "keys": [{"kid": key.kid, "pem": public_key_pem(key.public_key)}],
    }))
    rc = cli_main(["sandbox", "register", "--data-dir", str(env.sb.data_dir),
                   "--from-json", str(reg_file)])
    assert rc == 0
    about = await _fetch_about(env, eid)
    assert about.status_code == 200
    stmt = verify_statement(about.text, jwks_to_keys(env.sb.master_jwks), now=time.time())
    assert jwks_to_keys(stmt.claims["jwks"])[0].same_public_key(key)

    jwks_file = tmp_path / "jwks.json"
    key2 = signing_jwk()
    jwks_file.write_text(json.dumps({"keys": [key2.public_dict()]}))
    eid2 = f"{env.rp_base}/cli-jwks"
    assert cli_main(["sandbox", "register", "--data-dir", str(env.sb.data_dir),
                     "--entity-id", eid2, "--jwks", str(jwks_file)]) == 0
    assert (await _fetch_about(env, eid2)).status_code == 200
    assert cli_main(["sandbox", "register", "--data-dir", str(env.sb.data_dir),
                     "--entity-id", "http://bad"]) == 2
    assert isinstance(env.rps["rp"], RPFixture)


@pytest.mark.slow
def test_commands_module_is_lazy() -> None:
    code = ("import sys, healthid_broker.cli.sandbox; "
            "print('healthid_broker.sandbox.server' in sys.modules, 'uvicorn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.slow
def test_sandbox_json_cli(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "healthid_broker.cli", "sandbox", "--port", "0", "--json",
         "--data-dir", str(tmp_path / "sb")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        info = json.loads(line)
        assert info["sandbox"] is True and len(info["idps"]) >= 3
        assert len(info["persons"]) >= 20
        r = httpx.get(f"{info['federation_master']}/.well-known/openid-federation",
                      verify=ssl.create_default_context(cafile=info["ca_cert"]))
        assert r.status_code == 200
        stmt = verify_statement(r.text, jwks_to_keys(info["master_jwks"]), now=time.time())
        assert stmt.iss == info["federation_master"]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert "SANDBOX" in err and "not for production" in err
