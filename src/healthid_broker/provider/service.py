"""The OpenID Provider toward applications: authorize, chooser, upstream callback, token.

Framework-free: the web layer turns HTTP into calls of :class:`ProviderService` and its
outcomes back into HTTP. Flow (see docs/login-flow.md)::

    app ──/par (RFC 9126)──▶ client authenticated, request validated ──▶ STARTED (60 s,
          keyed by the request_uri) ──/authorize?client_id&request_uri──▶ STARTED (new id)
    app ──/authorize──▶ validate client, redirect_uri (RFC 8252 loopback/private-use rules,
                        .redirect_uris), scope, PKCE, prompt/max_age ──▶ STARTED
        ├─ idp_hint: STARTED with the IdP ───────────────┐
        └─ hosted chooser (/authorize/choose): choose_idp ┤
                                                         ▼
                 PAR over mTLS ──▶ UPSTREAM_PENDING (the upstream's opaque pending value,
                                   keyed by its state) ──▶ browser to the IdP
    IdP ──/callback──▶ iss (RFC 9207), token over mTLS, ID token validated, claims
                       minimised ──▶ CODE_ISSUED
    app ──/token────▶ client authenticated, code taken (once), PKCE ──▶ ID token (REDEEMED)

    a live login that goes wrong after it was taken from the store ──fail──▶ FAILED

Errors toward apps follow RFC 6749 §4.1.2.1 / §5.2 and OIDC Core §3.1.2.6; people see a
friendly page. Neither carries personal data. The collaborators are the Protocols of
:mod:`.interfaces`.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

from ..login import transaction as tx
from ..login.errors import IllegalTransition, LoginError, TransactionExpired
from ..login.store import TransientStore
from ..ti_profile import ACR_HIGH, ACR_SUBSTANTIAL
from ..upstream.errors import IdpDeclined, IssuerMismatch, UpstreamError, sanitize
from ..upstream.idp_list import IdpEntry
from . import pkce
from .claims import grant_scopes, minimise_claims, parse_scope, upstream_scopes
from .client_auth import ClientAuthMethod, RegisteredClient, authenticate_client
from .directory import AppConfig, ClientConfig
from .errors import OAuthError
from .interfaces import AppDirectory, ClientAuthentication, LoginTransactions, UpstreamLogin
from .redirect_uris import redirect_uri_registered
from .tokens import build_id_token, new_access_token, new_authorization_code, pairwise_subject

log = logging.getLogger("healthid_broker.provider")

_ACR_RANK = {ACR_SUBSTANTIAL: 1, ACR_HIGH: 2}
ACCESS_TOKEN_LIFETIME = 300
PAR_LIFETIME = 60.0
"""Seconds a pushed authorization request's ``request_uri`` can be used (RFC 9126 §2.2)."""
REQUEST_URI_PREFIX = "urn:ietf:params:oauth:request_uri:"  # RFC 9126 §2.2

_SINGLE_PARAMS = (
    "client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
    "code_challenge", "code_challenge_method", "acr_values", "prompt", "idp_hint",
    "ui_locales", "max_age", "response_mode",
)


# --------------------------------------------------------------------------- outcomes


@dataclass(frozen=True)
class Redirect:
    url: str


@dataclass(frozen=True)
class ShowChooser:
    app: AppConfig
    txn_id: str
    idps: tuple[IdpEntry, ...]
    ui_locales: str | None  # the app's preference (OIDC Core §3.1.2.1); the page picks
    redirect_uri: str = ""  # where the login ends (the page's CSP must let it go there)


@dataclass(frozen=True)
class ErrorPage:
    """A friendly page for people. ``code`` is one of web.i18n.ERRORS' keys."""

    code: str
    status: int = 400
    back_url: str | None = None


@dataclass(frozen=True)
class TokenAnswer:
    status: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


Outcome = Redirect | ShowChooser | ErrorPage


