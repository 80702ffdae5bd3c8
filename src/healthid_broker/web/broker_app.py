"""HTTP surface of the broker's public role: per application, the federation entity
(toward the IdPs) and the OpenID Provider (toward the apps).

``<public_base>/<short-key>`` is the entity id and the OIDC issuer. Server-to-server
endpoints are under the public (https) base; the pages people see (authorize, chooser,
callback) under the browser base, which is the same URL in production and loopback http in
the demo (docs/decisions/0001-sandbox-tls-and-loopback.md).

Routing, requests and responses are Starlette's; in front of it :class:`~.http_guard.HttpGuard`
(request checks and body bounds) and :class:`~.security.Guard` (security headers, last-resort
error answer). Errors toward apps are OAuth JSON (RFC 6749 §5.2), toward people a page in
German or English.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.routing import BaseRoute, Match, NoMatchFound, Route
from starlette.staticfiles import StaticFiles

from .. import jsoncodec
from ..crypto.app_signing import ID_TOKEN_ALGS
from ..federation.statements import ENTITY_STATEMENT_CONTENT_TYPE
from ..login.errors import SealError, StoreError
from ..provider.claims import STANDARD_SCOPE_CLAIMS, claims_for_scopes, scopes_offered
from ..provider.directory import AppConfig
from ..provider.service import (
    ErrorPage,
    Outcome,
    ProviderService,
    Redirect,
    ShowChooser,
)
from ..ti_profile import ACR_HIGH, ACR_SUBSTANTIAL
from ..upstream.entity_configuration import sign_entity_configuration
from ..upstream.errors import UpstreamError
from .cors import Cors
from .http_guard import BODY_TIMEOUT, MAX_BODY_BYTES, HttpGuard
from .i18n import ERRORS, TEXTS, pick_language, ui_locale
from .security import CSP, ASGIApp, Guard, Receive, Scope, Send, incident_id

_HERE = Path(__file__).parent
_env = Environment(
    loader=FileSystemLoader(_HERE / "templates"), autoescape=select_autoescape(["html"])
)
ENTITY_CONFIGURATION_MAX_AGE = 600


class JSONResponse(StarletteJSONResponse):
    """Starlette's ``JSONResponse`` with the body rendered by orjson
    (:mod:`healthid_broker.jsoncodec`: the same bytes, faster)."""

    def render(self, content: Any) -> bytes:
        return jsoncodec.dumps(content)


@dataclass(frozen=True)
class Urls:
    public_base: str
    browser_base: str

    def issuer(self, short_key: str) -> str:
        return f"{self.public_base}/{short_key}"

    def browser(self, short_key: str, path: str) -> str:
        return f"{self.browser_base}/{short_key}/{path}"

    def public(self, short_key: str, path: str) -> str:
        return f"{self.public_base}/{short_key}/{path}"


_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


_PRIVATE_SCHEME = re.compile(r"([a-z][a-z0-9+-]*(\.[a-z0-9][a-z0-9+-]*)+):/")


def chooser_csp(logo_uris: list[str | None], redirect_uri: str = "") -> str:
    """The chooser page's CSP (T-21): the site-wide policy, with ``img-src`` widened by exactly
    the origins of the IdP logos shown (the IdP list only carries https logos,
    upstream/idp_list.py), so the insurers' logos are not blocked by ``img-src 'self'``.

    The chooser's form starts a navigation that may run through redirects all the way back
    to the app (an IdP that answers at once); browsers check ``form-action`` on each of
    them. For a native app's private-use scheme (RFC 8252 §7.1) ``form-action`` names that
    one scheme, so the last redirect into the app is not blocked in an in-app browser tab."""
    csp = CSP
    scheme = _PRIVATE_SCHEME.match(redirect_uri)
    if scheme is not None:
        csp = csp.replace("form-action 'self' http: https:",
                          f"form-action 'self' http: https: {scheme.group(1)}:", 1)
    origins: list[str] = []
    for uri in logo_uris:
        if not uri:
            continue
        parts = urlsplit(uri)
        origin = f"{parts.scheme}://{parts.netloc}"
        # Only plain host[:port] characters, so a logo URI can never add a CSP directive.
        # https, or loopback http (only the sandbox's IdP list can carry that, decision 0001)
        allowed = parts.scheme == "https" or (
            parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1"))
        if allowed and _ORIGIN.fullmatch(origin) and origin not in origins:
            origins.append(origin)
    if not origins:
        return csp
    return csp.replace("img-src 'self' data:", "img-src 'self' data: " + " ".join(origins), 1)


def _wants_json(request: Request) -> bool:
    """API paths and clients that ask for JSON get JSON errors; people get pages."""
    return request.url.path.endswith(("/token", "/par", "/jwks", "/idps")) or \
        "json" in request.headers.get("accept", "")


class BrokerWeb:
    def __init__(self, service: ProviderService, urls: Urls, *, sandbox: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.urls = urls
        self.sandbox = sandbox
        self.clock = clock

    # ---------------------------------------------------------------- rendering

    def _lang(self, request: Request, ui_locales: str | None = None) -> str:
        q = dict(request.query_params)
        hint = ui_locale(ui_locales)
        if hint is not None and "lang" not in q:
            q["lang"] = hint
        return pick_language(q, request.headers.get("accept-language"))

    def _page(self, template: str, lang: str, status: int = 200, **ctx: Any) -> HTMLResponse:
        html = _env.get_template(template).render(
            lang=lang, t=TEXTS[lang], sandbox=self.sandbox,
            static_base=f"{self.urls.browser_base}/static", **ctx)
        return HTMLResponse(html, status_code=status)

    def error_page(self, request: Request, code: str, status: int,
                   back_url: str | None = None, incident: str | None = None) -> HTMLResponse:
        lang = self._lang(request)
        message = ERRORS[lang].get(code, ERRORS[lang]["server_error"])
        return self._page("error.html", lang, status, code=code, message=message,
                          incident=incident, back_url=back_url)

    def _outcome(self, request: Request, outcome: Outcome) -> Response:
        if isinstance(outcome, Redirect):
            return RedirectResponse(outcome.url, 302)
        if isinstance(outcome, ErrorPage):
            return self.error_page(request, outcome.code, outcome.status, outcome.back_url)
        assert isinstance(outcome, ShowChooser)
        lang = self._lang(request, outcome.ui_locales)
        other = "en" if lang == "de" else "de"
        q = dict(request.query_params)
        q["lang"] = other
        page = self._page(
            "chooser.html", lang,
            app_name=outcome.app.display_name,
            idps=[{"entity_id": i.iss, "name": i.organization_name, "logo_uri": i.logo_uri,
                   "pkv": i.pkv} for i in outcome.idps],
            tx=outcome.txn_id,
            choose_action=self.urls.browser(outcome.app.short_key, "authorize/choose"),
            other_lang=other, lang_query=urlencode(q),
        )
        page.headers["content-security-policy"] = chooser_csp(
            [i.logo_uri for i in outcome.idps], outcome.redirect_uri)
        return page

    # ---------------------------------------------------------------- endpoints

    async def _app_or_404(self, request: Request) -> AppConfig | None:
        app: AppConfig | None = await self.service.application(request.path_params["short_key"])
        return app

    async def entity_configuration(self, request: Request) -> Response:
        app = await self._app_or_404(request)
        if app is None:
            return JSONResponse({"error": "not_found"}, 404)
        token = sign_entity_configuration(app.entity, now=int(self.clock()))
        return Response(token, media_type=ENTITY_STATEMENT_CONTENT_TYPE, headers={
            "cache-control": f"public, max-age={ENTITY_CONFIGURATION_MAX_AGE}"})

    def metadata(self, app: AppConfig) -> dict[str, Any]:
        """The provider's metadata, ONE document for both the OIDC discovery document
        (OpenID Connect Discovery §3) and the RFC 8414 authorization-server metadata, so a
        strict client finds the same values in both."""
        sk = app.short_key
        claims = sorted(claims_for_scopes(app.scopes)
                        | claims_for_scopes(STANDARD_SCOPE_CLAIMS)
                        | {"sub", "iss", "aud", "exp", "iat", "nonce", "acr", "amr",
                           "auth_time", "azp", "at_hash"})
        return {
            "issuer": app.issuer,
            "authorization_endpoint": self.urls.browser(sk, "authorize"),
            "token_endpoint": self.urls.public(sk, "token"),
            "jwks_uri": self.urls.public(sk, "jwks"),
            "idp_list_endpoint": self.urls.public(sk, "idps"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": list(ID_TOKEN_ALGS),
            "id_token_encryption_alg_values_supported": ["ECDH-ES"],
            "id_token_encryption_enc_values_supported": ["A256GCM"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic", "private_key_jwt", "none"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": list(scopes_offered(app.scopes)),
            "claims_supported": claims,
            "acr_values_supported": [ACR_HIGH, ACR_SUBSTANTIAL],
            "ui_locales_supported": ["de", "en"],
            "authorization_response_iss_parameter_supported": True,
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            # RFC 9126 §5; per client: require_pushed_authorization_requests
            "pushed_authorization_request_endpoint": self.urls.public(sk, "par"),
            "require_pushed_authorization_requests": False,
        }

    async def discovery(self, request: Request) -> Response:
        """``<issuer>/.well-known/openid-configuration`` (OpenID Connect Discovery §4)."""
        app = await self._app_or_404(request)
        if app is None:
            return JSONResponse({"error": "not_found"}, 404)
        return JSONResponse(self.metadata(app), headers={"cache-control": "public, max-age=300"})

    async def authorization_server_metadata(self, request: Request) -> Response:
        """RFC 8414 metadata: at ``/.well-known/oauth-authorization-server/<short-key>`` (the
        path-inserted form of §3.1) and beside the discovery document at
        ``<issuer>/.well-known/oauth-authorization-server`` (where many libraries look)."""
        app = await self._app_or_404(request)
        if app is None:
            return JSONResponse({"error": "not_found"}, 404)
        return JSONResponse(self.metadata(app), headers={"cache-control": "public, max-age=300"})

    async def jwks(self, request: Request) -> Response:
        app = await self._app_or_404(request)
        if app is None:
            return JSONResponse({"error": "not_found"}, 404)
        return JSONResponse(app.published_jwks(),
                             headers={"cache-control": "public, max-age=300"})

    async def idps(self, request: Request) -> Response:
        """Gateway mode: the verified IdP list, for apps that render their own chooser."""
        app = await self._app_or_404(request)
        if app is None:
            return JSONResponse({"error": "not_found"}, 404)
        try:
            entries = await self.service.upstream.idps()
        except UpstreamError:
            return JSONResponse({"error": "temporarily_unavailable",
                                  "error_description": "the federation's IdP list is unavailable"},
                                 503)
        return JSONResponse({"idps": [
            {"idp_hint": e.iss, "organization_name": e.organization_name,
             "logo_uri": e.logo_uri, "pkv": e.pkv} for e in entries]},
            headers={"cache-control": "public, max-age=300"})

    # authorize, chooser, callback and token: the login's steps

    async def authorize(self, request: Request) -> Response:
        params, dup = _single(request.query_params.multi_items())
        outcome = await self.service.authorize(request.path_params["short_key"], params,
                                               duplicated=dup)
        return self._outcome(request, outcome)

    async def choose(self, request: Request) -> Response:
        items = await _form(request)
        if items is None:
            return self.error_page(request, "invalid_request", 400)
        params, _dup = _single(items)
        tx = params.get("tx", "")
        if not _fits_store_key(tx):  # empty or longer than any transaction id we issue
            return self.error_page(request, "login_expired", 400)
        outcome = await self.service.choose(
            request.path_params["short_key"], tx, params.get("idp", ""), params.get("lang"))
        return self._outcome(request, outcome)

    async def callback(self, request: Request) -> Response:
        params, _dup = _single(request.query_params.multi_items())
        if "state" in params and not _fits_store_key(params["state"]):
            return self.error_page(request, "login_expired", 400)
        outcome = await self.service.callback(request.path_params["short_key"], params)
        return self._outcome(request, outcome)

    async def token(self, request: Request) -> Response:
        items = await _form(request)
        if items is None:
            return _oauth_error("invalid_request", "the token request must be an "
                                "application/x-www-form-urlencoded body of at most 16 KiB "
                                "in UTF-8", 400)
        try:
            answer = await self.service.token(request.path_params["short_key"], items,
                                              request.headers.getlist("authorization"))
        except SealError:  # a code no store key can be made of (empty, over-long)
            return _oauth_error("invalid_grant", "the code is invalid, expired or already used",
                                400)
        return JSONResponse(answer.body, answer.status, headers=answer.headers)

    async def par(self, request: Request) -> Response:
        """RFC 9126 §2: an app's pushed authorization request."""
        items = await _form(request)
        if items is None:
            return _oauth_error("invalid_request", "the pushed authorization request must be "
                                "an application/x-www-form-urlencoded body of at most 16 KiB "
                                "in UTF-8", 400)
        answer = await self.service.par(request.path_params["short_key"], items,
                                        request.headers.getlist("authorization"))
        return JSONResponse(answer.body, answer.status, headers=answer.headers)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def static_file(self, request: Request) -> Response:
        """The stylesheet and script below ``/static`` (StaticFiles' own path checks)."""
        scope = {**request.scope, "root_path": request.scope.get("root_path", "") + "/static"}
        try:
            return await _FILES.get_response(_FILES.get_path(scope), scope)
        except HTTPException:  # no such file
            return await self.not_found(request, None)

    # ---------------------------------------------------------------- error answers

    async def not_found(self, request: Request, exc: Exception | None) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": "not_found"}, 404)
        return self.error_page(request, "not_found", 404)

    async def method_not_allowed(self, request: Request, exc: Exception) -> Response:
        allowed = (exc.headers or {}).get("Allow", "") if isinstance(exc, HTTPException) else ""
        allow = ", ".join(sorted(m.strip() for m in allowed.split(",") if m.strip()))
        return JSONResponse({"error": "invalid_request", "error_description":  # RFC 9110 §15.5.6
                             "method not allowed"}, 405, headers={"allow": allow})

    async def store_unavailable(self, request: Request, exc: Exception) -> Response:
        """The transient store is full or cannot be reached: 503 with ``Retry-After``
        (RFC 9110 §15.6.4, §10.2.3) — OAuth ``temporarily_unavailable`` toward apps, a page
        toward people — never a 500. A sealed entry that cannot be opened (tampered, or under
        a key no longer held) is a login that cannot be continued instead."""
        if isinstance(exc, SealError):
            if _wants_json(request):
                return _oauth_error("invalid_grant",
                                    "the code is invalid, expired or already used", 400)
            return self.error_page(request, "login_expired", 400)
        retry = {"retry-after": str(RETRY_AFTER)}
        if _wants_json(request):
            return _oauth_error("temporarily_unavailable",
                                "the login service is busy; try again later", 503, retry)
        page = self.error_page(request, "temporarily_unavailable", 503)
        page.headers.update(retry)
        return page

    async def server_error(self, request: Request, exc: Exception) -> Response:
        """The last-resort answer: a friendly page or OAuth-style JSON with an incident id;
        the :class:`Guard` logs the exception's type under the same id."""
        incident = incident_id(request.scope)
        if _wants_json(request):
            return JSONResponse({"error": "server_error",
                                 "error_description": f"internal error, incident {incident}"},
                                500)
        return self.error_page(request, "server_error", 500, incident=incident)

    def refusal(self, scope: Scope, status: int, description: str) -> ASGIApp:
        """How :class:`HttpGuard` refuses a request (400, 408, 413, 415): OAuth JSON toward
        apps, a page toward people."""
        request = Request(scope)
        if _wants_json(request):
            return _oauth_error("invalid_request", description, status)
        return self.error_page(request, "request_timeout" if status == 408
                               else "invalid_request", status)

    def endpoints(self) -> dict[str, tuple[Endpoint, list[str]]]:
        """Per application: path below ``/<short-key>/`` → (endpoint, methods)."""
        return {
            "authorize": (self.authorize, _GET),
            "authorize/choose": (self.choose, _POST),
            "callback": (self.callback, _GET),
            "token": (self.token, _POST),
            "par": (self.par, _POST),
            ".well-known/openid-federation": (self.entity_configuration, _GET),
            ".well-known/openid-configuration": (self.discovery, _GET),
            ".well-known/oauth-authorization-server": (self.authorization_server_metadata,
                                                       _GET),
            "jwks": (self.jwks, _GET),
            "idps": (self.idps, _GET),
        }


