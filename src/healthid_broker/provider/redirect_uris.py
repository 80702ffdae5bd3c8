"""Matching an authorization request's ``redirect_uri`` against a client's registration.

Exact string comparison (OAuth 2.0 Security BCP, RFC 9700 §4.1.3), with the one exception
native apps need (RFC 8252 §7.3): for a *public* client, the port of an ``http`` redirect URI
on the loopback IP literals ``127.0.0.1`` and ``[::1]`` is ignored, because the app listens
on whatever port the operating system hands it at run time. ``localhost`` never gets this
exception (RFC 8252 §8.3 does not recommend it: it may resolve to a non-loopback interface
or be served by another program). The registration rules are in
:mod:`healthid_broker.tenancy.validation`.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .directory import ClientConfig

__all__ = ["LOOPBACK_IPS", "loopback_any_port", "redirect_uri_registered"]

LOOPBACK_IPS: frozenset[str] = frozenset({"127.0.0.1", "::1"})
"""The loopback hosts whose port is ignored for public clients (RFC 8252 §7.3)."""


def loopback_any_port(uri: str) -> str | None:
    """For ``http`` URIs on ``127.0.0.1`` or ``[::1]``: the URI without its port, the form in
    which a public client's loopback redirect URIs are compared. ``None`` for every other
    URI (those are matched exactly)."""
    if not uri.startswith("http://"):
        return None
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        _ = parts.port  # a malformed port raises
    except ValueError:
        return None
    if host not in LOOPBACK_IPS or "@" in parts.netloc or parts.fragment:
        return None
    netloc = "[::1]" if host == "::1" else host
    return parts._replace(netloc=netloc).geturl()


def redirect_uri_registered(client: ClientConfig, redirect_uri: str) -> bool:
    """Whether ``redirect_uri`` may receive ``client``'s authorization response.

    A private-use scheme (RFC 8252 §7.1) is honoured only for a public client, even if one
    had been stored for a confidential client before the registration rules refused it."""
    if redirect_uri in client.redirect_uris:
        return client.public or redirect_uri.startswith(("https://", "http://"))
    if not client.public:
        return False
    portless = loopback_any_port(redirect_uri)
    return portless is not None and any(
        loopback_any_port(r) == portless for r in client.redirect_uris)