class ClientAuthenticator:
    """Binds :func:`.client_auth.authenticate_client` to an application's clients."""

    def __init__(self, replay: TransientStore, *, clock: Callable[[], float] = time.time) -> None:
        self.replay = replay
        self.clock = clock

    async def authenticate(
        self, app: AppConfig, form: Sequence[tuple[str, str]], authorization: Sequence[str],
        *, token_endpoint: str, par_endpoint: str | None = None,
    ) -> ClientConfig:
        async def lookup(client_id: str) -> RegisteredClient | None:
            c = app.clients.get(client_id)
            if c is None or not c.active:
                return None
            return RegisteredClient(c.client_id, ClientAuthMethod(c.auth_method),
                                    c.signature_keys)

        async def verify(client: RegisteredClient, secret: str) -> bool:
            return app.verify_secret(client.client_id, secret)

        result = await authenticate_client(
            authorization=authorization, form=form, lookup=lookup, verify_secret=verify,
            token_endpoint=token_endpoint, issuer=app.issuer, now=self.clock(),
            replay=self.replay, par_endpoint=par_endpoint)
        return app.clients[result.client_id]


def _with_query(url: str, params: Mapping[str, str]) -> str:
    sep = "&" if urlsplit(url).query else "?"
    return f"{url}{sep}{urlencode(params)}"


def _allowed(app: AppConfig, client: ClientConfig) -> frozenset[str]:
    """The telematik scopes this client may be granted (its allow-list within the app's)."""
    return client.allowed_scopes & app.scopes
def _max_age(value: str | None) -> int | None:
    """OIDC Core §3.1.2.1 ``max_age``: seconds, a non-negative integer."""
    if value is None:
        return None
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        raise OAuthError.invalid_request("max_age must be a non-negative integer (seconds)",
                                         redirectable=True)
    return int(value)


def effective_acr(app: AppConfig, requested: tuple[str, ...]) -> str:
    """The application's configured acr, raised to ``high`` if the app asked for it."""
    acr = app.required_acr
    for r in requested:
        if _ACR_RANK.get(r, 0) > _ACR_RANK.get(acr, 0):
            acr = r
    return acr


