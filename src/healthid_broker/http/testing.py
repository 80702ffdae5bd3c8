"""Test helpers: an in-memory :class:`HttpClient` that routes URLs to callables."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from . import ClientIdentity, HttpResponse, HttpTransportError

Handler = Callable[["Request"], "HttpResponse | Awaitable[HttpResponse]"]


@dataclass
class Request:
    method: str
    url: str
    query: dict[str, str]
    form: dict[str, str]
    headers: Mapping[str, str]
    identity: ClientIdentity | None


def jwt_response(
    token: str, content_type: str = "application/entity-statement+jwt"
) -> HttpResponse:
    return HttpResponse(200, {"content-type": content_type}, token.encode())


def json_response(obj: Any, status: int = 200) -> HttpResponse:
    return HttpResponse(status, {"content-type": "application/json"}, json.dumps(obj).encode())


@dataclass
class RoutingClient:
    """Routes ``scheme://host/path`` (no query) to a handler; counts calls per URL."""

    routes: dict[str, Handler] = field(default_factory=dict)
    calls: list[Request] = field(default_factory=list)

    def add(self, url: str, handler: Handler | HttpResponse) -> None:
        if isinstance(handler, HttpResponse):
            resp = handler
            self.routes[url] = lambda _r: resp
        else:
            self.routes[url] = handler

    async def _dispatch(self, req: Request) -> HttpResponse:
        self.calls.append(req)
        base = req.url.split("?", 1)[0]
        handler = self.routes.get(base)
        if handler is None:
            raise HttpTransportError(f"{req.method} {req.url}: no route (connection refused)")
        out = handler(req)
        if isinstance(out, HttpResponse):
            return out
        return await out

    async def get(self, url: str, *, headers: Mapping[str, str] | None = None,
                  identity: ClientIdentity | None = None) -> HttpResponse:
        q = dict(parse_qsl(urlsplit(url).query))
        return await self._dispatch(Request("GET", url, q, {}, headers or {}, identity))

    async def post_form(self, url: str, data: Mapping[str, str], *,
                        headers: Mapping[str, str] | None = None,
                        identity: ClientIdentity | None = None) -> HttpResponse:
        q = dict(parse_qsl(urlsplit(url).query))
        return await self._dispatch(Request("POST", url, q, dict(data), headers or {}, identity))

    def count(self, url_prefix: str) -> int:
        return sum(1 for c in self.calls if c.url.startswith(url_prefix))
