"""Test harness for end-to-end tests: the demo (sandbox + broker + demo app) in a thread.

The demo runs in a background thread with its own asyncio loop, so tests can drive it with
plain synchronous HTTP clients (httpx, Authlib) exactly like a browser and an app backend
would from outside. One demo per test module (module-scoped fixture in the conftest).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import threading
import time
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

from healthid_broker.demo.run import Demo, DemoConfig

T = TypeVar("T")

SLUGS = ("nordkasse", "suedkasse", "mittelland-bkk", "privat")


class DemoThread:
    """``Demo`` started on its own event loop in a daemon thread."""

    def __init__(self, cfg: DemoConfig) -> None:
        self.demo = Demo(cfg)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="e2e-demo")
        self.info: dict[str, Any] = {}

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> dict[str, Any]:
        self._thread.start()
        self.info = self.run(self.demo.start())
        return self.info

    def stop(self) -> None:
        try:
            self.run(self.demo.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()

    # -- conveniences ---------------------------------------------------------------

    def idp(self, slug: str) -> str:
        for e in self.info["idps"]:
            if e.rstrip("/").endswith("/" + slug):
                return str(e)
        raise KeyError(slug)

    def add_application(self, short_key: str, *, scopes: tuple[str, ...],
                        required_acr: str = "gematik-ehealth-loa-substantial") -> str:
        """A further application (tenant ``demo-diga``), registered at the sandbox master.

        Returns its issuer (= entity id)."""
        tenancy = self.demo.tenancy
        assert tenancy is not None
        now = time.time()
        tenancy.create_application("demo-diga", short_key, display_name=f"App {short_key}",
                                   organization_name="Test GmbH", scopes=scopes,
                                   required_acr=required_acr, now=now)
        issuer = f"{self.info['broker']}/{short_key}"
        self.demo.sandbox.register_entity(
            issuer, tenancy.application_keys(short_key, now).federation_jwks(),
            organization_name="Test GmbH", scopes=" ".join(scopes))
        self.invalidate()
        return issuer

    def add_client(self, short_key: str, *, auth_method: str, redirect_uris: list[str],
                   scopes: list[str] | None = None, jwks: dict[str, Any] | None = None,
                   id_token_alg: str = "ES256") -> tuple[str, str | None]:
        tenancy = self.demo.tenancy
        assert tenancy is not None
        created = tenancy.create_client(
            short_key, auth_method=auth_method, redirect_uris=redirect_uris, now=time.time(),
            name=f"c-{secrets.token_hex(4)}", scopes=scopes, jwks=jwks,
            id_token_alg=id_token_alg)
        self.invalidate()
        return created.client.client_id, created.secret

    def invalidate(self) -> None:
        rt = self.demo.runtime
        assert rt is not None
        self._loop.call_soon_threadsafe(rt.directory.invalidate)
        time.sleep(0.05)


# ------------------------------------------------------------------------- browser


_TX_RE = re.compile(r'name="tx" value="([^"]+)"')
_HIDDEN_RE = re.compile(r'<input type="hidden" name="([a-z_]+)" value="([^"]*)"')


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query, keep_blank_values=True).items()}


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass
class BrowserResult:
    """Where the broker finally sent the browser back to the application."""

    location: str
    params: dict[str, str]


class LoginAborted(AssertionError):
    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"login stopped at {response.request.url.path} with "
                         f"HTTP {response.status_code}")
        self.response = response


def browser_login(authorize_url: str, redirect_uri: str, *, idp: str | None,
                  kvnr: str | None, action: str = "approve", max_steps: int = 12,
                  verify: Any = True) -> BrowserResult:
    """Follow a login like a browser: broker chooser (choose ``idp`` when shown), the
    sandbox IdP's person picker (choose ``kvnr``) or its auto_person redirect, the
    broker's callback, until a redirect to ``redirect_uri``. ``verify``: as for httpx
    (the local CA when the demo serves its pages on https)."""
    with httpx.Client(follow_redirects=False, timeout=20, verify=verify) as b:
        r = b.get(authorize_url)
        for _ in range(max_steps):
            if r.status_code in (302, 303):
                loc = urljoin(str(r.request.url), r.headers["location"])
                if loc.startswith(redirect_uri):
                    return BrowserResult(loc, query(loc))
                r = b.get(loc)
                continue
            if r.status_code != 200:
                raise LoginAborted(r)
            m = _TX_RE.search(r.text)
            if m is not None and 'name="idp"' in r.text:  # the broker's hosted chooser
                assert idp is not None, "the chooser was shown but no idp given"
                action_url = re.search(r'<form method="post" action="([^"]+)"', r.text)
                assert action_url is not None
                r = b.post(action_url.group(1), data={"tx": m.group(1), "idp": idp})
                continue
            if 'name="kvnr"' in r.text:  # the sandbox IdP's person picker
                assert kvnr is not None, "the person picker was shown but no kvnr given"
                fields = dict(_HIDDEN_RE.findall(r.text))
                form = re.search(r'<form method="post" action="([^"]+)"', r.text)
                assert form is not None
                fields.update({"kvnr": kvnr, "action": action})
                r = b.post(form.group(1).replace("&amp;", "&"), data=fields)
                continue
            raise LoginAborted(r)
    raise AssertionError("too many redirects")


def authorize_url(info: Mapping[str, Any], params: Mapping[str, str],
                  issuer: str | None = None) -> str:
    short_key = (issuer or info["issuer"]).rstrip("/").rsplit("/", 1)[1]
    return f"{info['broker_browser_base']}/{short_key}/authorize?{urlencode(params)}"


def data_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


# ------------------------------------------------------------------------- app side


def ca_context(info: Mapping[str, Any]) -> Any:
    import ssl

    return ssl.create_default_context(cafile=info["ca_cert"])


def discovery(info: Mapping[str, Any], issuer: str | None = None) -> dict[str, Any]:
    iss = issuer or info["issuer"]
    r = httpx.get(f"{iss}/.well-known/openid-configuration", verify=ca_context(info))
    r.raise_for_status()
    doc: dict[str, Any] = r.json()
    return doc


def published_jwks(info: Mapping[str, Any], issuer: str | None = None) -> dict[str, Any]:
    r = httpx.get(discovery(info, issuer)["jwks_uri"], verify=ca_context(info))
    r.raise_for_status()
    doc: dict[str, Any] = r.json()
    return doc


def verify_id_token(info: Mapping[str, Any], id_token: str, *, client_id: str, nonce: str,
                    access_token: str | None = None, issuer: str | None = None,
                    ) -> dict[str, Any]:
    """Authlib's own OIDC ID-token validation (authlib.jose + authlib.oidc.core):
    ES256 signature against the published JWKS, iss, aud, nonce, exp/iat, at_hash."""
    from authlib.jose import JsonWebKey, jwt
    from authlib.oidc.core import CodeIDToken

    iss = issuer or info["issuer"]
    keys = JsonWebKey.import_key_set(published_jwks(info, iss))
    claims = jwt.decode(
        id_token, keys, claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": iss},
                        "aud": {"essential": True, "value": client_id},
                        "nonce": {"essential": True, "value": nonce}},
        claims_params={"nonce": nonce, "client_id": client_id,
                       "access_token": access_token})
    claims.validate(leeway=5)
    return dict(claims)
