"""Input rules for tenants, applications and clients.

* short key: lowercase ``[a-z0-9-]``, 3–32 characters; the federation entity is
  ``<base>/<short-key>`` (the relying party entity configuration, docs/ti-profile.md).
* scopes: ``openid`` plus the telematik scopes (docs/ti-profile.md).
* acr: ``gematik-ehealth-loa-high`` | ``gematik-ehealth-loa-substantial`` (A_23004).
* redirect URIs (toward the apps; OAuth 2.0 Security BCP, RFC 9700 §4.1; RFC 8252):
  exact-match strings without fragment and without userinfo, one of

  - absolute ``https`` (web apps, and claimed https URIs of native apps, RFC 8252 §7.2);
  - ``http`` only for the loopback hosts ``127.0.0.1``, ``[::1]`` and ``localhost``
    (RFC 8252 §7.3). For *public* clients a request to the IP literals ``127.0.0.1`` and
    ``[::1]`` matches with any port (RFC 8252 §7.3, see :func:`loopback_any_port`);
    ``localhost`` is accepted for existing registrations but always matched exactly
    (RFC 8252 §8.3 does not recommend it);
  - a private-use URI scheme in reverse-domain form, e.g. ``com.example.app:/callback``
    (RFC 8252 §7.1) — for public clients (native apps) only.

  A confidential client (``client_secret_basic``, ``private_key_jwt``) may not register a
  private-use scheme: a native app cannot keep a secret (RFC 8252 §8.4).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..crypto.app_signing import ID_TOKEN_ALGS
from ..provider.redirect_uris import LOOPBACK_IPS, loopback_any_port
from ..ti_profile import ACR_VALUES, SCOPE_CLAIMS
from .errors import InvalidInput

__all__ = [
    "ACR_VALUES",
    "AUTH_METHODS",
    "LOOPBACK_HOSTS",
    "LOOPBACK_IPS",
    "TELEMATIK_SCOPES",
    "is_private_use_scheme",
    "loopback_any_port",
    "validate_acr",
    "validate_auth_method",
    "validate_base_url",
    "validate_client_name",
    "validate_id_token_alg",
    "validate_redirect_uri",
    "validate_redirect_uris",
    "validate_scopes",
    "validate_short_key",
    "validate_tenant_name",
]

TELEMATIK_SCOPES: frozenset[str] = frozenset(SCOPE_CLAIMS)  # openid + the urn:telematik:* scopes
# token endpoint auth method -> client type (OIDC Core §9; RFC 6749 §2.1)
AUTH_METHODS: dict[str, str] = {
    "client_secret_basic": "confidential",
    "private_key_jwt": "confidential",
    "none": "public",  # PKCE (RFC 7636) mandatory
}
LOOPBACK_HOSTS: frozenset[str] = frozenset({"127.0.0.1", "localhost", "::1"})
# RFC 3986 §3.1 scheme, lowercase, with at least one dot: a reverse domain name (RFC 8252 §7.1)
_PRIVATE_SCHEME = re.compile(r"[a-z][a-z0-9+-]*(\.[a-z0-9][a-z0-9+-]*)+")

_SHORT_KEY = re.compile(r"[a-z0-9-]{3,32}")
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{1,63}")
_MAX_URI = 2000


def validate_short_key(value: object) -> str:
    if not isinstance(value, str) or not _SHORT_KEY.fullmatch(value):
        raise InvalidInput(
            "application short key must be 3-32 characters of lowercase a-z, 0-9 and '-'"
        )
    return value


def validate_tenant_name(value: object) -> str:
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise InvalidInput(
            "tenant name must be 2-64 characters of lowercase a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return value


def validate_client_name(value: object) -> str:
    if not isinstance(value, str) or not _SLUG.fullmatch(value):
        raise InvalidInput(
            "client name must be 2-64 characters of lowercase a-z, 0-9 and '-', "
            "starting with a letter or digit"
        )
    return value


def validate_display_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise InvalidInput(f"{what} must be a non-empty text of at most 200 characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        raise InvalidInput(f"{what} must not contain control characters")
    return value.strip()


def validate_scopes(
    values: Iterable[object], allowed: Iterable[str] | None = None
) -> tuple[str, ...]:
    """Deduplicated scopes in the order given; ``openid`` is always required."""
    allowed_set = TELEMATIK_SCOPES if allowed is None else frozenset(allowed)
    out: list[str] = []
    for v in values:
        if not isinstance(v, str) or v not in allowed_set:
            shown = v if isinstance(v, str) and len(v) <= 80 else "<invalid>"
            if allowed is None:
                raise InvalidInput(
                    f"unknown scope {shown!r}; allowed: {', '.join(sorted(allowed_set))}"
                )
            raise InvalidInput(
                f"scope {shown!r} is not among the application's scopes "
                f"({', '.join(sorted(allowed_set))})"
            )
        if v not in out:
            out.append(v)
    if "openid" not in out:
        raise InvalidInput("scopes must include 'openid'")
    return tuple(out)


def validate_acr(value: object) -> str:
    if value not in ACR_VALUES:
        raise InvalidInput(f"required acr must be one of {', '.join(ACR_VALUES)}")
    assert isinstance(value, str)
    return value


def validate_auth_method(value: object) -> str:
    if not isinstance(value, str) or value not in AUTH_METHODS:
        raise InvalidInput(
            f"client authentication method must be one of {', '.join(AUTH_METHODS)}"
        )
    return value


def validate_id_token_alg(value: object) -> str:
    """A client's ``id_token_signed_response_alg`` (OIDC Dynamic Client Registration §2):
    ES256 (default), RS256 or PS256."""
    if not isinstance(value, str) or value not in ID_TOKEN_ALGS:
        raise InvalidInput(
            f"id_token_signed_response_alg must be one of {', '.join(ID_TOKEN_ALGS)}")
    return value


def _has_bad_chars(value: str) -> bool:
    return any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in value)


def is_private_use_scheme(scheme: str) -> bool:
    """Whether ``scheme`` is a reverse-domain private-use URI scheme (RFC 8252 §7.1)."""
    return _PRIVATE_SCHEME.fullmatch(scheme) is not None


def _private_use(value: str, public: bool) -> str:
    scheme, _, rest = value.partition(":")
    if not is_private_use_scheme(scheme):
        raise InvalidInput(
            "redirect URI must be an absolute https URL, http only for 127.0.0.1, [::1] or "
            "localhost, or (for native apps) a private-use scheme in reverse-domain form "
            "such as com.example.app:/callback"
        )
    if not public:
        raise InvalidInput(
            f"private-use URI scheme {scheme!r} is for native apps, which are public clients "
            "(auth method 'none', RFC 8252 §8.4); a confidential client needs an https "
            "redirect URI"
        )
    if not rest.startswith("/") or rest.startswith("///"):
        raise InvalidInput(
            "a private-use redirect URI needs a path, e.g. com.example.app:/callback "
            "(RFC 8252 §7.1)"
        )
    try:
        parts = urlsplit(value)
    except ValueError as exc:
        raise InvalidInput("redirect URI is not a valid URI") from exc
    if "@" in parts.netloc:
        raise InvalidInput("redirect URI must not contain user information ('user@')")
    return value


def validate_redirect_uri(value: object, *, public: bool = False) -> str:
    """One redirect URI, returned unchanged (it is compared by exact string match, except
    for the port of a public client's loopback IP URI). ``public``: the client is public
    (auth method ``none``), which admits private-use schemes (RFC 8252 §7.1)."""
    if not isinstance(value, str) or not value:
        raise InvalidInput("redirect URI must be a non-empty string")
    if len(value) > _MAX_URI:
        raise InvalidInput(f"redirect URI is longer than {_MAX_URI} characters")
    if _has_bad_chars(value):
        raise InvalidInput(
            "redirect URI must be ASCII without spaces or control characters "
            "(percent-encode anything else)"
        )
    if "#" in value:
        raise InvalidInput("redirect URI must not contain a fragment ('#')")
    if value.startswith("https://"):
        scheme = "https"
    elif value.startswith("http://"):
        scheme = "http"
    else:
        return _private_use(value, public)
    try:
        parts = urlsplit(value)
        host = parts.hostname
        _ = parts.port
    except ValueError as exc:
        raise InvalidInput("redirect URI has an invalid host or port") from exc
    if "@" in parts.netloc:
        raise InvalidInput("redirect URI must not contain user information ('user@')")
    if not host:
        raise InvalidInput("redirect URI has no host")
    if scheme == "http" and host not in LOOPBACK_HOSTS:
        raise InvalidInput(
            "plain http redirect URIs are allowed only for the loopback hosts "
            "127.0.0.1, [::1] and localhost; use https"
        )
    return value


def validate_redirect_uris(values: Iterable[object], *, public: bool = False) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        uri = validate_redirect_uri(v, public=public)
        if uri not in out:
            out.append(uri)
    if not out:
        raise InvalidInput("a client needs at least one redirect URI")
    return tuple(out)


def validate_base_url(value: object) -> str:
    """The broker's public base URL (entity ids are ``<base>/<short-key>``), no trailing '/'."""
    if not isinstance(value, str):
        raise InvalidInput("base URL must be a string")
    base = value.rstrip("/")
    try:
        validate_redirect_uri(base)
    except InvalidInput as exc:
        raise InvalidInput(f"base URL is not usable: {exc}") from exc
    parts = urlsplit(base)
    if parts.query:
        raise InvalidInput("base URL must not have a query")
    return base
