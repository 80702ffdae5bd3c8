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
from urllib.parse import quote, urlencode, urlsplit

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, Response
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


class RawResponse:
    """A complete answer as two ASGI messages, its headers already encoded: what Starlette's
    ``Response`` sends, without building one (header encoding, ``MutableHeaders``) — every
    login's three answers take this path. Same data attributes as Starlette's ``Response``."""

    __slots__ = ("body", "raw_headers", "status_code")

    def __init__(self, status_code: int, raw_headers: list[tuple[bytes, bytes]],
                 body: bytes = b"") -> None:
        self.status_code = status_code
        self.raw_headers = raw_headers
        self.body = body

    @property
    def headers(self) -> MutableHeaders:
        return MutableHeaders(raw=self.raw_headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code,
                    "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


Answer = Response | RawResponse

_JSON_TYPE = (b"content-type", b"application/json")


def json_response(content: Any, status: int = 200,
                  headers: Mapping[str, str] | None = None) -> RawResponse:
    """Starlette's ``JSONResponse(content, status, headers)`` — the same headers in the same
    order — with the body rendered by :mod:`healthid_broker.fastjson`."""
    body = fastjson.dumps(content)
    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()] \
        if headers else []
    if status >= 200 and status not in (204, 304) and all(
            k != b"content-length" for k, _v in raw):
        raw.append((b"content-length", b"%d" % len(body)))
    if all(k != b"content-type" for k, _v in raw):
        raw.append(_JSON_TYPE)
    return RawResponse(status, raw, body)


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


_LOCATION_SAFE = ":/%#?=@[]!$&'()*+,;"  # RedirectResponse's ``safe``
_EMPTY_LENGTH = (b"content-length", b"0")


def redirect(url: str) -> RawResponse:
    """What ``RedirectResponse(url, 302)`` sends — without its per-character quoting pass
    when the URL needs none (ours are built with the form encoder; this is on every login's
    path)."""
    location = url if _URL_AS_IS.fullmatch(url) else quote(url, safe=_LOCATION_SAFE)
    return RawResponse(302, [_EMPTY_LENGTH, (b"location", location.encode("latin-1"))])


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


async def _urlencoded_body(receive: Receive) -> list[tuple[str, str]] | None:
    """The ``application/x-www-form-urlencoded`` body in order, repeats kept; ``None`` when
    it is larger than :data:`MAX_FORM_BYTES`, has too many fields or is not UTF-8. A client
    that goes away raises :class:`ClientDisconnect`, as Starlette's ``Request.stream``."""
    body = b""
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "http.request":
            body += message.get("body", b"")
            if len(body) > MAX_FORM_BYTES:
                return None
            if not message.get("more_body", False):
                break
        elif kind == "http.disconnect":
            raise ClientDisconnect()
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


