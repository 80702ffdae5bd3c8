"""The federation master's IdP list (gematik TI federation, ``idp_list_endpoint``).

The list is a JWS with ``typ=idp-list+jwt``, ``alg=ES256`` and a ``kid`` naming one of
the master's federation signing keys (the ``jwks`` of the master's entity configuration,
itself verified with the pinned master key, A_23046).  Payload::

    {iss, iat, exp, idp_entity: [{iss, organization_name, logo_uri,
                                  user_type_supported, pkv}, ...]}

We verify the signature (unlike some implementations), require ``iss`` == the master and
``iat``/``exp`` to bracket ``now``, and ignore unknown extra members.

Decision on malformed entries: the list as a whole is signed by the master, so a bad
*entry* is a data-quality problem of one insurer, not an attack.  We skip such an entry,
record why in :attr:`IdpList.skipped` (for logs/metrics: it holds no personal data), and
keep the others, so one broken insurer entry does not lock every user out.  A bad
*envelope* (signature, typ, iss, time window, ``idp_entity`` not a list) fails the
whole list.  An entry is malformed when its ``iss`` is not an absolute ``https`` URL
without query/fragment, ``organization_name`` is not a non-empty string, ``pkv`` is
present but not a boolean, ``user_type_supported`` is neither a string nor a list of
strings, or its ``iss`` repeats an earlier entry.  A ``logo_uri`` that is not an
``https`` URL is dropped (the entry stays, shown without a logo); only for the sandbox
may a logo be loopback ``http`` (``allow_loopback_http_logos``, decision 0001).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from ..crypto.jose import JWK
from ..http import HttpClient
from .errors import IdpListError, sanitize
from .signed import fetch_compact_jws, verify_federation_jws

__all__ = [
    "IDP_LIST_TYP",
    "IdpEntry",
    "IdpList",
    "SkippedEntry",
    "fetch_idp_list",
    "verify_idp_list",
]

IDP_LIST_TYP = "idp-list+jwt"
DEFAULT_LEEWAY = 60
_MAX_NAME = 256
_MAX_URL = 2048


@dataclass(frozen=True)
class IdpEntry:
    """One sectoral IdP as announced by the master (not yet trust-verified itself)."""

    iss: str
    organization_name: str
    logo_uri: str | None
    user_type_supported: tuple[str, ...]
    pkv: bool


@dataclass(frozen=True)
class SkippedEntry:
    """An entry of the list that was not usable; ``reason`` names the broken member."""

    index: int
    reason: str


@dataclass(frozen=True)
class IdpList:
    iss: str
    iat: int
    exp: int
    entries: tuple[IdpEntry, ...]
    skipped: tuple[SkippedEntry, ...]

    def get(self, iss: str) -> IdpEntry | None:
        for e in self.entries:
            if e.iss == iss:
                return e
        return None


def _is_https_url(value: object) -> bool:
    if not isinstance(value, str) or not value or len(value) > _MAX_URL:
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and bool(parts.hostname)
        and not parts.query
        and not parts.fragment
        and parts.username is None
        and not any(c.isspace() for c in value)
    )


def _number(claims: Mapping[str, Any], name: str) -> int:
    v = claims.get(name)
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise IdpListError(f"IdP list lacks a numeric '{name}'")
    return int(v)


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _is_loopback_http_url(value: object) -> bool:
    """http on loopback: browsers treat it as a secure context (sandbox logos only)."""
    if not isinstance(value, str) or len(value) > _MAX_URL or any(c.isspace() for c in value):
        return False
    try:
        parts = urlsplit(value)
    except ValueError:
        return False
    return (parts.scheme == "http" and parts.hostname in _LOOPBACK and not parts.query
            and not parts.fragment and parts.username is None)


def _parse_entry(i: int, raw: object, allow_loopback_http_logos: bool = False,
                 ) -> IdpEntry | SkippedEntry:
    if not isinstance(raw, Mapping):
        return SkippedEntry(i, "entry is not a JSON object")
    iss = raw.get("iss")
    if not _is_https_url(iss):
        return SkippedEntry(i, "'iss' is not an absolute https URL without query/fragment")
    assert isinstance(iss, str)
    name = raw.get("organization_name")
    if not isinstance(name, str) or not name.strip() or len(name) > _MAX_NAME:
        return SkippedEntry(i, f"'organization_name' of {sanitize(iss)} is missing or invalid")
    pkv = raw.get("pkv", False)
    if not isinstance(pkv, bool):
        return SkippedEntry(i, f"'pkv' of {sanitize(iss)} is not a boolean")
    uts = raw.get("user_type_supported", ())
    if isinstance(uts, str):
        user_types: tuple[str, ...] = (uts,)
    elif isinstance(uts, (list, tuple)) and all(isinstance(u, str) for u in uts):
        user_types = tuple(uts)
    else:
        return SkippedEntry(i, f"'user_type_supported' of {sanitize(iss)} is invalid")
    logo = raw.get("logo_uri")
    usable = _is_https_url(logo) or (allow_loopback_http_logos and _is_loopback_http_url(logo))
    logo_uri = logo if usable else None
    assert logo_uri is None or isinstance(logo_uri, str)
    return IdpEntry(iss, name.strip(), logo_uri, user_types, pkv)


def verify_idp_list(
    token: str,
    master_keys: Iterable[JWK],
    *,
    master: str,
    now: float,
    leeway: int = DEFAULT_LEEWAY,
    allow_loopback_http_logos: bool = False,
) -> IdpList:
    """Verify the IdP list JWS ``token`` with the master's federation keys.

    ``master_keys`` must already be trusted (from the master's entity configuration
    verified against the pinned key, A_23046); ``master`` is the master's entity id.
    """
    _parsed, claims = verify_federation_jws(
        token, master_keys, what=f"IdP list from {sanitize(master)}", issuer=master,
        issuer_role="master", error=IdpListError, expected_typ=IDP_LIST_TYP)
    iat = _number(claims, "iat")
    exp = _number(claims, "exp")
    if iat > now + leeway:
        raise IdpListError(f"IdP list is issued in the future (iat={iat}, now={int(now)})")
    if exp <= now - leeway:
        raise IdpListError(f"IdP list expired at {exp} (now={int(now)}); fetch a fresh one")
    raw_entries = claims.get("idp_entity")
    if not isinstance(raw_entries, list):
        raise IdpListError("IdP list has no 'idp_entity' list")
    entries: list[IdpEntry] = []
    skipped: list[SkippedEntry] = []
    seen: set[str] = set()
    for i, raw in enumerate(raw_entries):
        out = _parse_entry(i, raw, allow_loopback_http_logos)
        if isinstance(out, IdpEntry) and out.iss in seen:
            out = SkippedEntry(i, f"duplicate entry for {sanitize(out.iss)}")
        if isinstance(out, SkippedEntry):
            skipped.append(out)
        else:
            seen.add(out.iss)
            entries.append(out)
    return IdpList(master, iat, exp, tuple(entries), tuple(skipped))


async def fetch_idp_list(
    http: HttpClient,
    url: str,
    master_keys: Iterable[JWK],
    *,
    master: str,
    now: float,
    leeway: int = DEFAULT_LEEWAY,
    allow_loopback_http_logos: bool = False,
) -> IdpList:
    """GET the master's ``idp_list_endpoint`` and :func:`verify_idp_list` the answer."""
    token = await fetch_compact_jws(http, url, what="IdP list", error=IdpListError)
    return verify_idp_list(token, master_keys, master=master, now=now, leeway=leeway,
                           allow_loopback_http_logos=allow_loopback_http_logos)
