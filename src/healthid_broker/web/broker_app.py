"""HTTP surface of the broker's public role: per application, the federation entity
(toward the IdPs) and the OpenID Provider (toward the apps).

``<public_base>/<short-key>`` is the entity id and the OIDC issuer. Server-to-server
endpoints are under the public (https) base; the pages people see (authorize, chooser,
callback) under the browser base, which is the same URL in production and loopback http in
the demo (docs/decisions/0001-sandbox-tls-and-loopback.md).
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.responses import JSONResponse as _StarletteJSONResponse
from starlette.staticfiles import StaticFiles

from .. import fastjson
from ..federation.statements import ENTITY_STATEMENT_CONTENT_TYPE
from ..http.forms import parse_qsl
from ..provider.claims import SCOPE_CLAIMS
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
from .i18n import ERRORS, TEXTS, pick_language
from .security import CSP, ASGIApp, Guard, Receive, Scope, Send, incident_id

_HERE = Path(__file__).parent
_env = Environment(
    loader=FileSystemLoader(_HERE / "templates"), autoescape=select_autoescape(["html"])
)
ENTITY_CONFIGURATION_MAX_AGE = 600


class JSONResponse(_StarletteJSONResponse):
    """Starlette's JSON answer, rendered by :mod:`healthid_broker.fastjson`."""

    def render(self, content: Any) -> bytes:
        return fastjson.dumps(content)


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


# what Starlette's RedirectResponse leaves as it is (urllib's always-safe characters and its
# ``safe`` argument)
_URL_AS_IS = re.compile(r"[A-Za-z0-9_.\-~:/%#?=@\[\]!$&'()*+,;]*")


def redirect(url: str) -> Response:
    """``RedirectResponse(url, 302)`` — without its per-character quoting pass when the URL
    needs none (ours are built with the form encoder; this is on every login's path)."""
    if _URL_AS_IS.fullmatch(url):
        response = Response(status_code=302)
        response.headers["location"] = url
        return response
    return RedirectResponse(url, status_code=302)


_ORIGIN = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def chooser_csp(logo_uris: list[str | None]) -> str:
    """The chooser page's CSP (T-21): the site-wide policy, with ``img-src`` widened by exactly
    the origins of the IdP logos shown (the IdP list only carries https logos,
    upstream/idp_list.py), so the insurers' logos are not blocked by ``img-src 'self'``."""
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
        return CSP
    return CSP.replace("img-src 'self' data:", "img-src 'self' data: " + " ".join(origins), 1)


def _wants_json(request: Request) -> bool:
    """API paths and clients that ask for JSON get JSON errors; people get pages."""
    return request.url.path.endswith(("/token", "/jwks", "/idps")) or \
        "json" in request.headers.get("accept", "")


MAX_FORM_BYTES = 16 * 1024  # a token request is a few hundred bytes
MAX_FORM_FIELDS = 32