def _query(scope: Scope) -> tuple[dict[str, str], frozenset[str]]:
    """:func:`_single` of the query string."""
    items = parse_qsl(scope["query_string"].decode("latin-1"))
    params = dict(items)
    if len(params) == len(items):  # no name repeated (the common case): no loop of ours
        return params, frozenset()
    return _single(items)


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

    def _outcome(self, request: Request, outcome: Outcome) -> Answer:
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
        app: AppConfig | None = await self.service.application(request.path_params["short_key"])
        return app

    async def entity_configuration(self, request: Request) -> Answer:
        app = await self._app_or_404(request)
        if app is None:
            return json_response({"error": "not_found"}, 404)
        token = sign_entity_configuration(app.entity, now=int(self.clock()))
        return Response(token, media_type=ENTITY_STATEMENT_CONTENT_TYPE, headers={
            "cache-control": f"public, max-age={ENTITY_CONFIGURATION_MAX_AGE}"})

    async def discovery(self, request: Request) -> Answer:
        app = await self._app_or_404(request)
        if app is None:
            return json_response({"error": "not_found"}, 404)
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
        return json_response(doc, headers={"cache-control": "public, max-age=300"})

    async def jwks(self, request: Request) -> Answer:
        app = await self._app_or_404(request)
        if app is None:
            return json_response({"error": "not_found"}, 404)
        return json_response({"keys": [k.public_dict() for k in app.provider_jwks]},
                             headers={"cache-control": "public, max-age=300"})

    async def idps(self, request: Request) -> Answer:
        """Gateway mode: the verified IdP list, for apps that render their own chooser."""
        app = await self._app_or_404(request)
        if app is None:
            return json_response({"error": "not_found"}, 404)
        try:
            entries = await self.service.upstream.idps()
        except UpstreamError:
            return json_response({"error": "temporarily_unavailable",
                                  "error_description": "the federation's IdP list is unavailable"},
                                 503)
        return json_response({"idps": [
            {"idp_hint": e.iss, "organization_name": e.organization_name,
             "logo_uri": e.logo_uri, "pkv": e.pkv} for e in entries]},
            headers={"cache-control": "public, max-age=300"})

    # authorize, callback and token (every login's three requests) read the ASGI scope
    # directly; a Starlette Request is built only for the rare answers that need one

    async def authorize(self, scope: Scope, receive: Receive) -> Answer:
        params, dup = _query(scope)
        outcome = await self.service.authorize(scope["path_params"]["short_key"], params,
                                               duplicated=dup)
        if isinstance(outcome, Redirect):
            return redirect(outcome.url)
        return self._outcome(Request(scope, receive), outcome)

    async def choose(self, request: Request) -> Answer:
        form = await request.form()
        params, _dup = _single(form.multi_items())
        outcome = await self.service.choose(
            request.path_params["short_key"], params.get("tx", ""), params.get("idp", ""),
            params.get("lang"))
        return self._outcome(request, outcome)

    async def callback(self, scope: Scope, receive: Receive) -> Answer:
        params, _dup = _query(scope)
        outcome = await self.service.callback(scope["path_params"]["short_key"], params)
        if isinstance(outcome, Redirect):
            return redirect(outcome.url)
        return self._outcome(Request(scope, receive), outcome)

    async def token(self, scope: Scope, receive: Receive) -> Answer:
        # Starlette's headers.get (the first one) and headers.getlist, on the raw list
        content_type: bytes | None = None
        authorization: list[str] = []
        for name, value in scope["headers"]:
            if name == b"content-type":
                if content_type is None:
                    content_type = value
            elif name == b"authorization":
                authorization.append(value.decode("latin-1"))
        ctype = (content_type or b"").decode("latin-1").split(";")[0].strip().lower()
        if ctype != "application/x-www-form-urlencoded":
            return json_response({"error": "invalid_request", "error_description":
                                  "the token request must be application/x-www-form-urlencoded"},
                                 400, headers={"cache-control": "no-store"})
        items = await _urlencoded_body(receive)
        if items is None:
            return json_response({"error": "invalid_request", "error_description":
                                  "the token request body is too large or not valid UTF-8"},
                                 400, headers={"cache-control": "no-store"})
        answer = await self.service.token(scope["path_params"]["short_key"], items,
                                          authorization)
        return json_response(answer.body, answer.status, headers=answer.headers)

    async def healthz(self, scope: Scope, receive: Receive) -> Answer:
        return json_response({"status": "ok"})

    async def not_found(self, request: Request) -> Answer:
        if _wants_json(request):
            return json_response({"error": "not_found"}, 404)
        return self.error_page(request, "not_found", 404)

    async def server_error(self, request: Request) -> Answer:
        """The last-resort answer: a friendly page or OAuth-style JSON with an incident id;
        the :class:`Guard` logs the exception's type under the same id."""
        incident = incident_id(request.scope)
        if _wants_json(request):
            return json_response({"error": "server_error",
                                  "error_description": f"internal error, incident {incident}"},
                                 500)
        return self.error_page(request, "server_error", 500, incident=incident)

    async def method_not_allowed(self, request: Request, allowed: frozenset[str]) -> Answer:
        return json_response({"error": "invalid_request",
                              "error_description": "method not allowed"}, 405,
                             headers={"allow": ", ".join(sorted(allowed))})  # RFC 9110 §15.5.6

    def endpoints(self) -> dict[str, tuple[Endpoint | Asgi, frozenset[str]]]:
        """Per application: path below ``/<short-key>/`` → (endpoint, methods)."""
        return {
            "authorize": (Asgi(self.authorize), _GET),
            "callback": (Asgi(self.callback), _GET),
            "token": (Asgi(self.token), _POST),
            "authorize/choose": (self.choose, _POST),
            ".well-known/openid-federation": (self.entity_configuration, _GET),
            ".well-known/openid-configuration": (self.discovery, _GET),
            "jwks": (self.jwks, _GET),
            "idps": (self.idps, _GET),
        }


