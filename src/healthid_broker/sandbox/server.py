"""The running sandbox: federation master + sectoral IdPs on three loopback ports.

* ``https://host:P``   — master and IdP entity configurations, signed JWKS, fetch/list/
  idp-list, the sandbox-only registration API (TLS from the sandbox CA);
* ``https://host:P+1`` — IdP PAR and token endpoints behind self-signed mutual TLS
  (:mod:`.mtls` proxy in front of an internal uvicorn server);
* ``http://host:P+2``  — browser-facing pages (authorization endpoint, person picker,
  logos); plain http on loopback, see docs/decisions/0001-sandbox-tls-and-loopback.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import secrets
import socket
import ssl
import tempfile
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import uvicorn
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..crypto.jose import JWK
from ..crypto.keys import (
    LocalCA,
    cert_der_b64,
    cert_pem,
    private_key_pem,
    signing_jwk,
)
from ..http.client import OutboundClient
from .idp import PROFILES, IdPEndpoints, SectoralIdP
from .master import FederationMaster, Member
from .mtls import MTLSProxy, server_context
from .persons import PERSONS, find_person
from .registry import RegistrationStore

log = logging.getLogger("healthid_broker.sandbox")

SANDBOX_WARNING = "SANDBOX — not for production: synthetic federation master and IdPs"
_HERE = Path(__file__).parent


@dataclass
class SandboxConfig:
    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path = field(default_factory=lambda: Path(".sandbox"))
    auto_person: str | None = None
    ca: LocalCA | None = None
    # https instead of loopback http for the browser-facing pages (``demo --tls``)
    front_tls: bool = False


class SandboxError(RuntimeError):
    """The sandbox cannot start (ports in use, bad configuration)."""


class _Server(uvicorn.Server):
    """uvicorn server that leaves signal handling to the host program."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


def bind_three(host: str, port: int, attempts: int = 50) -> list[socket.socket]:
    """Bind P, P+1, P+2; with ``port=0`` find three consecutive free ports."""
    if port:
        try:
            return [_bind(host, port + i) for i in range(3)]
        except OSError as exc:
            raise SandboxError(f"ports {port}-{port + 2} on {host} are not all free: {exc}"
                               ) from exc
    for _ in range(attempts):
        first = _bind(host, 0)
        base = first.getsockname()[1]
        if base > 65533:
            first.close()
            continue
        socks = [first]
        try:
            socks += [_bind(host, base + 1), _bind(host, base + 2)]
            return socks
        except OSError:
            for s in socks:
                s.close()
    raise SandboxError(f"found no three consecutive free ports on {host}")


def _load_or_create_jwk(path: Path, make: Callable[[], JWK]) -> JWK:
    if path.exists():
        return JWK.from_dict(json.loads(path.read_text("utf-8")))
    key = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(key.private_dict(), fh)
    return key


def _load_or_create_secret(path: Path) -> bytes:
    if path.exists():
        return bytes.fromhex(path.read_text("ascii").strip())
    value = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as fh:
        fh.write(value.hex())
    return value


def _id_token_signing_key(ca: LocalCA, key: JWK, name: str) -> JWK:
    """ID-token signing key with an ``x5c`` certificate issued by the sandbox CA."""
    assert key.private_key is not None
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name[:64])]))
        .issuer_name(ca.cert.subject)
        .public_key(key.private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca.key, hashes.SHA256())
    )
    return JWK.from_private_key(key.private_key, kid=key.kid, use="sig", alg="ES256",
                                x5c=[cert_der_b64(cert)])