async def _urlencoded_body(request: Request) -> list[tuple[str, str]] | None:
    """The ``application/x-www-form-urlencoded`` body in order, repeats kept; ``None`` when
    it is larger than :data:`MAX_FORM_BYTES`, has too many fields or is not UTF-8."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return None
    try:
        return parse_qsl(body.decode("utf-8"), errors="strict", max_fields=MAX_FORM_FIELDS)
    except (UnicodeDecodeError, ValueError):
        return None


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


def _query(request: Request) -> Iterable[tuple[str, str]]:
    return parse_qsl(request.scope["query_string"].decode("latin-1"))


class BrokerWeb:
    def __init__(self, service: ProviderService, urls: Urls, *, sandbox: bool = False,
                 clock: Callable[[], float] = time.time) -> None:
        self.service = service
        self.urls = urls
        self.sandbox = sandbox
        self.clock = clock

    # ---------------------------------------------------------------- rendering

    def _lang(self, request: Request, hint: str | None = None) -> str:
        q = dict(request.query_params)
        if hint in ("de", "en") and "lang" not in q:
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
            return redirect(outcome.url)
        if isinstance(outcome, ErrorPage):
            return self.error_page(request, outcome.code, outcome.status, outcome.back_url)
        assert isinstance(outcome, ShowChooser)
        lang = self._lang(request, outcome.lang)
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
        page.headers["content-security-policy"] = chooser_csp([i.logo_uri for i in outcome.idps])
        return page

    # ---------------------------------------------------------------- endpoints

    async def _app_or_404(self, request: Request) -> AppConfig | None:
        app: AppConfig | None = await self.service._app(request.path_params["short_key"])
        return app

    async def entity_configuration(self, request: Request) -> Response:
        app = await self._app_or_404(request)
        if app is None:
            return JSONResponse({"error": "not_found"}, 404)
        token = sign_entity_configuration(app.entity, now=int(self.clock()))
        return Response(token, media_type=ENTITY_STATEMENT_CONTENT_TYPE, headers={
            "cache-control": f"public, max-age={ENTITY_CONFIGURATION_MAX_AGE}"})

    async def discovery(self, request: Request) -> Response:
        app = await self._app_or_404(request)
        if app is None:
            return JSONResponse({"error": "not_found"}, 404)
        sk = app.short_key
        claims = sorted({c for s in app.scopes for c in SCOPE_CLAIMS.get(s, ())}
                        | {"sub", "iss", "aud", "exp", "iat", "nonce", "acr", "amr",
                           "auth_time", "azp", "at_hash"})
        doc = {
            "issuer": app.issuer,
            "authorization_endpoint": self.urls.browser(sk, "authorize"),
            "token_endpoint": self.urls.public(sk, "token"),
            "jwks_uri": self.urls.public(sk, "jwks"),
            "idp_list_endpoint": self.urls.public(sk, "idps"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "id_token_encryption_alg_values_supported": ["ECDH-ES"],
            "id_token_encryption_enc_values_supported": ["A256GCM"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic", "private_key_jwt", "none"],
            "token_endpoint_auth_signing_alg_values_supported": ["ES256"],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": sorted(app.scopes),
            "claims_supported": claims,
            "acr_values_supported": [ACR_HIGH, ACR_SUBSTANTIAL],
            "ui_locales_supported": ["de", "en"],
            "authorization_response_iss_parameter_supported": True,
            "claims_parameter_supported": False,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
        }
        return JSONResponse(doc, headers={"cache-control": "public, max-age=300"})

    async def jwks(self, request: Request) -> Response:
        app = await self._app_or_404(request)
        if app is None:
            return JSONResponse({"error": "not_found"}, 404)
        return JSONResponse({"keys": [k.public_dict() for k in app.provider_jwks]},
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

    async def authorize(self, request: Request) -> Response:
        params, dup = _single(_query(request))
        outcome = await self.service.authorize(request.path_params["short_key"], params,
                                               duplicated=dup)
        return self._outcome(request, outcome)

    async def choose(self, request: Request) -> Response:
        form = await request.form()
        params, _dup = _single(form.multi_items())
        outcome = await self.service.choose(
            request.path_params["short_key"], params.get("tx", ""), params.get("idp", ""),
            params.get("lang"))
        return self._outcome(request, outcome)

    async def callback(self, request: Request) -> Response:
        params, _dup = _single(_query(request))
        outcome = await self.service.callback(request.path_params["short_key"], params)
        return self._outcome(request, outcome)

    async def token(self, request: Request) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return JSONResponse({"error": "invalid_request", "error_description":
                                 "the token request must be application/x-www-form-urlencoded"},
                                400, headers={"cache-control": "no-store"})
        items = await _urlencoded_body(request)
        if items is None:
            return JSONResponse({"error": "invalid_request", "error_description":
                                 "the token request body is too large or not valid UTF-8"},
                                400, headers={"cache-control": "no-store"})
        answer = await self.service.token(request.path_params["short_key"], items,
                                          request.headers.getlist("authorization"))
        return JSONResponse(answer.body, answer.status, headers=answer.headers)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def not_found(self, request: Request) -> Response:
        if _wants_json(request):
            return JSONResponse({"error": "not_found"}, 404)
        return self.error_page(request, "not_found", 404)

    async def server_error(self, request: Request) -> Response:
        """The last-resort answer: a friendly page or OAuth-style JSON with an incident id;
        the :class:`Guard` logs the exception's type under the same id."""
        incident = incident_id(request.scope)
        if _wants_json(request):
            return JSONResponse({"error": "server_error",
                                 "error_description": f"internal error, incident {incident}"},
                                500)
        return self.error_page(request, "server_error", 500, incident=incident)

    async def method_not_allowed(self, request: Request, allowed: frozenset[str]) -> Response:
        return JSONResponse({"error": "invalid_request",
                             "error_description": "method not allowed"}, 405,
                            headers={"allow": ", ".join(sorted(allowed))})  # RFC 9110 §15.5.6

    def endpoints(self) -> dict[str, tuple[Endpoint, frozenset[str]]]:
        """Per application: path below ``/<short-key>/`` → (endpoint, methods)."""
        return {
            "authorize": (self.authorize, _GET),
            "callback": (self.callback, _GET),
            "token": (self.token, _POST),
            "authorize/choose": (self.choose, _POST),
            ".well-known/openid-federation": (self.entity_configuration, _GET),
            ".well-known/openid-configuration": (self.discovery, _GET),
            "jwks": (self.jwks, _GET),
            "idps": (self.idps, _GET),
        }


