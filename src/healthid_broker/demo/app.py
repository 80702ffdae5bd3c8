"""A small OIDC relying party ("Demo-App") that logs in through the broker.

It does what any app developer's backend does with an off-the-shelf OIDC library: discovery,
authorization code flow with PKCE, ``client_secret_basic`` at the token endpoint, and ID token
verification against the published JWKS. It keeps its pending logins in memory.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from ..crypto.jose import JWK, JoseError, parse_jws, verify_jws

_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
)

COOKIE = "demo_login"


@dataclass
class DemoClientConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    ca_file: str | None = None
    scope: str = (
        "openid urn:telematik:versicherter urn:telematik:display_name "
        "urn:telematik:given_name urn:telematik:family_name urn:telematik:geburtsdatum "
        "urn:telematik:email urn:telematik:geschlecht urn:telematik:alter"
    )


@dataclass
class _Pending:
    state: str
    nonce: str
    verifier: str
    lang: str = "de"
    created: float = field(default_factory=time.time)


class DemoApp:
    def __init__(self, cfg: DemoClientConfig, base_path: str = "/app") -> None:
        self.cfg = cfg
        self.base = base_path.rstrip("/")
        self._pending: dict[str, _Pending] = {}
        self._discovery: dict[str, Any] | None = None

    def _http(self) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=self.cfg.ca_file) if self.cfg.ca_file else True)
        return httpx.AsyncClient(verify=verify, timeout=10)

    async def discovery(self) -> dict[str, Any]:
        if self._discovery is None:
            async with self._http() as c:
                r = await c.get(self.cfg.issuer + "/.well-known/openid-configuration")
                r.raise_for_status()
                self._discovery = r.json()
        return self._discovery

    def _render(self, name: str, request: Request, lang: str | None = None,
                **ctx: Any) -> HTMLResponse:
        lang = lang or ("en" if request.query_params.get("lang") == "en" else "de")
        html = _env.get_template(name).render(lang=lang, base=self.base, **ctx)
        return HTMLResponse(html)

    async def index(self, request: Request) -> Response:
        return self._render("index.html", request)

    async def login(self, request: Request) -> Response:
        disc = await self.discovery()
        p = _Pending(secrets.token_urlsafe(24), secrets.token_urlsafe(24),
                     secrets.token_urlsafe(48),
                     "en" if request.query_params.get("lang") == "en" else "de")
        now = time.time()
        self._pending = {k: v for k, v in self._pending.items() if now - v.created < 600}
        handle = secrets.token_urlsafe(24)
        self._pending[handle] = p
        challenge = base64.urlsafe_b64encode(
            hashlib.sha256(p.verifier.encode()).digest()).rstrip(b"=").decode()
        params = {
            "response_type": "code", "client_id": self.cfg.client_id,
            "redirect_uri": self.cfg.redirect_uri, "scope": self.cfg.scope,
            "state": p.state, "nonce": p.nonce, "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if request.query_params.get("lang") == "en":
            params["ui_locales"] = "en"
        resp = RedirectResponse(disc["authorization_endpoint"] + "?" + urlencode(params), 302)
        resp.set_cookie(COOKIE, handle, max_age=600, httponly=True, samesite="lax",
                        path=self.base)
        return resp

    async def callback(self, request: Request) -> Response:
        handle = request.cookies.get(COOKIE, "")
        pending = self._pending.pop(handle, None)
        q = request.query_params
        lang = pending.lang if pending is not None else None
        if pending is None or q.get("state") != pending.state:
            return self._render("result.html", request, lang, error="state_mismatch", claims=None)
        if "error" in q:
            return self._render("result.html", request, lang, error=q.get("error"), claims=None)
        disc = await self.discovery()
        async with self._http() as c:
            r = await c.post(disc["token_endpoint"], data={
                "grant_type": "authorization_code", "code": q.get("code", ""),
                "redirect_uri": self.cfg.redirect_uri, "code_verifier": pending.verifier,
            }, auth=(self.cfg.client_id, self.cfg.client_secret))
            if r.status_code != 200:
                return self._render("result.html", request, lang,
                                    error=r.json().get("error", "token_error"), claims=None)
            tokens = r.json()
            jwks = (await c.get(disc["jwks_uri"])).json()
        try:
            parsed = parse_jws(tokens["id_token"])
            verify_jws(parsed, [JWK.from_dict(k) for k in jwks["keys"]])
            claims = parsed.payload_json()
        except (JoseError, KeyError):
            return self._render("result.html", request, lang, error="invalid_id_token", claims=None)
        if claims.get("nonce") != pending.nonce or claims.get("aud") != self.cfg.client_id \
                or claims.get("iss") != self.cfg.issuer:
            return self._render("result.html", request, lang, error="invalid_id_token", claims=None)
        return self._render("result.html", request, lang, error=None, claims=claims)


def create_demo_app(cfg: DemoClientConfig, base_path: str = "/app") -> Starlette:
    demo = DemoApp(cfg, base_path)
    b = demo.base
    return Starlette(routes=[
        Route(f"{b}/", demo.index),
        Route(f"{b}/login", demo.login),
        Route(f"{b}/callback", demo.callback),
    ])
