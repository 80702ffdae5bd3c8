"""The broker as relying party toward the sectoral IdPs: the whole upstream login.

The login, step by step (docs/upstream.md; the TI profile in docs/ti-profile.md):

1. trust — the master's entity configuration verified with the *pinned* master key
   (A_23046); the IdP list verified with the master's keys; the chosen IdP's entity
   configuration reached through a trust chain to the pinned anchor (A_23040); its signed
   JWKS verified with the IdP's federation keys. Foreign statements are cached by the
   federation layer per A_23039.
2. PAR over mutual TLS with the broker's own ``state``, ``nonce`` and PKCE (never the app's);
   one repeat on a 401 to the first PAR (A_23500).
3. front channel redirect to the IdP's ``authorization_endpoint``.
4. the IdP's authorization response: ``iss`` checked (RFC 9207), then the token request
   over mutual TLS.
5. ID token: JWE decrypted by ``kid``, inner JWS verified against the IdP's keys; on an
   unknown ``kid`` the IdP's entity configuration and signed JWKS are fetched again, once
   (A_22861), then every A_23049 check.

Between steps 3 and 4 the login waits in the browser. :meth:`Upstream.start` returns what
must be remembered as one opaque value (:mod:`.pending`); the caller stores it under the
``state`` and gives it back to :meth:`Upstream.finish` unchanged.

This module holds no personal data beyond the call that validates an ID token: it returns
the validated claims to its caller and keeps nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..crypto.jose import JWK
from ..federation.errors import FederationError
from ..federation.trust_chain import ChainResolver
from ..http import ClientIdentity, HttpClient
from .authorization_response import authorization_code
from .errors import UnknownSigningKey, UpstreamError
from .id_token import ValidatedIdToken, validate_id_token
from .idp_list import IdpEntry, IdpList, fetch_idp_list
from .par import (
    ParRequest,
    authorization_redirect_url,
    new_auth_secrets,
    push_authorization_request,
)
from .pending import PendingLogin
from .signed_jwks import fetch_signed_jwks
from .token import redeem_code

__all__ = ["IdpInfo", "RelyingParty", "Upstream", "UpstreamStart"]

IDP_LIST_MAX_AGE = 3600.0  # re-read the IdP list at least hourly
JWKS_REFRESH = 12 * 3600.0  # like foreign statements (A_23039)
REFETCH_MIN_INTERVAL = 60.0  # unknown-kid re-fetch rate limit (A_22861)


@dataclass(frozen=True)
class RelyingParty:
    """What the upstream side needs to know about one application's federation entity."""

    entity_id: str
    redirect_uri: str
    scope: str
    identity: ClientIdentity
    decryption_keys: tuple[JWK, ...] = field(repr=False)


@dataclass(frozen=True)
class IdpInfo:
    entity_id: str
    name: str
    logo_uri: str | None
    pkv: bool
    authorization_endpoint: str
    par_endpoint: str
    token_endpoint: str
    signing_keys: tuple[JWK, ...]
    valid_until: float
    fetched_at: float
    iss_parameter_supported: bool = False  # RFC 9207 §3: then every response must carry iss


@dataclass(frozen=True)
class UpstreamStart:
    """Where to send the browser, and what to keep until the IdP sends it back.

    ``state`` is the broker's own ``state`` toward the IdP: the IdP's redirect returns it,
    so it is the key to store ``pending`` under. ``pending`` is opaque to the caller.
    """

    redirect_url: str
    state: str = field(repr=False)
    pending: bytes = field(repr=False)


