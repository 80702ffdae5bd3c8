"""The envelope the federation's signed objects share (IdP list, signed JWKS)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from ..crypto.jose import JWK, JoseError, JWSSignatureError, ParsedJWS, parse_jws, verify_jws
from ..http import HttpClient, HttpTransportError
from .errors import UpstreamError, sanitize


def verify_federation_jws(
    token: str,
    keys: Iterable[JWK],
    *,
    what: str,
    issuer: str,
    issuer_role: str,
    error: type[UpstreamError],
    expected_typ: str | None = None,
) -> tuple[ParsedJWS, dict[str, Any]]:
    """The envelope shared by the federation's signed objects (IdP list, signed JWKS):
    a compact JWS with a ``kid`` that verifies with ``keys`` and whose payload's ``iss`` is
    ``issuer``. ``what`` names the object for messages ("IdP list from X"); failures raise
    ``error``. Returns the parsed JWS and its payload."""
    try:
        parsed = parse_jws(token, expected_typ=expected_typ)
    except JoseError as exc:
        raise error(f"{what} is not a valid JWS: {exc}") from exc
    if parsed.kid is None:
        raise error(f"{what} has no kid in its header")
    try:
        verify_jws(parsed, keys, require_kid=True)
    except JWSSignatureError as exc:
        raise error(f"{what}: signature does not verify with the {issuer_role}'s federation "
                    f"keys: {exc}") from exc
    try:
        claims = parsed.payload_json()
    except JoseError as exc:
        raise error(f"{what}: payload is unusable: {exc}") from exc
    if claims.get("iss") != issuer:
        raise error(f"{what}: iss {sanitize(claims.get('iss'))!r} is not the {issuer_role} "
                    f"{sanitize(issuer)!r}")
    return parsed, claims


async def fetch_compact_jws(
    http: HttpClient,
    url: str,
    *,
    what: str,
    error: type[UpstreamError],
    content_types: Collection[str] | None = None,
) -> str:
    """GET ``url`` and return its body as a compact JWS string; transport failures, non-200
    answers, an unexpected content type and non-ASCII bodies raise ``error``."""
    try:
        resp = await http.get(url)
    except HttpTransportError as exc:
        raise error(f"{what} unreachable at {sanitize(url)}: {exc}") from exc
    if resp.status != 200:
        raise error(f"{sanitize(url)} answered HTTP {resp.status} for the {what}",
                    status=resp.status)
    if content_types is not None and resp.content_type not in content_types:
        raise error(f"{sanitize(url)} answered the {what} with content type "
                    f"{sanitize(resp.content_type)!r}, expected one of {sorted(content_types)}")
    try:
        return resp.content.decode("ascii").strip()
    except UnicodeDecodeError as exc:
        raise error(f"the {what} from {sanitize(url)} is not a compact JWS") from exc
