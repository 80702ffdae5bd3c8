"""The broker's public routing (web.broker_app.BrokerApp): exact paths per application, 404
and 405 answers, HEAD, static files, and mounted apps taking precedence — driven through the
real ASGI app with httpx's ASGI transport (no sockets)."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from healthid_broker.web.broker_app import BrokerWeb, Urls, create_broker_app


class _Web(BrokerWeb):
    """Every per-application endpoint answers with its own name and the short key."""

    def __init__(self) -> None:
        super().__init__(None, Urls("https://b.example", "https://b.example"))  # type: ignore[arg-type]

    def endpoints(self) -> dict[str, Any]:
        table = super().endpoints()

        def echo(name: str) -> Any:
            async def endpoint(request: Request) -> Response:
                return PlainTextResponse(f"{name} {request.path_params['short_key']}")
            return endpoint

        return {path: (echo(path), methods) for path, (_e, methods) in table.items()}


async def _mounted(scope: Any, receive: Any, send: Any) -> None:
    await PlainTextResponse(f"mounted {scope['path']}")(scope, receive, send)


def _request(method: str, path: str, **kw: Any) -> httpx.Response:
    app = create_broker_app(_Web(), {"/app": _mounted})

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as c:
            return await c.request(method, path, **kw)

    return anyio.run(go)


@pytest.mark.parametrize(("method", "path", "answer"), [
    ("GET", "/demo/authorize", "authorize demo"),
    ("GET", "/demo/callback", "callback demo"),
    ("POST", "/demo/token", "token demo"),
    ("POST", "/x-1/authorize/choose", "authorize/choose x-1"),
    ("GET", "/demo/.well-known/openid-federation", ".well-known/openid-federation demo"),
    ("GET", "/demo/.well-known/openid-configuration", ".well-known/openid-configuration demo"),
    ("GET", "/demo/jwks", "jwks demo"),
    ("GET", "/demo/idps", "idps demo"),
    # a short key that looks like a prefix of ours is still a short key
    ("GET", "/static/jwks", "jwks static"),
])
def test_endpoints_per_application(method: str, path: str, answer: str) -> None:
    r = _request(method, path)
    assert r.status_code == 200
    assert r.text == answer


@pytest.mark.parametrize("path", [
    "/", "/demo", "/demo/", "/demo/jwks/", "/demo/nope", "/a/demo/jwks", "//jwks",
    "/demo/authorize/choose/x", "/static/", "/static/nope.css", "/healthz/",
])
def test_everything_else_is_404(path: str) -> None:
    r = _request("GET", path)
    assert r.status_code == 404
    assert r.headers["x-content-type-options"] == "nosniff"  # the Guard's headers too


def test_404_is_json_for_api_paths_and_a_page_otherwise() -> None:
    assert _request("GET", "/demo/nope/token").json() == {"error": "not_found"}
    page = _request("GET", "/nope", headers={"accept": "text/html"})
    assert page.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize(("method", "path", "allow"), [
    ("GET", "/demo/token", "POST"),
    ("POST", "/demo/authorize", "GET, HEAD"),
    ("DELETE", "/demo/jwks", "GET, HEAD"),
    ("POST", "/healthz", "GET, HEAD"),
    ("POST", "/static/broker.css", "GET, HEAD"),
])
def test_wrong_method_is_405_with_allow(method: str, path: str, allow: str) -> None:
    r = _request(method, path)
    assert r.status_code == 405
    assert r.headers["allow"] == allow
    assert r.json()["error"] == "invalid_request"


def test_head_on_get_endpoints() -> None:
    r = _request("HEAD", "/demo/jwks")
    assert r.status_code == 200
    assert r.content == b""


def test_mounted_app_takes_precedence() -> None:
    # "/app/callback" would otherwise be the callback of an application named "app"
    assert _request("GET", "/app/callback").text == "mounted /app/callback"
    assert _request("GET", "/app").text == "mounted /app"
    assert _request("GET", "/apps/callback").text == "callback apps"


def test_static_files_and_healthz() -> None:
    css = _request("GET", "/static/broker.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert _request("GET", "/healthz").json() == {"status": "ok"}


@pytest.mark.parametrize("path", ["/static/%2e%2e/broker_app.py", "/static/..%2fbroker_app.py",
                                  "/static/%2e%2e/%2e%2e/pyproject.toml"])
def test_static_files_stay_in_their_directory(path: str) -> None:
    r = _request("GET", path)
    assert r.status_code == 404
    assert b"import" not in r.content