class ProviderService:
    def __init__(
        self,
        directory: AppDirectory,
        store: LoginTransactions,
        upstream: UpstreamLogin,
        client_auth: ClientAuthentication,
        *,
        clock: Callable[[], float] = time.time,
        token_endpoint: Callable[[AppConfig], str],
    ) -> None:
        self.directory = directory
        self.store = store
        self.upstream = upstream
        self.client_auth = client_auth
        self.clock = clock
        self.token_endpoint = token_endpoint

    # ------------------------------------------------------------------ helpers

    async def application(self, short_key: str) -> AppConfig | None:
        """The active application with this short key, or ``None``."""
        app = await self.directory.get(short_key)
        if app is None or not app.active:
            return None
        return app

    @staticmethod
    def _finished(outcome: tx.Finished) -> None:
        """A login reached a terminal state (no personal data: id, state, OAuth code)."""
        log.info("login %s %s%s", outcome.txn_id, outcome.state.value,
                 f" ({outcome.reason})" if outcome.reason else "")

    def _to_app(self, redirect_uri: str, app: AppConfig, params: dict[str, str]) -> Redirect:
        params = dict(params)
        params["iss"] = app.issuer  # RFC 9207
        return Redirect(_with_query(redirect_uri, params))

    def _error_to_app(self, app: AppConfig, redirect_uri: str, err: OAuthError,
                      state: str | None) -> Redirect:
        return self._to_app(redirect_uri, app, err.redirect_params(state))

    # ------------------------------------------------------------------ authorize

    async def authorize(
        self, short_key: str, params: Mapping[str, str], *, duplicated: frozenset[str] = frozenset()
    ) -> Outcome:
        """OIDC Core §3.1.2.1/§3.1.2.2. Errors before the client and its redirect URI are
        validated are shown to the person, never redirected (RFC 6749 §4.1.2.1)."""
        app = await self.application(short_key)
        if app is None:
            return ErrorPage("invalid_client", 404)
        client_id = params.get("client_id", "")
        client = app.clients.get(client_id)
        if "client_id" in duplicated or client is None or not client.active:
            return ErrorPage("invalid_client", 400)
        if "request_uri" in params:
            return await self._authorize_pushed(app, client, params, duplicated)
        redirect_uri = params.get("redirect_uri", "")
        if "redirect_uri" in duplicated or not redirect_uri_registered(client, redirect_uri):
            return ErrorPage("invalid_request", 400)
        state = params.get("state")
        try:
            if client.require_par:
                raise OAuthError.invalid_request(
                    "this client must push its authorization request to the PAR endpoint "
                    "(RFC 9126, section 5) and send only client_id and request_uri here",
                    redirectable=True)
            started, ui_locales = self._checked_request(app, client, redirect_uri, params,
                                                        duplicated)
            return await self._begin(app, started, ui_locales)
        except OAuthError as err:
            if err.redirectable:
                return self._error_to_app(app, redirect_uri, err, state)
            return ErrorPage("invalid_request")

    async def _authorize_pushed(self, app: AppConfig, client: ClientConfig,
                                params: Mapping[str, str],
                                duplicated: frozenset[str]) -> Outcome:
        """RFC 9126 §4: only the pushed parameters count; the request_uri works once, within
        its lifetime, for the client that pushed it. Refusals are pages: which redirect URI
        the request was for is not known until it is found."""
        request_uri = params.get("request_uri", "")
        if "request_uri" in duplicated or not request_uri.startswith(REQUEST_URI_PREFIX):
            return ErrorPage("invalid_request", 400)
        txn_id = request_uri[len(REQUEST_URI_PREFIX):]
        if not 0 < len(txn_id) <= 64:
            return ErrorPage("login_expired", 400)
        now = self.clock()
        pushed = await self.store.take_started(txn_id, now=now)
        if (pushed is None or pushed.app.application != app.issuer
                or pushed.app.client_id != client.client_id):
            return ErrorPage("login_expired", 400)
        # a fresh transaction id: the request_uri is spent once it has been used
        started = tx.start(pushed.app, txn_id=secrets.token_urlsafe(24), now=now,
                           idp=pushed.idp)
        return await self._begin(app, started, params.get("ui_locales"))

    async def par(self, short_key: str, form_items: Sequence[tuple[str, str]],
                  authorization: Sequence[str]) -> TokenAnswer:
        """RFC 9126 §2: the pushed authorization request of an app. The client authenticates
        as at the token endpoint; the request is checked as at ``/authorize``; the answer is
        ``201 {request_uri, expires_in}``. Errors are JSON (RFC 9126 §2.3)."""
        try:
            app = await self.application(short_key)
            if app is None:
                raise OAuthError.invalid_client("unknown application")
            params: dict[str, str] = {}
            dup: set[str] = set()
            for name, value in form_items:
                if name in params:
                    dup.add(name)
                params[name] = value
            if "client_id" in dup:
                raise OAuthError.invalid_request("client_id was given more than once")
            token_endpoint = self.token_endpoint(app)
            client = await self.client_auth.authenticate(
                app, form_items, authorization, token_endpoint=token_endpoint,
                # the PAR endpoint is the token endpoint's sibling (web/broker_app.py)
                par_endpoint=token_endpoint.rsplit("/", 1)[0] + "/par")
            if "request_uri" in params:
                raise OAuthError.invalid_request(
                    "request_uri must not be pushed (RFC 9126, section 2.1)")
            redirect_uri = params.get("redirect_uri", "")
            if "redirect_uri" in dup or not redirect_uri_registered(client, redirect_uri):
                raise OAuthError.invalid_request("redirect_uri is not registered for this client")
            started, _ui = self._checked_request(app, client, redirect_uri, params,
                                                 frozenset(dup), lifetime=PAR_LIFETIME)
            await self.store.put_started(started, now=self.clock())
        except OAuthError as err:
            return TokenAnswer(err.status, err.to_dict(), err.headers())
        return TokenAnswer(201, {"request_uri": REQUEST_URI_PREFIX + started.txn_id,
                                 "expires_in": int(PAR_LIFETIME)},
                           {"Cache-Control": "no-store"})

    def _checked_request(
        self, app: AppConfig, client: ClientConfig, redirect_uri: str,
        params: Mapping[str, str], duplicated: frozenset[str],
        *, lifetime: float = tx.MAX_LIFETIME,
    ) -> tuple[tx.Started, str | None]:
        """The authorization request's checks (OIDC Core §3.1.2.2), shared by ``/authorize``
        and the PAR endpoint: a new STARTED transaction (not yet stored) and the app's
        ``ui_locales``. Raises :class:`OAuthError`."""
        dup = sorted(set(_SINGLE_PARAMS) & duplicated)
        if dup:
            raise OAuthError.invalid_request(f"parameter {dup[0]} given more than once",
                                             redirectable=True)
        if "request" in params:
            raise OAuthError("request_not_supported", "request objects are not supported",
                             redirectable=True)
        if params.get("response_type") != "code":
            raise OAuthError("unsupported_response_type", "only response_type=code is supported",
                             redirectable=True)
        if params.get("response_mode", "query") != "query":
            raise OAuthError.invalid_request("only response_mode=query is supported",
                                             redirectable=True)
        scopes = grant_scopes(parse_scope(params.get("scope")), _allowed(app, client))
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if challenge is not None or method is not None or client.public:
            pkce.check_challenge(challenge, method or None)
        prompt = set(parse_scope(params.get("prompt")))
        if "none" in prompt:
            # The broker keeps no login session: every login goes to the IdP.
            raise OAuthError("login_required", "the broker keeps no session; prompt=none "
                             "cannot be satisfied", redirectable=True)
        acr_values = parse_scope(params.get("acr_values"))
        unknown_acr = [a for a in acr_values if a not in _ACR_RANK]
        if acr_values and len(unknown_acr) == len(acr_values):
            raise OAuthError.invalid_request("acr_values names no supported level",
                                             redirectable=True)
        nonce = params.get("nonce")
        if nonce is not None and len(nonce) > 512:
            raise OAuthError.invalid_request("nonce is too long", redirectable=True)
        state = params.get("state")
        if state is not None and len(state) > 1024:
            raise OAuthError.invalid_request("state is too long", redirectable=True)
        max_age = _max_age(params.get("max_age"))
        request = tx.AppRequest(
            application=app.issuer, client_id=client.client_id, redirect_uri=redirect_uri,
            scopes=scopes, state=state, nonce=nonce,
            code_challenge=challenge, code_challenge_method=method if challenge else None,
            acr_values=tuple(a for a in acr_values if a in _ACR_RANK),
            prompt="login" if "login" in prompt else None, max_age=max_age,
        )
        hint = params.get("idp_hint") or None
        started = tx.start(request, txn_id=secrets.token_urlsafe(24), now=self.clock(),
                           idp=hint, lifetime=lifetime)
        return started, params.get("ui_locales", "")[:200] or None

    async def _begin(self, app: AppConfig, started: tx.Started,
                     ui_locales: str | None) -> Outcome:
        """An accepted request: straight to the IdP named by ``idp_hint``, or the chooser."""
        if started.idp:
            return await self._go_upstream(app, started)
        now = self.clock()
        try:
            idps = await self.upstream.idps()
        except UpstreamError as exc:
            log.warning("IdP list unavailable: %s", exc)
            idps = ()
        await self.store.put_started(started, now=now)
        return ShowChooser(app, started.txn_id, idps, ui_locales, started.app.redirect_uri)

    async def choose(self, short_key: str, txn_id: str, idp: str, lang: str | None) -> Outcome:
        """The hosted chooser's answer. ``lang`` is the chooser's language; the pages that
        follow are the IdP's."""
        app = await self.application(short_key)
        if app is None:
            return ErrorPage("invalid_client", 404)
        now = self.clock()
        started = await self.store.take_started(txn_id, now=now)
        if started is None or started.app.application != app.issuer:
            return ErrorPage("login_expired", 400)
        try:
            chosen = tx.choose_idp(started, idp, now=now)
        except TransactionExpired:
            return ErrorPage("login_expired", 400)
        except IllegalTransition:  # no IdP chosen
            return ErrorPage("invalid_request", 400)
        return await self._go_upstream(app, chosen)

    def _back_to_app(self, app: AppConfig, req: tx.AppRequest, error: str, desc: str) -> str:
        err = OAuthError(error, desc, redirectable=True)
        return self._error_to_app(app, req.redirect_uri, err, req.state).url

    async def _go_upstream(self, app: AppConfig, started: tx.Started) -> Outcome:
        """PAR toward the IdP chosen in ``started``; the login waits in UPSTREAM_PENDING."""
        req = started.app
        idp = started.idp or ""
        acr = effective_acr(app, req.acr_values)
        try:
            client = app.clients.get(req.client_id)
            allowed = _allowed(app, client) if client is not None else frozenset()
            up = await self.upstream.start(
                app.rp, idp, scope=" ".join(upstream_scopes(req.scopes, allowed)), acr=acr,
                prompt=req.prompt, max_age=req.max_age)
        except UpstreamError as exc:
            log.warning("upstream start failed for %s: %s", sanitize(idp, 200), exc)
            self._finished(tx.fail(started, "temporarily_unavailable"))
            back = self._back_to_app(app, req, "temporarily_unavailable",
                                     "the identity provider cannot be reached")
            return ErrorPage("idp_unavailable", 502, back_url=back)
        now = self.clock()
        try:
            pending = tx.send_upstream(started, upstream=up.pending, now=now)
        except TransactionExpired:
            return ErrorPage("login_expired", 400)
        await self.store.put_pending(up.state, pending, now=now)
        return Redirect(up.redirect_url)

    # ------------------------------------------------------------------ callback

    async def callback(self, short_key: str, params: Mapping[str, str]) -> Outcome:
        """The IdP's redirect back (step 3 → 4). ``state`` is single-use."""
        app = await self.application(short_key)
        if app is None:
            return ErrorPage("invalid_client", 404)
        state = params.get("state", "")
        pending = await self.store.take_pending(state, now=self.clock()) if state else None
        if pending is None or pending.app.application != app.issuer:
            return ErrorPage("login_expired", 400)
        req = pending.app
        client = app.clients.get(req.client_id)
        if client is None or not client.active:
            self._finished(tx.fail(pending, "invalid_client"))
            return ErrorPage("invalid_client", 400)
        try:
            validated = await self.upstream.finish(
                app.rp, pending.upstream, params,
                required_acr=effective_acr(app, req.acr_values))
        except IssuerMismatch as exc:
            # RFC 9207: possibly another IdP's answer (mix-up); its code was not redeemed.
            log.warning("IdP answer refused for %s: %s", sanitize(pending.idp, 200), exc)
            self._finished(tx.fail(pending, "access_denied"))
            back = self._back_to_app(app, req, "access_denied",
                                     "the identity provider's answer was not acceptable")
            return ErrorPage("idp_mismatch", 400, back_url=back)
        except IdpDeclined as exc:
            code = "access_denied" if exc.oauth_error in (None, "access_denied") else "server_error"
            log.info("IdP %s declined the login: %s", sanitize(pending.idp, 200), exc)
            self._finished(tx.fail(pending, code))
            return self._to_app(req.redirect_uri, app, OAuthError(
                code, "the identity provider did not complete the login",
                redirectable=True).redirect_params(req.state))
        except UpstreamError as exc:
            log.warning("upstream login failed at %s: %s", sanitize(pending.idp, 200), exc)
            self._finished(tx.fail(pending, "access_denied"))
            return self._to_app(req.redirect_uri, app, OAuthError(
                "access_denied", "the identity provider's answer was not acceptable",
                redirectable=True).redirect_params(req.state))
        now = self.clock()
        subject = pairwise_subject(app.pairwise_secret, validated.iss, validated.sub)
        claims = minimise_claims(validated.claims, _allowed(app, client), req.scopes)
        try:
            issued = tx.issue_code(
                pending, subject=subject, claims=claims, acr=validated.acr,
                amr=validated.amr, auth_time=validated.auth_time, now=now)
        except LoginError:
            return ErrorPage("login_expired", 400)
        code = new_authorization_code()
        await self.store.put_code(code, issued, now=now)
        params_out = {"code": code}
        if req.state is not None:
            params_out["state"] = req.state
        return self._to_app(req.redirect_uri, app, params_out)

    # ------------------------------------------------------------------ token

    async def token(self, short_key: str, form_items: Sequence[tuple[str, str]],
                    authorization: Sequence[str]) -> TokenAnswer:
        """RFC 6749 §4.1.3 / OIDC Core §3.1.3. ``form_items`` in order, repeats included."""
        try:
            return await self._token(short_key, form_items, authorization)
        except OAuthError as err:
            return TokenAnswer(err.status, err.to_dict(), err.headers())

    async def _token(self, short_key: str, form_items: Sequence[tuple[str, str]],
                     authorization: Sequence[str]) -> TokenAnswer:
        app = await self.application(short_key)
        if app is None:
            raise OAuthError.invalid_client("unknown application")
        form: dict[str, str] = {}
        for name, value in form_items:
            if name in form:
                raise OAuthError.invalid_request("a parameter was given more than once")
            form[name] = value
        client = await self.client_auth.authenticate(
            app, form_items, authorization, token_endpoint=self.token_endpoint(app))
        grant = form.get("grant_type")
        if grant != "authorization_code":
            raise OAuthError("unsupported_grant_type",
                             "only grant_type=authorization_code is supported")
        code = form.get("code")
        if not code:
            raise OAuthError.invalid_request("code is required")
        now = self.clock()
        issued = await self.store.take_code(code, now=now)  # atomic: a code works once
        if issued is None or issued.application != app.issuer:
            raise OAuthError.invalid_grant("the code is invalid, expired or already used")
        try:
            answer = self._redeem(app, client, issued, form, now)
        except OAuthError as err:  # the code is spent: this login is over (RFC 6749 §4.1.2)
            self._finished(tx.fail(issued, err.error))
            raise
        self._finished(tx.redeem(issued, now=now))
        return answer

    def _redeem(self, app: AppConfig, client: ClientConfig, issued: tx.CodeIssued,
                form: Mapping[str, str], now: float) -> TokenAnswer:
        if issued.client_id != client.client_id:
            raise OAuthError.invalid_grant("the code was issued to another client")
        if form.get("redirect_uri") != issued.redirect_uri:
            raise OAuthError.invalid_grant("redirect_uri does not match the authorization request")
        if issued.code_challenge is not None:
            pkce.verify(form.get("code_verifier"), issued.code_challenge,
                        issued.code_challenge_method or "S256")
        elif form.get("code_verifier") is not None:
            raise OAuthError.invalid_grant("code_verifier sent but no code_challenge was given")
        access = new_access_token(lifetime=ACCESS_TOKEN_LIFETIME)
        signer = app.id_token_signer(client)
        if signer is None:
            raise OAuthError("server_error", "no signing key for the client's "
                             "id_token_signed_response_alg")
        signing_key, alg = signer
        id_token = build_id_token(
            signing_key=signing_key, alg=alg, issuer=app.issuer, client_id=client.client_id,
            subject=issued.subject, now=now, claims=issued.claims, nonce=issued.nonce,
            auth_time=issued.auth_time, acr=issued.acr, amr=issued.amr,
            access_token=access.value, encryption_key=client.encryption_key)
        return TokenAnswer(200, access.response(id_token, scope=" ".join(issued.scopes)),
                           {"Cache-Control": "no-store", "Pragma": "no-cache"})