Endpoint = Callable[[Request], Awaitable[Response]]
_GET = ["GET"]  # Starlette adds HEAD
_POST = ["POST"]
_FILES = StaticFiles(directory=_HERE / "static")
RETRY_AFTER = 30
"""Seconds a client is asked to wait when the transient store is full or unreachable."""
MAX_FORM_FIELDS = 32
MAX_STORE_KEY = 512
"""The longest ``tx``, ``state`` or code the transient store takes as a key."""


def _fits_store_key(value: str) -> bool:
    return 0 < len(value) <= MAX_STORE_KEY


def _oauth_error(error: str, description: str, status: int,
                 headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status,
                        headers={"cache-control": "no-store", **(headers or {})})


def _single(items: Iterable[tuple[str, Any]]) -> tuple[dict[str, str], frozenset[str]]:
    """Parameters by name, and the names that were given more than once."""
    out: dict[str, str] = {}
    dup: set[str] = set()
    for k, v in items:
        if not isinstance(v, str):
            continue
        if k in out:
            dup.add(k)
        out[k] = v
    return out, frozenset(dup)


async def _form(request: Request) -> Sequence[tuple[str, str]] | None:
    """An ``application/x-www-form-urlencoded`` body in order, repeats kept; ``None`` when
    the content type is another, or the body is larger than 16 KiB, has more than
    :data:`MAX_FORM_FIELDS` fields or is not UTF-8 (:class:`HttpGuard` has already bounded
    its size and the time it may take)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        return None
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return None
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, errors="strict",
                         max_num_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return None


class _Prefix(BaseRoute):
    """Another ASGI app at a path prefix (the demo app at ``/app``): the prefix itself and
    everything below it, with the path as it came (the app routes on full paths)."""

    def __init__(self, prefix: str, app: ASGIApp) -> None:
        self.prefix = prefix.rstrip("/")
        self.below = self.prefix + "/"
        self.app = app

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and (path == self.prefix or path.startswith(self.below)):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> Any:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        inner = {k: v for k, v in scope.items() if k not in ("app", "router", "endpoint")}
        await self.app(inner, receive, send)


def create_broker_app(web: BrokerWeb, mounts: Mapping[str, ASGIApp] | None = None,
                      *, hsts: bool = True, body_timeout: float = BODY_TIMEOUT,
                      limit: Callable[[ASGIApp], ASGIApp] | None = None) -> Guard:
    """The public role's ASGI app: Starlette routes with the 404/405/503/500 answers, behind
    the request checks of :class:`HttpGuard` and the headers of :class:`Guard`. ``limit``
    wraps the routes inside both (the rate limiter: its 429 answers get the same headers,
    and it counts only requests that passed the request checks).

    Paths match exactly (no trailing-slash redirects); anything else is a 404, a wrong
    method a 405 with ``Allow``. An exception in an endpoint becomes
    :meth:`BrokerWeb.server_error`'s answer and is re-raised for the :class:`Guard` to log
    (with the same incident id)."""
    routes: list[BaseRoute] = [_Prefix(prefix, app) for prefix, app in (mounts or {}).items()]
    routes += [Route("/{short_key}/" + path, endpoint, methods=methods)
               for path, (endpoint, methods) in web.endpoints().items()]
    routes += [Route("/.well-known/oauth-authorization-server/{short_key}",
                     web.authorization_server_metadata, methods=_GET),
               Route("/healthz", web.healthz, methods=_GET),
               Route("/static/{path:path}", web.static_file, methods=_GET)]
    app = Starlette(routes=routes, exception_handlers={
        404: web.not_found,
        405: web.method_not_allowed,
        StoreError: web.store_unavailable,
        Exception: web.server_error,
    })
    app.router.redirect_slashes = False
    inner: ASGIApp = app if limit is None else limit(app)

    async def application(short_key: str) -> AppConfig | None:
        return await web.service.application(short_key)

    cors = Cors(inner, application)  # single-page apps (web/cors.py)
    return Guard(HttpGuard(cors, body_timeout=body_timeout, refusal=web.refusal), hsts=hsts)
