"""Input rules for tenants, applications and clients.

* short key: lowercase ``[a-z0-9-]``, 3–32 characters; the federation entity is
  ``<base>/<short-key>`` (the relying party entity configuration, docs/ti-profile.md).
* scopes: ``openid`` plus the telematik scopes (docs/ti-profile.md).
* acr: ``gematik-ehealth-loa-high`` | ``gematik-ehealth-loa-substantial`` (A_23004).
* redirect URIs (toward the apps; OAuth 2.0 Security BCP, RFC 9700 §4.1; RFC 8252 §7.3):
  exact-match strings, absolute ``https`` — or ``http`` only for the loopback hosts
  ``127.0.0.1``, ``localhost``, ``[::1]`` — without fragment and without userinfo.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from ..crypto.app_signing import ID_TOKEN_ALGS
from ..ti_profile import ACR_VALUES, SCOPE_CLAIMS
from .errors import InvalidInput

__all__ = [
    "ACR_VALUES",
    "AUTH_METHODS",
    "LOOPBACK_HOSTS",
    "TELEMATIK_SCOPES",
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


def validate_redirect_uri(value: object) -> str:
    """One redirect URI, returned unchanged (it is compared by exact string match)."""
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
        raise InvalidInput(
            "redirect URI must be an absolute https URL (http only for 127.0.0.1, "
            "localhost or [::1])"
        )
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
            "127.0.0.1, localhost and [::1]; use https"
        )
    return value


def validate_redirect_uris(values: Iterable[object]) -> tuple[str, ...]:
    out: list[str] = []
    for v in values:
        uri = validate_redirect_uri(v)
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
