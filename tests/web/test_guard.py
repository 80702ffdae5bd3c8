"""The outermost middleware and the last-resort handler: security headers everywhere, and an
unhandled exception becomes a generic answer with an incident id that echoes nothing (no
stack trace, no input, no personal data) — a page for people, JSON for API clients."""

from __future__ import annotations

import logging
import re
from typing import Any

import anyio
import httpx
import pytest

from healthid_broker.web.broker_app import BrokerWeb, Urls, create_broker_app

SECRET = "A123456780 Anna Schäfer anna.schaefer@example.org"


class _ExplodingService:
    async def application(self, short_key: str) -> Any:
        raise RuntimeError(f"failed for {SECRET}")


class _Client:
    """Synchronous calls into the ASGI app through httpx's ASGI transport (no sockets)."""

    def __init__(self, base_url: str) -> None:
        web = BrokerWeb(_ExplodingService(),  # type: ignore[arg-type]
                        Urls("https://b.example", "https://b.example"))
        self.transport = httpx.ASGITransport(create_broker_app(web), raise_app_exceptions=False)
        self.base_url = base_url

    def get(self, path: str, **kw: Any) -> httpx.Response:
        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=self.transport, base_url=self.base_url) as c:
                return await c.get(path, **kw)

        return anyio.run(go)


def _client(base_url: str = "http://testserver") -> _Client:
    return _Client(base_url)


def _assert_clean(text: str) -> None:
    for leak in ("A123456780", "Schäfer", "example.org", "Traceback", "RuntimeError("):
        assert leak not in text


def test_api_error_is_generic_json_with_incident(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    r = _client().get("/app/jwks")
    assert r.status_code == 500
    body = r.json()
    assert body["error"] == "server_error"
    incident = re.search(r"incident ([0-9a-f]{12})", body["error_description"])
    assert incident is not None
    _assert_clean(r.text)
    _assert_clean(caplog.text)
    assert f"unhandled RuntimeError on /app/jwks (incident {incident.group(1)})" in caplog.text
    assert r.headers["x-content-type-options"] == "nosniff"  # headers on errors too
    assert r.headers["cache-control"] == "no-store"


def test_page_error_is_friendly_german_by_default() -> None:
    r = _client().get("/app/.well-known/openid-federation", headers={"accept": "text/html"})
    assert r.status_code == 500
    assert "text/html" in r.headers["content-type"]
    assert "Ein interner Fehler ist aufgetreten" in r.text
    assert re.search(r"[0-9a-f]{12}", r.text)
    _assert_clean(r.text)


def test_security_headers_and_hsts_only_over_https() -> None:
    plain = _client().get("/healthz")
    assert plain.status_code == 200
    assert "strict-transport-security" not in plain.headers
    assert plain.headers["content-security-policy"].startswith("default-src 'none'")
    assert plain.headers["x-frame-options"] == "DENY"
    assert plain.headers["referrer-policy"] == "no-referrer"
    tls = _client("https://testserver").get("/healthz")
    assert tls.headers["strict-transport-security"].startswith("max-age=31536000")
