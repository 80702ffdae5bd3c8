"""The provider's view of the tenancy data: :class:`TenancyDirectory`, with a short cache.

Both caches are bounded (T-27): the short key comes from the request path, so a flood of
random keys must not grow memory. Known applications sit in an LRU of ``max_entries``
views; unknown keys are remembered for ``negative_ttl`` seconds in a separate, smaller LRU
(so a flood of unknown keys neither reaches the database on every request nor pushes the
real applications out of the cache).

A change committed by any process reaches every process through
:mod:`~healthid_broker.runtime.invalidation`, which calls :meth:`TenancyDirectory.invalidate`;
the periodic refresh (``directory_ttl``) is the fallback if a notification is lost.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import anyio

from ..http import ClientIdentity
from ..provider.directory import AppConfig, ClientConfig
from ..tenancy.service import TenancyService
from ..upstream.entity_configuration import RpEntity, scope_string
from ..upstream.flow import RelyingParty
from .settings import BrokerSettings

log = logging.getLogger("healthid_broker.runtime")


def _log_refresh_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        # A failed refresh keeps the last good view; the type name only (no input echoed).
        log.error("loading an application's configuration failed: %s",
                  type(task.exception()).__name__)


class TenancyDirectory:
    """:class:`AppDirectory` over the tenancy service, with a short in-memory cache."""

    def __init__(self, tenancy: TenancyService, settings: BrokerSettings, *,
                 pairwise_root: bytes, clock: Callable[[], float] = time.time,
                 max_entries: int = 10_000, max_unknown: int = 4_096,
                 negative_ttl: float = 5.0) -> None:
        self.tenancy = tenancy
        self.settings = settings
        self.pairwise_root = pairwise_root
        self.clock = clock
        self.max_entries = max_entries
        self.max_unknown = max_unknown
        self.negative_ttl = negative_ttl
        self._cache: OrderedDict[str, tuple[float, AppConfig]] = OrderedDict()
        self._unknown: OrderedDict[str, float] = OrderedDict()
        self._loading: dict[str, asyncio.Future[AppConfig | None]] = {}
        # Bumped by every invalidation: a load that began before it may have read the old
        # rows, so its result is handed to its waiters but not cached.
        self._epoch = 0

    def invalidate(self, short_key: str | None = None) -> None:
        """Forget ``short_key``'s view (or every view): the next request loads it anew.
        A load already under way is detached, so later requests do not join it."""
        self._epoch += 1
        if short_key is None:
            self._cache.clear()
            self._unknown.clear()
            self._loading.clear()
        else:
            self._cache.pop(short_key, None)
            self._unknown.pop(short_key, None)
            self._loading.pop(short_key, None)

    async def get(self, short_key: str) -> AppConfig | None:
        """The application's view. A stale entry is served while one background refresh
        runs; concurrent misses share one load (no thundering herd on the database)."""
        if len(short_key) > 64:
            return None
        now = self.clock()
        hit = self._cache.get(short_key)
        if hit is not None:
            self._cache.move_to_end(short_key)
            if now - hit[0] >= self.settings.directory_ttl and short_key not in self._loading:
                self._start_refresh(short_key)
            return hit[1]
        unknown_since = self._unknown.get(short_key)
        if unknown_since is not None and now - unknown_since < self.negative_ttl:
            return None
        task = self._loading.get(short_key) or self._start_refresh(short_key)
        return await asyncio.shield(task)

    def _start_refresh(self, short_key: str) -> asyncio.Future[AppConfig | None]:
        task = asyncio.ensure_future(self._refresh(short_key, self._epoch))
        self._loading[short_key] = task
        task.add_done_callback(_log_refresh_failure)
        return task

    async def _refresh(self, short_key: str, epoch: int) -> AppConfig | None:
        try:
            now = self.clock()
            cfg = await anyio.to_thread.run_sync(self._load, short_key, now)
            if epoch == self._epoch:
                self._remember(short_key, now, cfg)
            return cfg
        finally:
            if self._loading.get(short_key) is asyncio.current_task():
                del self._loading[short_key]

    def _remember(self, short_key: str, now: float, cfg: AppConfig | None) -> None:
        if cfg is None:
            self._cache.pop(short_key, None)
            self._unknown[short_key] = now
            self._unknown.move_to_end(short_key)
            while len(self._unknown) > self.max_unknown:
                self._unknown.popitem(last=False)
            return
        self._unknown.pop(short_key, None)
        self._cache[short_key] = (now, cfg)
        self._cache.move_to_end(short_key)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

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
                jwks=tuple(c.jwks), active=c.active, id_token_alg=c.id_token_alg,
                require_par=c.require_par)
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
            id_token_rsa_key=keys.id_token_rsa_key,
            provider_rsa_jwks=tuple(k.public() for k in keys.id_token_rsa_keys),
            pairwise_secret=pairwise, verify_secret=verify_secret,
        )
