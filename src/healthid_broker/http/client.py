"""The broker's outbound HTTP client: aiohttp, configured for the federation's calls.

The broker fetches entity statements, the IdP list and signed JWKS (``GET``), and per login
sends two form ``POST``s over mutual TLS: the pushed authorization request and the token
request with the IdP's one-time code. Decision 0007 records why aiohttp and what it costs.

* One ``aiohttp.ClientSession`` — one connection pool — per client identity (RFC 8705 §2.2):
  a connection made with one certificate is never reused for another. TLS 1.2 or newer with
  certificate and hostname verification (:func:`healthid_broker.http.tls_client_context`),
  trusting the system store or a configured CA file.
* A connect timeout and an overall deadline per exchange (connecting, sending, the
  response head and the whole body).
* Response bodies are bounded (``max_body``, 1 MiB by default): a larger ``Content-Length``
  is refused before the body is read, a longer body while it streams in. Compressed bodies
  are neither asked for (``accept-encoding: identity``) nor accepted.
* A non-idempotent request (``POST``) is never sent twice (RFC 9110 §9.2.2): aiohttp re-sends
  only idempotent methods after a pooled connection was found closed, and it never re-sends
  once a response has begun. Idle pooled connections are dropped after ``idle`` seconds,
  before common servers' keep-alive timeouts, so that a ``POST`` rarely meets a connection
  the server is just closing — and if it does, the caller gets an error, not a second code
  redemption.
* No redirects, no cookies, no proxies or other settings from the environment, a fixed
  ``user-agent``.
* Every failure is an :class:`healthid_broker.http.HttpTransportError` whose message names
  the method, the URL without its query, and the cause — never a request body.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from urllib.parse import urlencode, urlsplit

import aiohttp
from yarl import URL

from . import ClientIdentity, HttpResponse, HttpTransportError, tls_client_context

__all__ = ["DEFAULT_MAX_BODY", "OutboundClient"]

DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: far above any statement, list or token answer
DEFAULT_IDLE = 4.0  # seconds an idle connection is kept (uvicorn closes after 5 s)
_READ_BUFFER = 64 * 1024  # aiohttp pauses reading from the socket beyond this
_FORM_TYPE = "application/x-www-form-urlencoded"
# set by the client itself; a caller's value is ignored
_RESERVED_HEADERS = frozenset({"host", "user-agent", "content-length", "connection",
                               "transfer-encoding", "accept-encoding", "cookie"})


class OutboundClient:
    """:class:`healthid_broker.http.HttpClient` over aiohttp, one pool per client identity.

    Sessions are created on first use inside the running event loop; :meth:`aclose` closes
    all of them, after which the client refuses further requests.
    """

    def __init__(
        self,
        *,
        ca_file: str | None = None,
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        max_body: int = DEFAULT_MAX_BODY,
        idle: float = DEFAULT_IDLE,
        max_connections: int = 100,
        user_agent: str = "healthid-broker",
    ) -> None:
        if timeout <= 0 or connect_timeout <= 0 or max_body < 0 or idle <= 0:
            raise ValueError("timeouts and idle time must be positive, max_body not negative")
        self._ca_file = ca_file
        self._timeout = timeout
        self._connect_timeout = min(connect_timeout, timeout)
        self._max_body = max_body
        self._idle = idle
        self._max_connections = max_connections
        self._user_agent = user_agent
        self._sessions: dict[bytes | None, aiohttp.ClientSession] = {}
        self._closed = False

    # ------------------------------------------------------------------ public API

    async def get(self, url: str, *, headers: Mapping[str, str] | None = None,
                  identity: ClientIdentity | None = None) -> HttpResponse:
        return await self._request("GET", url, headers, None, identity)

    async def post_form(self, url: str, data: Mapping[str, str], *,
                        headers: Mapping[str, str] | None = None,
                        identity: ClientIdentity | None = None) -> HttpResponse:
        h = {"content-type": _FORM_TYPE}
        if headers:
            h.update({k.lower(): v for k, v in headers.items()})
        return await self._request("POST", url, h, urlencode(data).encode("ascii"), identity)

    async def aclose(self) -> None:
        """Close every pool (idempotent)."""
        self._closed = True
        sessions, self._sessions = list(self._sessions.values()), {}
        for s in sessions:
            await s.close()

    # ------------------------------------------------------------------ internals

    def _session(self, identity: ClientIdentity | None) -> aiohttp.ClientSession:
        key = identity.cache_key if identity is not None else None
        session = self._sessions.get(key)
        if session is None or session.closed:
            ctx: ssl.SSLContext = tls_client_context(self._ca_file, identity)
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(
                    ssl=ctx, limit=self._max_connections, keepalive_timeout=self._idle),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=self._timeout,
                                              connect=self._connect_timeout),
                headers={"user-agent": self._user_agent, "accept-encoding": "identity"},
                read_bufsize=_READ_BUFFER,
            )
            self._sessions[key] = session
        return session

    async def _request(self, method: str, url: str, headers: Mapping[str, str] | None,
                       body: bytes | None, identity: ClientIdentity | None) -> HttpResponse:
        parts = urlsplit(url)
        where = f"{method} {parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}{parts.path}"
        if self._closed:
            raise HttpTransportError(f"{where}: the client is closed")
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise HttpTransportError(f"{where}: not an absolute http(s) URL")
        if parts.scheme == "http" and identity is not None:
            raise HttpTransportError(f"{where}: a client certificate needs https")
        send_headers = {k: v for k, v in (headers or {}).items()
                        if k.lower() not in _RESERVED_HEADERS}
        try:
            target = URL(url, encoded=True)  # sent as given: no re-quoting of the query
            async with self._session(identity).request(
                method, target, data=body, headers=send_headers, allow_redirects=False,
            ) as resp:
                length = resp.content_length
                if length is not None and length > self._max_body:
                    resp.close()
                    raise HttpTransportError(
                        f"{where}: response body larger than {self._max_body} bytes "
                        "(content-length)")
                coding = resp.headers.get("content-encoding", "identity").strip().lower()
                if coding not in ("", "identity"):
                    resp.close()
                    raise HttpTransportError(f"{where}: unrequested content-encoding")
                content = bytearray()
                async for chunk in resp.content.iter_any():
                    if len(content) + len(chunk) > self._max_body:
                        resp.close()
                        raise HttpTransportError(
                            f"{where}: response body larger than {self._max_body} bytes")
                    content += chunk
                merged: dict[str, str] = {}
                for k, v in resp.headers.items():
                    lk = k.lower()
                    merged[lk] = f"{merged[lk]}, {v}" if lk in merged else v
                return HttpResponse(resp.status, merged, bytes(content), url)
        except HttpTransportError:
            raise
        except aiohttp.ConnectionTimeoutError as exc:
            raise HttpTransportError(
                f"{where}: no connection within {self._connect_timeout} s") from exc
        except TimeoutError as exc:  # aiohttp's timeouts subclass it (= asyncio's)
            raise HttpTransportError(f"{where}: no answer within {self._timeout} s") from exc
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise HttpTransportError(f"{where}: {type(exc).__name__}: {_reason(exc)}") from exc


def _reason(exc: BaseException) -> str:
    """A short, printable cause. aiohttp's messages name hosts and parser positions, not
    request bodies; still, keep it to one line and bounded."""
    text = str(exc) or exc.__class__.__name__
    if isinstance(exc, aiohttp.ClientResponseError):
        text = exc.message  # its str() would repeat the URL with the query
    return "".join(c if c.isprintable() else "?" for c in text)[:200]
