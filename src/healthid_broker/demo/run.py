"""``healthid-broker demo``: the sandbox federation, the broker and a demo app in one process.

Ports (with ``--port P``): P = http on loopback for everything people see (demo app, the
broker's authorize/chooser/callback pages), P+1 = the broker's https (entity ids, issuer,
discovery, token, jwks), P+2…P+4 = the sandbox (https, mutual TLS, http pages). With
``--port 0`` every port is chosen freely. See docs/decisions/0001-sandbox-tls-and-loopback.md.
With ``tls`` (``demo --tls``) the ports that serve people's pages (P and the sandbox's P+4)
speak https too, with a certificate from the demo's local CA, for strict clients.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..crypto.key_provider import create_secret_file
from ..crypto.keys import LocalCA, cert_pem, private_key_pem
from ..runtime.compose import BrokerRuntime, build_broker
from ..runtime.redis import RedisSettings, connect_redis
from ..runtime.secrets import load_secrets
from ..runtime.settings import BrokerSettings
from ..storage.db import default_database_url, open_database
from ..tenancy.service import TenancyService
from ..web.rate_limit import MemoryRateLimiter, RateLimiter, RateLimits, RedisRateLimiter
from ..web.server import RunningServer, bind_socket, start_server
from ..web.tls import server_context
from .app import DemoClientConfig, create_demo_app

log = logging.getLogger("healthid_broker.demo")

DEMO_TENANT = "demo-diga"
DEMO_ORGANISATION = "Demo DiGA GmbH"
DEMO_APP = "demo"
DEMO_SCOPES = (
    "openid", "urn:telematik:versicherter", "urn:telematik:display_name",
    "urn:telematik:given_name", "urn:telematik:family_name", "urn:telematik:geburtsdatum",
    "urn:telematik:alter", "urn:telematik:geschlecht", "urn:telematik:email",
)


@dataclass
class DemoConfig:
    host: str = "127.0.0.1"
    port: int = 8400
    data_dir: Path = field(default_factory=lambda: Path(".data/demo"))
    auto_person: str | None = None
    redis_url: str | None = None  # shorthand for redis=RedisSettings(url=redis_url)
    redis: RedisSettings | None = None
    redis_prefix: str = "hidb-demo:"
    database_url: str | None = None
    # None: no rate limits (tests that drive many logins); the CLI passes the defaults
    rate_limits: RateLimits | None = None
    # The JSON that a separately running `healthid-broker sandbox --json` printed; the
    # demo then uses that sandbox (and its CA) instead of starting one in-process.
    external_sandbox: dict[str, Any] | None = None
    # https (local CA) also for the browser-facing pages: demo app, authorize, chooser,
    # callback and the sandbox IdPs' pages (docs/integration.md, "Strict clients")
    tls: bool = False


def _load_or_create_ca(d: Path) -> LocalCA:
    """The demo's local CA in ``d``, made on first start. Made in a private directory and
    renamed into place, so demos starting at once end with one CA (the loser's is removed)."""
    cert, key = d / "ca.pem", d / "ca.key"
    if not os.path.lexists(d):
        d.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.", dir=d.parent))
        try:
            ca = LocalCA.create("healthid-broker demo CA")
            (tmp / cert.name).write_bytes(cert_pem(ca.cert))
            create_secret_file(tmp / key.name, private_key_pem(ca.key))
            tmp.chmod(0o755)
            os.rename(tmp, d)  # fails when another demo made the CA first
        except OSError:
            if not os.path.lexists(d):
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return LocalCA.load(cert, key)


class Demo:
    def __init__(self, cfg: DemoConfig) -> None:
        self.cfg = cfg
        self.data_dir = Path(cfg.data_dir).resolve()
        self.servers: list[RunningServer] = []
        self.sandbox: Any = None
        self.runtime: BrokerRuntime | None = None
        self.tenancy: TenancyService | None = None
        self._info: dict[str, Any] = {}

    def _provision(self, tenancy: TenancyService, browser_base: str) -> dict[str, str]:
        """Demo tenant, application and client — idempotent across restarts."""
        now = time.time()
        if tenancy.get_tenant(DEMO_TENANT) is None:
            tenancy.create_tenant(DEMO_TENANT, now=now)
        if tenancy.get_application(DEMO_APP) is None:
            tenancy.create_application(
                DEMO_TENANT, DEMO_APP, display_name="Demo-App",
                organization_name=DEMO_ORGANISATION, scopes=DEMO_SCOPES,
                required_acr="gematik-ehealth-loa-substantial", now=now)
        redirect_uri = f"{browser_base}/app/callback"
        secret_file = self.data_dir / "demo-client.json"
        app = tenancy.get_application(DEMO_APP)
        assert app is not None
        if secret_file.exists():
            saved = json.loads(secret_file.read_text())
            client = app.client(saved["client_id"])
            if client is not None:
                if redirect_uri not in client.redirect_uris:
                    tenancy.update_redirect_uris(DEMO_APP, client.client_id,
                                                 [redirect_uri], now=now)
                return {"client_id": saved["client_id"], "client_secret": saved["client_secret"],
                        "redirect_uri": redirect_uri}
        created = tenancy.create_client(
            DEMO_APP, auth_method="client_secret_basic", redirect_uris=[redirect_uri],
            now=now, name=f"demo-app-{int(now)}", scopes=DEMO_SCOPES)
        assert created.secret is not None
        out = {"client_id": created.client.client_id, "client_secret": created.secret,
               "redirect_uri": redirect_uri}
        # Demo only: the client secret is kept in the demo's data directory so that a
        # restarted demo can print it again. A real client secret is shown once.
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"client_id": out["client_id"], "client_secret": out["client_secret"]}, fh)
        return out

    async def _start_sandbox(self, ca: LocalCA) -> dict[str, Any]:
        from ..sandbox import Sandbox, SandboxConfig  # the demo is the sandbox's user

        cfg = self.cfg
        self.sandbox = Sandbox(SandboxConfig(
            host=cfg.host, port=cfg.port + 2 if cfg.port else 0,
            data_dir=self.data_dir / "sandbox", auto_person=cfg.auto_person, ca=ca,
            front_tls=cfg.tls))
        await self.sandbox.start()
        info: dict[str, Any] = self.sandbox.info()
        return info

    async def _register(self, sb_info: dict[str, Any], entity_id: str, jwks: dict[str, Any],
                        organization_name: str, scopes: str) -> None:
        if self.sandbox is not None:
            self.sandbox.register_entity(entity_id, jwks, organization_name=organization_name,
                                         scopes=scopes)
            return
        import httpx

        async with httpx.AsyncClient(verify=sb_info["ca_cert"], timeout=10) as c:
            r = await c.post(sb_info["federation_master"] + "/registration", json={
                "entity_id": entity_id, "jwks": jwks, "organization_name": organization_name,
                "scopes": scopes})
            if r.status_code >= 300:
                raise RuntimeError(f"sandbox registration failed: HTTP {r.status_code}")

    async def start(self) -> dict[str, Any]:
        cfg = self.cfg
        self.data_dir.mkdir(parents=True, exist_ok=True)
        ext = cfg.external_sandbox
        if ext is not None:
            # A sandbox in its own process: its CA issues our TLS certificate too.
            sb_dir = Path(ext["ca_cert"]).parent
            ca = LocalCA.load(sb_dir / "ca.pem", sb_dir / "keys" / "ca.key")
        else:
            ca = _load_or_create_ca(self.data_dir / "ca")
        http_sock = bind_socket(cfg.host, cfg.port)
        https_sock = bind_socket(cfg.host, cfg.port + 1 if cfg.port else 0)
        http_port = http_sock.getsockname()[1]
        https_port = https_sock.getsockname()[1]
        host = f"[{cfg.host}]" if ":" in cfg.host else cfg.host
        browser_base = f"{'https' if cfg.tls else 'http'}://{host}:{http_port}"
        public_base = f"https://{host}:{https_port}"

        sb_info = ext if ext is not None else await self._start_sandbox(ca)

        tls_dir = self.data_dir / "tls"
        tls_dir.mkdir(exist_ok=True)
        issued = ca.issue_server_cert([cfg.host, "localhost"])
        issued.write(tls_dir / "broker.pem", tls_dir / "broker.key")

        _engine, factory = open_database(
            cfg.database_url or default_database_url(self.data_dir))
        # The demo is the embedded shape: it makes its secrets on first start (exclusive
        # create, so demos starting at once share one set).
        secrets = load_secrets(self.data_dir, create=True)
        self.tenancy = TenancyService(factory, secrets.kek)
        client = self._provision(self.tenancy, browser_base)
        issuer = f"{public_base}/{DEMO_APP}"
        reg = self.tenancy.registration_data(DEMO_APP, base=public_base,
                                             environment="sandbox", now=time.time())
        await self._register(
            sb_info, issuer, self.tenancy.application_keys(DEMO_APP, time.time()).federation_jwks(),
            reg["organization_name"], " ".join(reg["scopes"]))

        redis = cfg.redis or (RedisSettings(url=cfg.redis_url) if cfg.redis_url else None)
        settings = BrokerSettings(
            public_base=public_base, browser_base=browser_base, data_dir=self.data_dir,
            environment="sandbox", master_entity_id=sb_info["federation_master"],
            master_jwks=sb_info["master_jwks"], ca_file=sb_info["ca_cert"],
            redis_url=redis.url if redis else None)
        demo_app = create_demo_app(DemoClientConfig(
            issuer=issuer, client_id=client["client_id"], client_secret=client["client_secret"],
            redirect_uri=client["redirect_uri"], ca_file=sb_info["ca_cert"]))
        store_backend = None
        redis_client = None
        limiter: RateLimiter | None = None
        if redis is not None:
            from ..login.store import RedisBackend
            redis_client = connect_redis(redis)
            store_backend = RedisBackend(redis_client, prefix=cfg.redis_prefix)
        if cfg.rate_limits is not None:
            limiter = (RedisRateLimiter(redis_client, prefix=cfg.redis_prefix)
                       if redis_client is not None else MemoryRateLimiter())
        self.runtime = build_broker(settings, self.tenancy, store_backend=store_backend,
                                    secrets=secrets, mounts={"/app": demo_app},
                                    rate_limiter=limiter, rate_limits=cfg.rate_limits)
        if redis_client is not None:
            self.runtime.closers.append(redis_client.aclose)
        ctx = server_context(str(tls_dir / "broker.pem"), str(tls_dir / "broker.key"))
        self.servers.append(await start_server(self.runtime.asgi, host=cfg.host, sock=http_sock,
                                               ssl_context=ctx if cfg.tls else None))
        self.servers.append(await start_server(self.runtime.asgi, host=cfg.host, sock=https_sock,
                                               ssl_context=ctx))
        self._info = {
            "demo_app": f"{browser_base}/app/",
            "broker": public_base,
            "broker_browser_base": browser_base,
            "issuer": issuer,
            "client_id": client["client_id"],
            "client_secret": client["client_secret"],
            "redirect_uri": client["redirect_uri"],
            "federation_master": sb_info["federation_master"],
            "master_jwks": sb_info["master_jwks"],
            "idps": [i["entity_id"] for i in sb_info["idps"]],
            "ca_cert": sb_info["ca_cert"],
            "data_dir": str(self.data_dir),
            "sandbox": True,
            "tls": cfg.tls,
        }
        return self._info

    def info(self) -> dict[str, Any]:
        return dict(self._info)

    async def stop(self) -> None:
        for s in reversed(self.servers):
            await s.stop()
        self.servers.clear()
        if self.runtime is not None:
            await self.runtime.aclose()
        if self.sandbox is not None:
            await self.sandbox.stop()
