"""The composition root: settings → implementations → the public role's ASGI app.

One place decides which store, database, key provider and federation the broker uses;
everything below receives its collaborators as parameters (no global configuration:
docs/design.md §4).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..federation.statements import jwks_to_keys
from ..federation.trust_chain import ChainResolver, TrustAnchor
from ..http import HttpClient
from ..http.client import OutboundClient
from ..login.login_store import LoginStore
from ..login.store import MemoryBackend, SealedStore
from ..provider.service import ClientAuthenticator, ProviderService
from ..tenancy.service import TenancyService
from ..upstream.flow import Upstream
from ..web.broker_app import BrokerWeb, Urls, create_broker_app
from ..web.rate_limit import RateLimiter, RateLimitMiddleware, RateLimits
from ..web.security import ASGIApp
from .directory import TenancyDirectory
from .secrets import BrokerSecrets, is_shared_shape, load_secrets
from .settings import BrokerSettings

log = logging.getLogger("healthid_broker.runtime")


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
    secrets: BrokerSecrets | None = None,
    clock: Callable[[], float] = time.time,
    mounts: Mapping[str, Any] | None = None,
    par_retry_pause: float = 1.0,
    rate_limiter: RateLimiter | None = None,
    rate_limits: RateLimits | None = None,
) -> BrokerRuntime:
    """The public role. With ``rate_limiter`` the login path is rate limited
    (``rate_limits``, default :class:`RateLimits`); the limiter sits inside the security
    headers' :class:`~..web.security.Guard`, so its 429 answers carry them too."""
    settings.check()
    data = settings.data_dir
    data.mkdir(parents=True, exist_ok=True)
    if secrets is None:
        # The embedded shape may make its secrets on first start; a shared one never does.
        secrets = load_secrets(data, create=not is_shared_shape(settings.database_url,
                                                                settings.redis_url))
    http_client: HttpClient
    own_http: OutboundClient | None = None  # the runtime's own client, closed by aclose()
    if http is None:
        http_client = own_http = OutboundClient(ca_file=settings.ca_file)
    else:
        http_client = http
    anchor = TrustAnchor(settings.master_entity_id, jwks_to_keys(settings.master_jwks,
                                                                 owner="pinned master"))
    resolver = ChainResolver(http_client, [anchor], clock=clock)
    upstream = Upstream(
        http_client, resolver, master_entity_id=settings.master_entity_id,
        clock=clock,
        allow_loopback_http_frontchannel=settings.environment == "sandbox",
        par_retry_pause=par_retry_pause,
    )
    directory = TenancyDirectory(tenancy, settings, pairwise_root=secrets.pairwise_root,
                                 clock=clock)
    backend = store_backend if store_backend is not None else MemoryBackend()
    sealed = SealedStore(backend, secrets.sealer)
    login_store = LoginStore(sealed)
    urls = Urls(settings.public_base.rstrip("/"), settings.browser)
    client_auth = ClientAuthenticator(sealed, clock=clock)
    service = ProviderService(
        directory, login_store, upstream, client_auth, clock=clock,
        token_endpoint=lambda app: urls.public(app.short_key, "token"))
    web = BrokerWeb(service, urls, sandbox=settings.environment == "sandbox", clock=clock)
    limits = rate_limits or RateLimits()
    limiter = rate_limiter if limits.enabled else None
    limit = None
    if limiter is not None:
        def limit(app: ASGIApp) -> ASGIApp:
            return RateLimitMiddleware(app, limiter, limits,
                                       static_base=f"{urls.browser_base}/static",
                                       sandbox=settings.environment == "sandbox")
    asgi: Any = create_broker_app(web, mounts, limit=limit)
    rt = BrokerRuntime(settings, tenancy, directory, upstream, service, web, http_client, asgi)
    if rate_limiter is not None:
        rt.closers.append(rate_limiter.aclose)  # before the caller's Redis client closes
    if own_http is not None:
        rt.closers.append(own_http.aclose)
    return rt