class Sandbox:
    """A local copy of the TI federation. SANDBOX ONLY — never import from production."""

    def __init__(self, cfg: SandboxConfig, *, clock: Callable[[], float] = time.time) -> None:
        if cfg.auto_person is not None and find_person(cfg.auto_person) is None:
            raise SandboxError("auto_person is not the KVNR of a sandbox person")
        self.cfg = cfg
        self.clock = clock
        self.data_dir = Path(cfg.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        keys = self.data_dir / "keys"
        keys.mkdir(exist_ok=True)
        if cfg.ca is not None:
            self.ca = cfg.ca
        elif (self.data_dir / "ca.pem").exists() and (keys / "ca.key").exists():
            self.ca = LocalCA.load(self.data_dir / "ca.pem", keys / "ca.key")
        else:
            self.ca = LocalCA.create("healthid-broker SANDBOX CA")
            fd = os.open(keys / "ca.key", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(private_key_pem(self.ca.key))
        self.ca_cert_path.write_bytes(cert_pem(self.ca.cert))
        self._master_key = _load_or_create_jwk(keys / "master.jwk.json", signing_jwk)
        self._pairwise = _load_or_create_secret(keys / "pairwise.secret")
        self.registrations = RegistrationStore(self.data_dir)
        self.peer_certs: dict[int, bytes] = {}
        self._templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(_HERE / "templates")),
            autoescape=True,
        )
        self._sockets: list[socket.socket] = []
        self._servers: list[tuple[_Server, asyncio.Task[None]]] = []
        self._proxy: MTLSProxy | None = None
        self._http: OutboundClient | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.master: FederationMaster | None = None
        self.idps: list[SectoralIdP] = []
        self.port = 0

    # ------------------------------------------------------------------ public API

    @property
    def ca_cert_path(self) -> Path:
        return self.data_dir / "ca.pem"

    @property
    def master_jwks(self) -> dict[str, Any]:
        return {"keys": [self._master_key.public().public_dict()]}

    @property
    def master_entity_id(self) -> str:
        return f"https://{self._hostport(self.port)}/fedmaster"

    def _hostport(self, port: int) -> str:
        host = f"[{self.cfg.host}]" if ":" in self.cfg.host else self.cfg.host
        return f"{host}:{port}"

    def register_entity(self, entity_id: str, jwks: dict[str, Any], *,
                        organization_name: str = "", scopes: str = "") -> None:
        """Local stand-in for gematik's out-of-band RP registration."""
        from .registry import parse_registration

        self.registrations.add(parse_registration(
            {"entity_id": entity_id, "jwks": jwks, "organization_name": organization_name,
             "scopes": scopes}, now=self.clock(),
        ))

    def info(self) -> dict[str, Any]:
        if self.master is None:
            raise SandboxError("the sandbox is not started")
        return {
            "sandbox": True,
            "federation_master": self.master_entity_id,
            "master_jwks": self.master_jwks,
            "idps": [
                {
                    "entity_id": i.entity_id,
                    "name": i.profile.name,
                    "logo_uri": i.ep.logo_uri,
                    "id_token_versions": list(i.profile.id_token_versions),
                    "acr_values_supported": i.acr_values_supported,
                    "pkv": i.profile.pkv,
                }
                for i in self.idps
            ],
            "persons": [p.public_summary() for p in PERSONS],
            "ca_cert": str(self.ca_cert_path),
            "auto_person": self.cfg.auto_person,
            "ports": {"https": self.port, "mtls": self.port + 1, "http": self.port + 2},
        }

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        log.warning(SANDBOX_WARNING)
        self._sockets = bind_three(self.cfg.host, self.cfg.port)
        self.port = self._sockets[0].getsockname()[1]
        https = f"https://{self._hostport(self.port)}"
        mtls = f"https://{self._hostport(self.port + 1)}"
        front = f"{'https' if self.cfg.front_tls else 'http'}://{self._hostport(self.port + 2)}"
        self._http = OutboundClient(ca_file=str(self.ca_cert_path))
        self.master = FederationMaster(self.master_entity_id, self._master_key,
                                       self.registrations, self.clock)
        keys = self.data_dir / "keys"
        self.idps = []
        for prof in PROFILES:
            fed = _load_or_create_jwk(keys / f"idp-{prof.slug}.fed.jwk.json", signing_jwk)
            tok = _load_or_create_jwk(keys / f"idp-{prof.slug}.idtoken.jwk.json", signing_jwk)
            idp = SectoralIdP(
                prof,
                IdPEndpoints(f"{https}/idp/{prof.slug}", f"{mtls}/idp/{prof.slug}",
                             f"{front}/idp/{prof.slug}", f"{front}/static/{prof.slug}.svg"),
                master_entity_id=self.master_entity_id,
                master_keys=[self._master_key.public()],
                federation_key=fed,
                id_token_key=_id_token_signing_key(self.ca, tok, f"{prof.name} ID token"),
                http=self._http,
                peer_certs=self.peer_certs,
                pairwise_secret=self._pairwise + prof.slug.encode(),
                templates=self._templates,
                clock=self.clock,
                auto_person=self.cfg.auto_person,
            )
            self.idps.append(idp)
            self.master.add_idp(Member(idp.entity_id, prof.name, idp.ep.logo_uri,
                                       {"keys": [fed.public().public_dict()]}, prof.pkv))

        fed_routes: list[Route] = [*self.master.routes("/fedmaster")]
        mtls_routes: list[Route] = []
        front_routes: list[Route | Mount] = [Route("/", self._index)]
        for idp in self.idps:
            fed_routes += idp.federation_routes()
            mtls_routes += idp.mtls_routes()
            front_routes += idp.front_routes()
        front_routes.append(Mount("/static", StaticFiles(directory=str(_HERE / "static"))))

        # TLS server certificate for https://host:P and https://host:P+1
        issued = self.ca.issue_server_cert([self.cfg.host, "localhost"])
        self._tmp = tempfile.TemporaryDirectory(prefix="hidb-sandbox-")
        cert_file = Path(self._tmp.name) / "server.pem"
        key_file = Path(self._tmp.name) / "server.key"
        issued.write(cert_file, key_file)
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.minimum_version = ssl.TLSVersion.TLSv1_2
        tls.set_ciphers("ECDHE+AESGCM")
        tls.load_cert_chain(str(cert_file), str(key_file))

        fed_app = Starlette(routes=fed_routes)
        front_app = Starlette(routes=front_routes)
        mtls_app = Starlette(routes=mtls_routes)

        internal = _bind("127.0.0.1", 0)
        internal_port = internal.getsockname()[1]
        await self._serve(fed_app, self._sockets[0], tls)
        await self._serve(mtls_app, internal, None)
        await self._serve(front_app, self._sockets[2], tls if self.cfg.front_tls else None)
        self._proxy = MTLSProxy(server_context(issued.cert, issued.key), internal_port,
                                self.peer_certs)
        await self._proxy.start(self._sockets[1])
        log.warning("%s — master %s", SANDBOX_WARNING, self.master_entity_id)

    async def _serve(self, app: Starlette, sock: socket.socket,
                     tls: ssl.SSLContext | None) -> None:
        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan="off",
            timeout_graceful_shutdown=1, server_header=False,
        )
        config.load()
        config.ssl = tls
        server = _Server(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
                raise SandboxError("a sandbox server stopped during start-up")
            await asyncio.sleep(0.01)
        self._servers.append((server, task))

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._proxy is not None:
            await self._proxy.stop()
            self._proxy = None
        for server, _ in self._servers:
            server.should_exit = True
        for _, task in self._servers:
            with contextlib.suppress(Exception):
                await task
        self._servers = []
        for s in self._sockets:
            s.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def __aenter__(self) -> Sandbox:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ pages

    async def _index(self, request: Request) -> Response:
        rows = "".join(
            f'<li><img src="{i.ep.logo_uri}" alt="" width="24" height="24"> '
            f"{i.profile.name} — <code>{i.entity_id}</code></li>"
            for i in self.idps
        )
        html = (
            '<!doctype html><html lang="en"><head><meta charset="utf-8">'
            '<title>SANDBOX</title><link rel="stylesheet" href="/static/sandbox.css"></head>'
            '<body><div class="banner" role="alert">SANDBOX — not for production</div>'
            f"<main><h1>TI federation sandbox</h1><p>Federation master: "
            f"<code>{self.master_entity_id}</code></p><ul>{rows}</ul></main></body></html>"
        )
        return HTMLResponse(html, headers={
            "Content-Security-Policy":
                "default-src 'none'; style-src 'self'; img-src 'self' data:; "
                "frame-ancestors 'none'",
            "X-Sandbox": "SANDBOX - not for production",
        })


def json_info(info: dict[str, Any]) -> str:
    return json.dumps(info, ensure_ascii=False)


__all__ = ["Sandbox", "SandboxConfig", "SandboxError", "bind_three"]
