"""``application/x-www-form-urlencoded`` encoding and parsing on the login's hot path.

Every login encodes four forms or query strings and parses three; the standard library
quotes character by character, which showed up as a sixth of the broker's CPU per login in
a profile (docs/performance.md). These functions produce and accept exactly what
``urllib.parse.urlencode`` / ``parse_qsl`` do (WHATWG URL standard's
``application/x-www-form-urlencoded`` serializer: space as ``+``, unreserved characters
as they are, everything else as UTF-8 percent-escapes), but quote only the characters
that need it. ``tests/outbound/test_forms.py`` checks them against the standard library
with hypothesis.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from urllib.parse import unquote_plus

__all__ = ["parse_qsl", "quote_plus", "urlencode"]

# urllib's always-safe set for quote_plus(safe=""): ALPHA / DIGIT / "_.-~"
_NEEDS_QUOTING = re.compile(rb"[^A-Za-z0-9_.\-~ ]")
_plain = re.compile(r"[A-Za-z0-9_.\-~]*").fullmatch

_HEX = tuple(b"%%%02X" % c for c in range(256))
# str.translate table for ASCII text: one C pass instead of a regex callback per run of
# unsafe characters; every code point has an entry, so the lookup never misses.
_ASCII = tuple(chr(c) if _plain(chr(c)) else "+" if c == 32 else f"%{c:02X}"
               for c in range(128))

# Quoted forms of the keys and of the values that need quoting: mostly the same few per
# application (its issuer, redirect URIs, scope). A plain dict read inline is cheaper than
# an LRU cache; bounded by emptying it when full (values seen once, like each login's
# request_uri, fill it slowly, and the constants are quoted again once afterwards).
_QUOTED: dict[str, str] = {}
_QUOTED_MAX = 256


def _escape(m: re.Match[bytes]) -> bytes:
    return b"".join([_HEX[c] for c in m.group()])


def _quote(value: str) -> str:
    if _plain(value):
        q = value
    elif value.isascii():
        q = value.translate(_ASCII)
    else:
        q = _NEEDS_QUOTING.sub(_escape, value.encode("utf-8")).replace(b" ", b"+").decode("ascii")
    if len(_QUOTED) >= _QUOTED_MAX:
        _QUOTED.clear()
    _QUOTED[value] = q
    return q


def quote_plus(value: str) -> str:
    """``urllib.parse.quote_plus(value, safe="")``, quoting only what must be quoted."""
    if _plain(value):
        return value
    return _QUOTED.get(value) or _quote(value)


def urlencode(pairs: Mapping[str, str] | Iterable[tuple[str, str]]) -> str:
    """``urllib.parse.urlencode`` for string keys and values."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    # quote_plus inlined: keys always come from the cache, random values (state, nonce,
    # code) pass the plain test, constant values needing quotes come from the cache
    get, plain = _QUOTED.get, _plain
    return "&".join([f"{get(k) or _quote(k)}={v if plain(v) else get(v) or _quote(v)}"
                     for k, v in items])


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
        if "%" in name or "+" in name:
            name = _unquote_plus(name, errors)
        if "%" in value or "+" in value:
            value = _unquote_plus(value, errors)
        out.append((name, value))
    return out
