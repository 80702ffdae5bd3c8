"""The composition root: settings → implementations → the public role's ASGI app.

One place decides which store, database, key provider and federation the broker uses;
everything below receives its collaborators as parameters (STYLE.md: no global config).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from ..crypto.jose import JWK
from ..federation.statements import jwks_to_keys
from ..federation.trust_chain import ChainResolver, TrustAnchor
from ..http import ClientIdentity, HttpClient
from ..http.lean import LeanHttpClient
from ..login.login_store import LoginStore
from ..login.sealing import Sealer
from ..login.sealing_keys import load_sealer
from ..login.store import MemoryBackend, SealedStore
from ..provider.directory import AppConfig, ClientConfig
from ..provider.service import ClientAuthenticator, ProviderService
from ..tenancy.service import TenancyService
from ..upstream.entity_configuration import RpEntity, scope_string
from ..upstream.flow import RelyingParty, Upstream
from .broker_app import BrokerWeb, Urls, create_broker_app

log = logging.getLogger("healthid_broker.runtime")

ENVIRONMENTS = {
    # gematik's federation masters (PROFILE.md). Their keys must be pinned by the operator.
    "tu": "https://app-test.federationmaster.de",
    "ru": "https://app-ref.federationmaster.de",
    "pu": "https://app.federationmaster.de",
}


@dataclass(frozen=True)
class BrokerSettings:
    public_base: str
    data_dir: Path
    environment: str  # sandbox | tu | ru | pu
    master_entity_id: str
    master_jwks: dict[str, Any]
    browser_base: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    ca_file: str | None = None  # trust store for outbound https (the sandbox CA in the demo)
    directory_ttl: float = 30.0

    @property
    def browser(self) -> str:
        return (self.browser_base or self.public_base).rstrip("/")

    def check(self) -> None:
        """Refuse settings that would break the TI profile or mix environments (T-29)."""
        from urllib.parse import urlsplit

        if self.environment not in ("sandbox", *ENVIRONMENTS):
            raise ValueError(f"unknown federation environment {self.environment!r}")
        for name, url in (("public base", self.public_base), ("browser base", self.browser)):
            parts = urlsplit(url)
            if parts.query or parts.fragment or not parts.hostname:
                raise ValueError(f"the {name} must be a plain absolute URL")
            # Entity ids are https (PROFILE.md); pages may be loopback http only in the sandbox.
            loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
            if parts.scheme != "https" and not (
                    name == "browser base" and self.environment == "sandbox" and loopback):
                raise ValueError(f"the {name} must be https: {url}")
        if self.environment != "sandbox" and self.master_entity_id != ENVIRONMENTS[
                self.environment]:
            log.warning("federation master %s differs from gematik's %s master",
                        self.master_entity_id, self.environment)


def _secret_file(path: Path, size: int = 32) -> bytes:
    """A broker-held secret generated on first start (T-19: no shipped defaults), 0600."""
    if path.exists():
        data = path.read_bytes()
        if len(data) >= size:
            return data[:size]
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return data


def _log_refresh_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # A failed refresh keeps the last good view; the type name only (no input echoed).
        log.error("loading an application's configuration failed: %s",
                  type(task.exception()).__name__)


class TenancyDirectory:
    """:class:`AppDirectory` over the tenancy service, with a short in-memory cache."""

    def __init__(self, tenancy: TenancyService, settings: BrokerSettings, *,
                 pairwise_root: bytes, clock: Callable[[], float] = time.time) -> None:
        self.tenancy = tenancy
        self.settings = settings
        self.pairwise_root = pairwise_root
        self.clock = clock
        self._cache: dict[str, tuple[float, AppConfig | None]] = {}
        self._loading: dict[str, asyncio.Future[AppConfig | None]] = {}

    def invalidate(self, short_key: str | None = None) -> None:
        if short_key is None:
            self._cache.clear()
        else:
            self._cache.pop(short_key, None)

    async def get(self, short_key: str) -> AppConfig | None:
        """The application's view. A stale entry is served while one background refresh
        runs; concurrent misses share one load (no thundering herd on the database)."""
        if len(short_key) > 64:
            return None
        now = self.clock()
        hit = self._cache.get(short_key)
        if hit is not None:
            if now - hit[0] >= self.settings.directory_ttl and short_key not in self._loading:
                self._start_refresh(short_key)
            return hit[1]
        task = self._loading.get(short_key) or self._start_refresh(short_key)
        return await asyncio.shield(task)

    def _start_refresh(self, short_key: str) -> asyncio.Future[AppConfig | None]:
        task = asyncio.ensure_future(self._refresh(short_key))
        self._loading[short_key] = task
        task.add_done_callback(_log_refresh_failure)
        return task

    async def _refresh(self, short_key: str) -> AppConfig | None:
        try:
            now = self.clock()
            cfg = await anyio.to_thread.run_sync(self._load, short_key, now)
            self._cache[short_key] = (now, cfg)
            return cfg
        finally:
            self._loading.pop(short_key, None)

    def _load(self, short_key: str, now: float) -> AppConfig | None:
        view = self.tenancy.get_application(short_key)
        if view is None:
            return None
        keys = self.tenancy.application_keys(short_key, now)
        s = self.settings
        issuer = f"{s.public_base.rstrip('/')}/{short_key}"
        redirect_uri = f"{s.browser}/{short_key}/callback"
        scope = scope_string(view.scopes)
        clients = {
            c.client_id: ClientConfig(
                client_id=c.client_id, auth_method=c.auth_method,
                redirect_uris=frozenset(c.redirect_uris), allowed_scopes=frozenset(c.scopes),
                jwks=tuple(c.jwks), active=c.active)
            for c in view.clients
        }
        by_id = {c.client_id: c for c in view.clients}
        tenancy = self.tenancy

        def verify_secret(client_id: str, secret: str) -> bool:
            c = by_id.get(client_id)
            return c is not None and tenancy.verify_client_secret(c, secret)

        identity = ClientIdentity(keys.mtls.cert_pem.encode(), keys.mtls.key_pem.encode())
        entity = RpEntity(
            entity_id=issuer, master_entity_id=s.master_entity_id,
            client_name=view.display_name, organization_name=view.organization_name,
            redirect_uris=(redirect_uri,), scope=scope, default_acr=view.required_acr,
            federation_keys=tuple(k.public() for k in keys.federation_keys),
            signing_key=keys.federation_signing_key,
            mtls_sig_jwks=tuple(m.jwk.public() for m in keys.mtls_published),
            enc_keys=tuple(k.public() for k in keys.id_token_encryption_keys),
        )
        rp = RelyingParty(entity_id=issuer, redirect_uri=redirect_uri, scope=scope,
                          identity=identity, decryption_keys=keys.id_token_encryption_keys)
        pairwise = hmac.new(self.pairwise_root, b"pairwise|" + view.id.encode(),
                            hashlib.sha256).digest()
        return AppConfig(
            short_key=short_key, issuer=issuer, display_name=view.display_name,
            organization_name=view.organization_name, scopes=frozenset(view.scopes),
            required_acr=view.required_acr, active=view.active, clients=clients,
            rp=rp, entity=entity, id_token_key=keys.id_token_signing_key,
            provider_jwks=tuple(k.public() for k in keys.id_token_signing_keys),
            pairwise_secret=pairwise, verify_secret=verify_secret,
        )


@dataclass
class BrokerRuntime:
    settings: BrokerSettings
    tenancy: TenancyService
    directory: TenancyDirectory
    upstream: Upstream
    service: ProviderService
    web: BrokerWeb
    http: HttpClient
    asgi: Any
    closers: list[Callable[[], Any]] = field(default_factory=list)

    async def aclose(self) -> None:
        for c in self.closers:
            r = c()
            if hasattr(r, "__await__"):
                await r


def build_broker(
    settings: BrokerSettings,
    tenancy: TenancyService,
    *,
    http: HttpClient | None = None,
    store_backend: Any = None,
    sealer: Sealer | None = None,
    clock: Callable[[], float] = time.time,
    mounts: Mapping[str, Any] | None = None,
    par_retry_pause: float = 1.0,
) -> BrokerRuntime:
    settings.check()
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    own_http = http is None
    http_client: HttpClient = http or LeanHttpClient(ca_file=settings.ca_file)
    anchor = TrustAnchor(settings.master_entity_id, jwks_to_keys(settings.master_jwks,
                                                                 owner="pinned master"))
    resolver = ChainResolver(http_client, [anchor], clock=clock)
    upstream = Upstream(
        http_client, resolver, master_entity_id=settings.master_entity_id,
        clock=clock,
        allow_loopback_http_frontchannel=settings.environment == "sandbox",
        par_retry_pause=par_retry_pause,
    )
    directory = TenancyDirectory(tenancy, settings,
                                 pairwise_root=_secret_file(data / "pairwise.key"), clock=clock)
    backend = store_backend if store_backend is not None else MemoryBackend()
    sealed = SealedStore(backend, sealer or load_sealer(data))
    login_store = LoginStore(sealed)
    urls = Urls(settings.public_base.rstrip("/"), settings.browser)
    client_auth = ClientAuthenticator(sealed, clock=clock)
    service = ProviderService(
        directory, login_store, upstream, client_auth, clock=clock,
        token_endpoint=lambda app: urls.public(app.short_key, "token"))
    web = BrokerWeb(service, urls, sandbox=settings.environment == "sandbox", clock=clock)
    asgi = create_broker_app(web, mounts)
    rt = BrokerRuntime(settings, tenancy, directory, upstream, service, web, http_client, asgi)
    if own_http and isinstance(http_client, LeanHttpClient):
        rt.closers.append(http_client.aclose)
    return rt


def load_jwks_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A pinned JWKS file: a JSON object with a non-empty ``keys`` list of EC P-256 keys."""
    from ..crypto.jose import JoseError

    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read a JWKS: {exc}") from exc
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ValueError(f"{path}: not a JWKS with at least one key")
    for i, k in enumerate(keys):
        try:
            JWK.from_dict(k)
        except JoseError as exc:
            raise ValueError(f"{path}: key #{i} is unusable: {exc}") from exc
    return {"keys": keys}


def rotate_due_keys(tenancy: TenancyService, directory: TenancyDirectory,
                    now: float) -> dict[str, Any]:
    """One scheduled rotation run (A_24607, A_28209, T-26): rotate what is due, then drop
    the cached application views so the next request publishes the new keys."""
    changes = tenancy.rotate_due(now)
    for short_key in changes:
        directory.invalidate(short_key)
        log.info("rotated keys of %s: %s", short_key,
                 ", ".join(f"{c.purpose} {c.change}" for c in changes[short_key]))
    return changes


async def rotation_loop(tenancy: TenancyService, directory: TenancyDirectory, *,
                        interval: float, clock: Callable[[], float] = time.time) -> None:
    """Run :func:`rotate_due_keys` every ``interval`` seconds until cancelled."""
    while True:
        try:
            await anyio.to_thread.run_sync(rotate_due_keys, tenancy, directory, clock())
        except Exception as exc:  # noqa: BLE001 — a failed run must not stop the schedule
            log.error("scheduled key rotation failed: %s", type(exc).__name__)
        await anyio.sleep(interval)