class Upstream:
    def __init__(
        self,
        http: HttpClient,
        resolver: ChainResolver,
        *,
        master_entity_id: str,
        clock: Callable[[], float] = time.time,
        allow_loopback_http_frontchannel: bool = False,
        par_retry_pause: float = 1.0,
    ) -> None:
        self.http = http
        self.resolver = resolver
        self.master = master_entity_id.rstrip("/")
        self.clock = clock
        self.allow_loopback_http = allow_loopback_http_frontchannel
        self.par_retry_pause = par_retry_pause
        self._idp_list: tuple[IdpList, float] | None = None
        self._idps: dict[str, IdpInfo] = {}
        self._last_refetch: dict[str, float] = {}

    # ------------------------------------------------------------------ trust

    async def _master_configuration(self) -> tuple[dict[str, Any], list[JWK]]:
        """The master's metadata and current keys, from its entity configuration verified
        with the pinned key (A_23046) and cached per A_23039 by the resolver."""
        try:
            ec = await self.resolver.entity_configuration(self.master)
        except FederationError as exc:
            raise UpstreamError(f"federation master's entity configuration: {exc}") from exc
        return ec.metadata, ec.keys()

    async def idp_list(self) -> IdpList:
        now = self.clock()
        cached = self._idp_list
        if cached and now < min(cached[1] + IDP_LIST_MAX_AGE, cached[0].exp):
            return cached[0]
        meta, master_keys = await self._master_configuration()
        url = (meta.get("federation_entity") or {}).get("idp_list_endpoint")
        if not isinstance(url, str):
            raise UpstreamError("the master's metadata names no idp_list_endpoint")
        lst = await fetch_idp_list(self.http, url, master_keys, master=self.master, now=now,
                                   allow_loopback_http_logos=self.allow_loopback_http)
        self._idp_list = (lst, now)
        return lst

    async def idps(self) -> tuple[IdpEntry, ...]:
        return (await self.idp_list()).entries

    async def idp(self, entity_id: str, *, force: bool = False) -> IdpInfo:
        """The IdP's verified endpoints and ID-token keys (via its trust chain)."""
        now = self.clock()
        info = self._idps.get(entity_id)
        if info and not force and now < info.valid_until and now - info.fetched_at < JWKS_REFRESH:
            return info
        entry = (await self.idp_list()).get(entity_id)
        if entry is None:
            raise UpstreamError("the chosen identity provider is not in the federation's IdP list")
        try:
            chain = await self.resolver.resolve(entity_id, "openid_provider", refresh=force)
        except FederationError as exc:
            raise UpstreamError(f"no trust chain to {entity_id}: {exc}") from exc
        meta = chain.metadata("openid_provider")
        leaf_keys = chain.leaf.keys()

        def _url(name: str) -> str:
            v = meta.get(name)
            if not isinstance(v, str) or not v:
                raise UpstreamError(f"metadata of {entity_id} lacks {name}")
            return v

        jwks = await fetch_signed_jwks(
            self.http, _url("signed_jwks_uri"), leaf_keys, idp=entity_id, now=now)
        info = IdpInfo(
            entity_id=entity_id,
            name=entry.organization_name,
            logo_uri=entry.logo_uri,
            pkv=entry.pkv,
            authorization_endpoint=_url("authorization_endpoint"),
            par_endpoint=_url("pushed_authorization_request_endpoint"),
            token_endpoint=_url("token_endpoint"),
            signing_keys=tuple(jwks.signing_keys),
            valid_until=float(chain.exp),
            fetched_at=now,
            iss_parameter_supported=meta.get("authorization_response_iss_parameter_supported")
            is True,
        )
        self._idps[entity_id] = info
        return info

    # ------------------------------------------------------------------ login

    async def start(
        self, rp: RelyingParty, idp_id: str, *, scope: str, acr: str,
        prompt: str | None = None, max_age: int | None = None, force_reauth: bool = False,
    ) -> UpstreamStart:
        """Steps 2–3: PAR over mTLS, then the front-channel URL for the browser.

        ``prompt``/``max_age`` (the app's, OIDC Core §3.1.2.1) go into the PAR only to force
        a new authentication (A_23030); ``force_reauth`` is ``max_age=0``."""
        idp = await self.idp(idp_id)
        secrets = new_auth_secrets()
        req = ParRequest.build(
            endpoint=idp.par_endpoint, client_id=rp.entity_id, redirect_uri=rp.redirect_uri,
            scope=scope, acr_values=acr, auth=secrets,
            prompt=prompt, max_age=0 if force_reauth else max_age,
        )
        par = await push_authorization_request(
            self.http, req, rp.identity, first_par=True, retry_pause=self.par_retry_pause)
        url = authorization_redirect_url(
            idp.authorization_endpoint, rp.entity_id, par.request_uri,
            allow_loopback_http=self.allow_loopback_http)
        pending = PendingLogin(idp=idp.entity_id, nonce=secrets.nonce,
                               code_verifier=secrets.code_verifier, redirect_uri=rp.redirect_uri)
        return UpstreamStart(url, secrets.state, pending.encode())

    async def finish(
        self, rp: RelyingParty, pending: bytes, response: Mapping[str, str], *,
        required_acr: str,
    ) -> ValidatedIdToken:
        """Steps 4–5 for the IdP's authorization ``response`` (the callback's query).

        ``pending`` is :attr:`UpstreamStart.pending` of this login. Raises
        :class:`~.errors.IssuerMismatch` (RFC 9207), :class:`~.errors.IdpDeclined` (an
        error response) or another :class:`~.errors.UpstreamError`.
        """
        p = PendingLogin.decode(pending)
        idp = await self.idp(p.idp)
        code = authorization_code(response, issuer=idp.entity_id,
                                  iss_required=idp.iss_parameter_supported)
        tokens = await redeem_code(
            self.http, idp.token_endpoint, code=code, code_verifier=p.code_verifier,
            client_id=rp.entity_id, redirect_uri=p.redirect_uri, identity=rp.identity)
        try:
            return self._validate(rp, idp, tokens.id_token, p.nonce, required_acr)
        except UnknownSigningKey:
            last = self._last_refetch.get(p.idp, 0.0)
            now = self.clock()
            if now - last < REFETCH_MIN_INTERVAL:
                raise
            self._last_refetch[p.idp] = now
            idp = await self.idp(p.idp, force=True)  # A_22861: re-fetch ES + signed JWKS once
            return self._validate(rp, idp, tokens.id_token, p.nonce, required_acr)

    def _validate(self, rp: RelyingParty, idp: IdpInfo, id_token: str,
                  nonce: str, required_acr: str) -> ValidatedIdToken:
        return validate_id_token(
            id_token,
            decryption_keys=rp.decryption_keys,
            signing_keys=idp.signing_keys,
            issuer=idp.entity_id,
            audience=rp.entity_id,
            nonce=nonce,
            required_acr=required_acr,
            now=self.clock(),
        )
