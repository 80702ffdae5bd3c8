"""The load generator's HTTP client (bench/login_load.py ``--client aiohttp``, the default).

The load generator shares the machine's two cores with the broker and the sandbox, so what it
costs per login disturbs what it measures (docs/decisions/0005). aiohttp, a maintained
client, costs about a quarter of what httpx costs per request here (docs/decisions/0007);
this module only adapts it to the small interface the bench uses: ``get``, ``post`` of a
form with HTTP Basic, and answers with ``status_code``, ``headers`` and ``content``. It is
bench code: it trusts the servers it talks to; its errors are :class:`TransportError`.
"""

from __future__ import annotations

import json
import ssl
from typing import Any

import aiohttp

__all__ = ["LoadClient", "Response", "TransportError"]


class TransportError(Exception):
    """The connection failed or timed out."""


class Response:
    __slots__ = ("content", "headers", "status_code")

    def __init__(self, status_code: int, headers: dict[str, str], content: bytes) -> None:
        self.status_code = status_code
        self.headers = headers  # lower-case names; a repeated header keeps its last value
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)


class LoadClient:
    """Keep-alive connections per origin (aiohttp's pool), no redirects followed."""

    def __init__(self, *, verify: ssl.SSLContext, timeout: float = 30.0,
                 connections: int = 64) -> None:
        self._verify = verify
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._connections = connections
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> LoadClient:
        connector = aiohttp.TCPConnector(ssl=self._verify, limit=self._connections)
        self._session = aiohttp.ClientSession(
            connector=connector, timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, url: str) -> Response:
        return await self._request("GET", url)

    async def post(self, url: str, *, auth: tuple[str, str], data: dict[str, str]) -> Response:
        return await self._request("POST", url, auth=aiohttp.BasicAuth(*auth), data=data)

    async def _request(self, method: str, url: str, **kw: Any) -> Response:
        assert self._session is not None, "use LoadClient as an async context manager"
        try:
            async with self._session.request(method, url, allow_redirects=False, **kw) as r:
                body = await r.read()
                headers = {k.lower(): v for k, v in r.headers.items()}
                return Response(r.status, headers, body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise TransportError(f"{method} {url.split('?', 1)[0]}: {exc!r}") from exc