Endpoint = Callable[[Request], Awaitable[Response]]
_GET = frozenset({"GET", "HEAD"})
_POST = frozenset({"POST"})


class BrokerApp:
    """The public role's routing: one table lookup per request.

    ``/<short-key>/<endpoint>`` for every application (:meth:`BrokerWeb.endpoints`),
    ``/healthz``, the stylesheet and script under ``/static``, and optionally other ASGI apps
    under their own path prefix (the demo app under ``/app``), which take precedence. Paths
    match exactly (no trailing-slash redirects); anything else is a 404, a wrong method a
    405 with ``Allow``. An exception in an endpoint becomes :meth:`BrokerWeb.server_error`'s
    answer and is re-raised for the :class:`Guard` to log (with the same incident id).

    A dictionary lookup instead of a router that tries a regular expression per route and a
    middleware stack of its own: the three requests of every login pass through here, and
    this path is part of the broker's CPU per login (docs/performance.md).
    """

    def __init__(self, web: BrokerWeb, mounts: Mapping[str, ASGIApp] | None = None) -> None:
        self.web = web
        self._per_app = web.endpoints()
        self._plain: dict[str, tuple[Endpoint, frozenset[str]]] = {
            "/healthz": (web.healthz, _GET)}
        self._mounts = [(prefix.rstrip("/"), app) for prefix, app in (mounts or {}).items()]
        self._files = StaticFiles(directory=_HERE / "static")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no websockets; lifespan events are not used
        path: str = scope["path"]
        route = self._plain.get(path)
        if route is None:
            for prefix, app in self._mounts:
                if path == prefix or path.startswith(prefix + "/"):
                    await app(scope, receive, send)
                    return
            short_key, slash, rest = path[1:].partition("/")
            if slash and short_key:
                route = self._per_app.get(rest)
                scope["path_params"] = {"short_key": short_key}
            if route is None and path.startswith("/static/"):
                route = (self._static_file, _GET)
        request = Request(scope, receive)
        try:
            if route is None:
                response = await self.web.not_found(request)
            elif scope["method"] not in route[1]:
                response = await self.web.method_not_allowed(request, route[1])
            else:
                response = await route[0](request)
        except Exception:
            await (await self.web.server_error(request))(scope, receive, send)
            raise  # the Guard logs it under the incident id the answer names
        await response(scope, receive, send)

    async def _static_file(self, request: Request) -> Response:
        """The stylesheet and script below ``/static`` (StaticFiles' own path checks)."""
        scope = {**request.scope, "root_path": request.scope.get("root_path", "") + "/static"}
        try:
            return await self._files.get_response(self._files.get_path(scope), scope)
        except HTTPException:  # no such file
            return await self.web.not_found(request)


def create_broker_app(web: BrokerWeb, mounts: Mapping[str, ASGIApp] | None = None,
                      *, hsts: bool = True) -> Guard:
    """The public role's ASGI app: routes, 404/405 answers, security headers, error guard."""
    return Guard(BrokerApp(web, mounts), hsts=hsts)