Endpoint = Callable[[Request], Awaitable[Answer]]
AsgiEndpoint = Callable[[Scope, Receive], Awaitable[Answer]]
_GET = frozenset({"GET", "HEAD"})
_POST = frozenset({"POST"})


@dataclass(frozen=True)
class Asgi:
    """In :meth:`BrokerWeb.endpoints`: an endpoint that takes the ASGI scope and receive
    channel instead of a Starlette ``Request``."""

    endpoint: AsgiEndpoint


def _asgi(endpoint: Endpoint | Asgi) -> AsgiEndpoint:
    """Every route as an :data:`AsgiEndpoint`; a ``Request`` only for those that take one."""
    if isinstance(endpoint, Asgi):
        return endpoint.endpoint

    def with_request(scope: Scope, receive: Receive) -> Awaitable[Answer]:
        return endpoint(Request(scope, receive))

    return with_request


class BrokerApp:
    """The public role's routing: one table lookup per request.

    ``/<short-key>/<endpoint>`` for every application (:meth:`BrokerWeb.endpoints`),
    ``/healthz``, the stylesheet and script under ``/static``, and optionally other ASGI apps
    under their own path prefix (the demo app under ``/app``), which take precedence. Paths
    match exactly (no trailing-slash redirects); anything else is a 404, a wrong method a
    405 with ``Allow``. An exception in an endpoint becomes :meth:`BrokerWeb.server_error`'s
    answer and is re-raised for the :class:`Guard` to log (with the same incident id).

    A dictionary lookup instead of a router that tries a regular expression per route and a
    middleware stack of its own, and no Starlette ``Request`` unless the endpoint (or a
    404/405/500 answer) takes one: the three requests of every login pass through here, and
    this path is part of the broker's CPU per login (docs/performance.md).
    """

    def __init__(self, web: BrokerWeb, mounts: Mapping[str, ASGIApp] | None = None) -> None:
        self.web = web
        self._per_app = {path: (_asgi(endpoint), methods)
                         for path, (endpoint, methods) in web.endpoints().items()}
        self._plain: dict[str, tuple[AsgiEndpoint, frozenset[str]]] = {
            "/healthz": (web.healthz, _GET)}
        self._static = (_asgi(self._static_file), _GET)
        self._mounts: list[tuple[str, str, ASGIApp]] = []
        for prefix, app in (mounts or {}).items():
            p = prefix.rstrip("/")
            self._mounts.append((p, p + "/", app))  # the prefix itself, and below it
        self._files = StaticFiles(directory=_HERE / "static")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # no websockets; lifespan events are not used
        path: str = scope["path"]
        route = self._plain.get(path)
        if route is None:
            for prefix, below, app in self._mounts:
                if path == prefix or path.startswith(below):
                    await app(scope, receive, send)
                    return
            short_key, slash, rest = path[1:].partition("/")
            if slash and short_key:
                route = self._per_app.get(rest)
                scope["path_params"] = {"short_key": short_key}
            if route is None and path.startswith("/static/"):
                route = self._static
        try:
            if route is None:
                response = await self.web.not_found(Request(scope, receive))
            elif scope["method"] not in route[1]:
                response = await self.web.method_not_allowed(Request(scope, receive), route[1])
            else:
                response = await route[0](scope, receive)
        except Exception:
            await (await self.web.server_error(Request(scope, receive)))(scope, receive, send)
            raise  # the Guard logs it under the incident id the answer names
        await response(scope, receive, send)

    async def _static_file(self, request: Request) -> Answer:
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
