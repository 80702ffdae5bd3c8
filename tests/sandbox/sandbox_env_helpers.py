"""Helpers: a real sandbox on port 0 and tiny https relying parties using its CA."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import secrets
import socket
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from healthid_broker.crypto.jose import JWK
from healthid_broker.crypto.keys import (
    cert_der_b64,
    cert_pem,
    encryption_jwk,
    private_key_pem,
    self_signed_client_cert,
    signing_jwk,
)
from healthid_broker.federation.statements import sign_statement
from healthid_broker.http import ClientIdentity, tls_client_context
from healthid_broker.sandbox import Sandbox, SandboxConfig
from healthid_broker.sandbox.persons import SUPPORTED_SCOPES


@dataclass
class RPFixture:
    entity_id: str
    master: str
    fed_key: JWK = field(default_factory=signing_jwk)
    enc_key: JWK = field(default_factory=encryption_jwk)
    versions: tuple[str, ...] = ("1.0.0", "2.0.0")
    sign_with: JWK | None = None  # a key the master does not know → bad signature
    lifetime: int = 3600
    iat_offset: int = 0

    def __post_init__(self) -> None:
        assert self.fed_key.private_key is not None
        self.tls_key = signing_jwk()
        assert self.tls_key.private_key is not None
        self.tls_cert = self_signed_client_cert(self.tls_key.private_key, self.entity_id)
        self.identity = ClientIdentity(cert_pem(self.tls_cert),
                                       private_key_pem(self.tls_key.private_key))

    @property
    def redirect_uri(self) -> str:
        return f"{self.entity_id}/cb"

    def statement(self) -> str:
        now = int(time.time()) + self.iat_offset
        sig = JWK.from_private_key(
            self.tls_key.private_key,  # type: ignore[arg-type]
            kid=self.tls_key.kid, use="sig", alg="ES256", x5c=[cert_der_b64(self.tls_cert)],
        )
        return sign_statement({
            "iss": self.entity_id, "sub": self.entity_id, "iat": now,
            "exp": now + self.lifetime,
            "jwks": {"keys": [self.fed_key.public().public_dict()]},
            "authority_hints": [self.master],
            "metadata": {
                "openid_relying_party": {
                    "client_name": "Test RP", "organization_name": "Test GmbH",
                    "redirect_uris": [self.redirect_uri],
                    "response_types": ["code"],
                    "client_registration_types": ["automatic"],
                    "grant_types": ["authorization_code"],
                    "require_pushed_authorization_requests": True,
                    "token_endpoint_auth_method": "self_signed_tls_client_auth",
                    "default_acr_values": ["gematik-ehealth-loa-high"],
                    "id_token_signed_response_alg": "ES256",
                    "id_token_encrypted_response_alg": "ECDH-ES",
                    "id_token_encrypted_response_enc": "A256GCM",
                    "scope": " ".join(SUPPORTED_SCOPES),
                    "ti_features_supported": {"id_token_version_supported": list(self.versions)},
                    "jwks": {"keys": [sig.public().public_dict(),
                                      self.enc_key.public().public_dict()]},
                },
                "federation_entity": {"organization_name": "Test GmbH"},
            },
        }, self.sign_with or self.fed_key)


class _NoSignals(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


@dataclass
class Env:
    sb: Sandbox
    rp_base: str
    rps: dict[str, RPFixture]

    def add_rp(self, name: str, *, register: bool = True, **kw: Any) -> RPFixture:
        rp = RPFixture(f"{self.rp_base}/{name}", self.sb.master_entity_id, **kw)
        self.rps[name] = rp
        if register:
            self.sb.register_entity(rp.entity_id, {"keys": [rp.fed_key.public().public_dict()]},
                                    organization_name="Test GmbH", scopes="openid")
        return rp

    def client(self, rp: RPFixture | None = None) -> httpx.AsyncClient:
        ctx = tls_client_context(str(self.sb.ca_cert_path), rp.identity if rp else None)
        return httpx.AsyncClient(verify=ctx, timeout=10)

    def idp(self, slug: str) -> Any:
        return next(i for i in self.sb.idps if i.profile.slug == slug)


@contextlib.asynccontextmanager
async def sandbox_env(data_dir: Path, **cfg: Any) -> AsyncIterator[Env]:
    sb = Sandbox(SandboxConfig(host="127.0.0.1", port=0, data_dir=data_dir, **cfg))
    await sb.start()
    rps: dict[str, RPFixture] = {}

    async def ec(request: Request) -> Response:
        rp = rps.get(request.path_params["name"])
        if rp is None:
            return Response(status_code=404)
        return Response(rp.statement(), media_type="application/entity-statement+jwt")

    issued = sb.ca.issue_server_cert(["127.0.0.1"])
    issued.write(data_dir / "rp.pem", data_dir / "rp.key")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(str(data_dir / "rp.pem"), str(data_dir / "rp.key"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    config = uvicorn.Config(Starlette(routes=[
        Route("/{name}/.well-known/openid-federation", ec)]), log_level="warning", lifespan="off",
        timeout_graceful_shutdown=1)
    config.load()
    config.ssl = tls
    server = _NoSignals(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    try:
        env = Env(sb, f"https://127.0.0.1:{port}", rps)
        env.add_rp("rp")
        yield env
    finally:
        await sb.stop()
        server.should_exit = True
        await task


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.rstrip(b"=").decode()


def par_params(rp: RPFixture, challenge: str, **over: str | None) -> dict[str, str]:
    params: dict[str, str | None] = {
        "client_id": rp.entity_id, "response_type": "code", "redirect_uri": rp.redirect_uri,
        "state": secrets.token_urlsafe(16), "nonce": secrets.token_urlsafe(16),
        "scope": "openid urn:telematik:versicherter urn:telematik:display_name "
                 "urn:telematik:geburtsdatum urn:telematik:email",
        "code_challenge": challenge, "code_challenge_method": "S256",
        "acr_values": "gematik-ehealth-loa-high",
    }
    params.update(over)
    return {k: v for k, v in params.items() if v is not None}

