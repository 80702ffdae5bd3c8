"""``application/x-www-form-urlencoded`` encoding and parsing on the login's hot path.

Every login encodes four forms or query strings and parses three; the standard library
quotes character by character, which showed up as a sixth of the broker's CPU per login in
a profile (docs/performance.md). These functions produce and accept exactly what
``urllib.parse.urlencode`` / ``parse_qsl`` do (WHATWG URL standard's
``application/x-www-form-urlencoded`` serializer: space as ``+``, unreserved characters
as they are, everything else as UTF-8 percent-escapes), but quote only the characters
that need it. ``tests/http/test_forms.py`` checks them against the standard library with
hypothesis.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote_plus

__all__ = ["parse_qsl", "quote_plus", "urlencode"]

# urllib's always-safe set for quote_plus(safe=""): ALPHA / DIGIT / "_.-~"
_NEEDS_QUOTING = re.compile(rb"[^A-Za-z0-9_.\-~ ]")
_PLAIN = re.compile(r"[A-Za-z0-9_.\-~]*")


_HEX = tuple(b"%%%02X" % c for c in range(256))


def _escape(m: re.Match[bytes]) -> bytes:
    return b"".join([_HEX[c] for c in m.group()])


@functools.lru_cache(maxsize=256)
def _quote_plus(value: str) -> str:
    raw = value.encode("utf-8")
    return _NEEDS_QUOTING.sub(_escape, raw).replace(b" ", b"+").decode("ascii")


def quote_plus(value: str) -> str:
    """``urllib.parse.quote_plus(value, safe="")``, quoting only what must be quoted.

    Values that need quoting are mostly the same few per application (its issuer, redirect
    URIs, scope), so their quoted form is remembered (bounded, least recently used)."""
    if _PLAIN.fullmatch(value):
        return value
    return _quote_plus(value)


def urlencode(pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """``urllib.parse.urlencode`` for string keys and values."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in items)


def _unquote(value: str, errors: str) -> str:
    if "%" not in value and "+" not in value:
        return value
    return _unquote_plus(value, errors)


@functools.lru_cache(maxsize=256)  # the same redirect URIs, scopes and issuers come back
def _unquote_plus(value: str, errors: str) -> str:
    return unquote_plus(value, errors=errors)


def parse_qsl(query: str, *, max_fields: int | None = None,
              errors: str = "replace") -> list[tuple[str, str]]:
    """``urllib.parse.parse_qsl(query, keep_blank_values=True)`` with ``max_num_fields``;
    ``errors="strict"`` makes undecodable percent-escapes a :class:`UnicodeDecodeError`."""
    if not query:
        return []
    fields = query.split("&")
    if max_fields is not None and len(fields) > max_fields:
        raise ValueError("too many fields")
    out: list[tuple[str, str]] = []
    for field in fields:
        if not field:
            continue
        name, _, value = field.partition("=")
        out.append((_unquote(name, errors), _unquote(value, errors)))
    return out
