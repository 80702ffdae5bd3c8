"""Interoperability: an independent OpenID Federation implementation (ofcli 0.7.2 from
PyPI, JOSE by cryptojwt) resolves the sandbox's trust chains master → IdP and agrees with
our :class:`ChainResolver` on the resolved ``openid_provider`` metadata (§6.1.4), on the
statements of the chain (§4, §10.2) and on the chain's expiry, the smallest ``exp`` (§10.4).

The sandbox runs in-process on this test's event loop; ofcli runs as a subprocess (awaited
with :func:`anyio.run_process`, so the loop keeps serving) in its own virtualenv, trusting
the sandbox CA through ``SSL_CERT_FILE``.  The sandbox clock is frozen, so every fetch of a
statement yields the same payload and ``exp`` can be compared exactly.  See docs/interop.md.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from healthid_broker.crypto.jose import JWK
from healthid_broker.crypto.keys import signing_jwk
from healthid_broker.federation.trust_chain import ChainResolver, TrustAnchor
from healthid_broker.http.client import OutboundClient
from healthid_broker.sandbox import Sandbox, SandboxConfig

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

HERE = Path(__file__).parent
OFCLI = HERE / "ofcli_gematik.py"
VERIFY = HERE / "verify_chain.py"
SUBPROCESS_TIMEOUT = 60.0

# ofcli parses openid_provider metadata into oidcmsg 1.6.0's ProviderConfigurationResponse,
# whose ``c_default`` fills in these values when the entity does not publish them.  They are
# not metadata policy (§6.1.4) and our resolver rightly adds nothing; the test accepts exactly
# these additions.  (oidcmsg's require_request_uri_registration=True even differs from the
# OpenID Connect Discovery 1.0 §3 default, false; "version" is oidcmsg's own.)
OIDCMSG_PROVIDER_DEFAULTS: dict[str, Any] = {
    "version": "3.0",
    "token_endpoint_auth_methods_supported": ["client_secret_basic"],
    "claims_parameter_supported": False,
    "request_parameter_supported": False,
    "request_uri_parameter_supported": True,
    "require_request_uri_registration": True,
    "grant_types_supported": ["authorization_code", "implicit"],
}


@dataclass
class Running:
    sandbox: Sandbox
    info: dict[str, Any]
    frozen_now: int


@pytest.fixture
async def sandbox(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Running]:
    frozen_now = int(time.time())
    sb = Sandbox(SandboxConfig(host="127.0.0.1", port=0, data_dir=tmp_path / "sandbox"),
                 clock=lambda: float(frozen_now))
    await sb.start()
    try:
        yield Running(sb, sb.info(), frozen_now)
    finally:
        await sb.stop()


def _child_env(ca_cert: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    # aiohttp builds its TLS context with ssl.create_default_context(): OpenSSL's default
    # verify paths honour SSL_CERT_FILE.  TZ=UTC: ofcli prints exp as a naive local time.
    env.update(SSL_CERT_FILE=ca_cert, REQUESTS_CA_BUNDLE=ca_cert, TZ="UTC",
               PYTHONDONTWRITEBYTECODE="1")
    return env


async def _run(python: Path, script: Path, args: Sequence[str], env: dict[str, str],
               stdin: bytes | None = None, check: bool = True) -> tuple[int, str, str]:
    with anyio.fail_after(SUBPROCESS_TIMEOUT):
        proc = await anyio.run_process([str(python), str(script), *args], input=stdin,
                                       env=env, check=False)
    out, err = proc.stdout.decode(), proc.stderr.decode()
    if check and proc.returncode != 0:
        pytest.fail(f"{script.name} {' '.join(args)} exited {proc.returncode}:\n{err[-2000:]}")
    return proc.returncode, out, err


def _payload(jwt: str) -> dict[str, Any]:
    seg = jwt.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))))


def _utc_timestamp(iso: str) -> int:
    return int(dt.datetime.fromisoformat(iso).replace(tzinfo=dt.UTC).timestamp())


async def test_ofcli_agrees_with_our_resolver(sandbox: Running, interop_python: Path) -> None:
    info = sandbox.info
    master: str = info["federation_master"]
    env = _child_env(info["ca_cert"])
    http = OutboundClient(ca_file=info["ca_cert"])
    pinned = sandbox.sandbox.master_jwks
    resolver = ChainResolver(
        http, [TrustAnchor(master, [JWK.from_dict(k) for k in pinned["keys"]])],
        clock=time.time,
    )
    assert len(info["idps"]) >= 2
    try:
        for idp in info["idps"]:
            entity_id: str = idp["entity_id"]
            ours = await resolver.resolve(entity_id, "openid_provider")

            # 1. resolved metadata (ofcli: chain + policies, TrustChain.get_metadata)
            # --stock: ofcli exactly as published; the sandbox master accepts a fetch with
            # `sub` only, as OpenID Federation 1.0 §8.1.1 defines it
            _, out, _ = await _run(interop_python, OFCLI, [
                "--stock", "resolve", entity_id, "--ta", master, "--entity-type", "openid_provider",
            ], env)
            theirs_md = json.loads(out)
            ours_md = ours.metadata("openid_provider")
            defaults = {k: v for k, v in OIDCMSG_PROVIDER_DEFAULTS.items() if k not in ours_md}
            assert theirs_md == {**defaults, **ours_md}, entity_id
            assert theirs_md["issuer"] == entity_id

            # 2. the chain and its expiry
            _, out, _ = await _run(interop_python, OFCLI, [
                "--stock", "trustchains", entity_id, "--ta", master, "--details",
            ], env)
            chains = json.loads(out)
            assert list(chains) == ["chain 0"], f"{entity_id}: ofcli found {list(chains)}"
            chain = chains["chain 0"]
            links = [link["entity_statement"] for link in chain["chain"]]
            assert [(x["iss"], x["sub"]) for x in chain["chain"]] == [
                (s.iss, s.sub) for s in ours.statements
            ]
            assert [_payload(t) for t in links] == [s.claims for s in ours.statements]
            assert _utc_timestamp(chain["exp"]) == ours.exp
            assert ours.exp == min(s.exp for s in ours.statements)
            assert ours.exp > sandbox.frozen_now

            # 3. signatures, checked with cryptojwt against the pinned master key
            request = json.dumps({"chain": links, "anchor_jwks": pinned}).encode()
            _, out, _ = await _run(interop_python, VERIFY, [], env, stdin=request)
            assert json.loads(out) == {"verified": len(links)}

        # the cryptojwt check is able to fail: a key that is not the master's
        foreign = {"keys": [signing_jwk().public().public_dict()]}
        request = json.dumps({"chain": links, "anchor_jwks": foreign}).encode()
        rc, _, err = await _run(interop_python, VERIFY, [], env, stdin=request, check=False)
        assert rc != 0
        assert "trust anchor configuration (pinned keys)" in err
    finally:
        await http.aclose()
