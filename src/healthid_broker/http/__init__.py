"""The one outbound HTTP path of the broker and the sandbox.

Protocol code (``federation``, ``upstream``) never creates sockets itself: it receives an
:class:`HttpClient`.  The broker and the sandbox use
:class:`healthid_broker.http.client.OutboundClient` (aiohttp, decision 0007); tests of
protocol code use :class:`healthid_broker.http.testing.RoutingClient`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from .. import jsoncodec

__all__ = [
    "ClientIdentity",
    "HttpClient",
    "HttpResponse",
    "HttpTransportError",
    "tls_client_context",
]


class HttpTransportError(Exception):
    """The peer could not be reached or did not answer in time."""


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    content: bytes
    url: str = ""

    @property
    def content_type(self) -> str:
        for k, v in self.headers.items():
            if k.lower() == "content-type":
                return v.split(";", 1)[0].strip().lower()
        return ""

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsoncodec.loads(self.content)


@dataclass(frozen=True)
class ClientIdentity:
    """A TLS client certificate and its key (PEM), for mutual TLS (RFC 8705 §2.2)."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    @property
    def cache_key(self) -> bytes:
        return self.cert_pem


class HttpClient(Protocol):
    async def get(
        self,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        identity: ClientIdentity | None = None,
    ) -> HttpResponse: ...

    async def post_form(
        self,
        url: str,
        data: Mapping[str, str],
        *,
        headers: Mapping[str, str] | None = None,
        identity: ClientIdentity | None = None,
    ) -> HttpResponse: ...


def tls_client_context(
    ca_file: str | None = None, identity: ClientIdentity | None = None
) -> ssl.SSLContext:
    """Client TLS context: TLS 1.2+ with certificate and hostname verification."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if identity is not None:
        import os
        import tempfile

        # ssl only loads client certificates from files; keep them only briefly on disk.
        with tempfile.TemporaryDirectory() as tmp:
            cert = os.path.join(tmp, "c.pem")
            key = os.path.join(tmp, "k.pem")
            with open(cert, "wb") as fh:
                fh.write(identity.cert_pem)
            fd = os.open(key, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(identity.key_pem)
            ctx.load_cert_chain(cert, key)
    return ctx
