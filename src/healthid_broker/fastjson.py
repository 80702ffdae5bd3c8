"""JSON on the login's hot path: orjson, with the standard library as the fallback.

``dumps`` gives what ``json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()``
gives (floats may be spelled differently, e.g. ``1e16`` for ``1e+16``), and ``loads``
accepts what ``json.loads`` accepts except the non-JSON literals ``NaN``, ``Infinity`` and
``-Infinity`` (RFC 8259 §6), which it refuses. orjson handles the common case several times
faster (docs/performance.md); the few inputs it refuses — integers beyond 64 bits, UTF-16 or
UTF-32 byte input — go to the standard library, so behaviour at the edges (and for hostile
input) stays that of the standard library. ``tests/test_fastjson.py`` checks both against
it with hypothesis.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import orjson

__all__ = ["dumps", "loads"]


def dumps(obj: Mapping[str, Any] | list[Any]) -> bytes:
    """Compact UTF-8 JSON."""
    try:
        return orjson.dumps(obj if isinstance(obj, (dict, list)) else dict(obj))
    except TypeError:  # orjson.JSONEncodeError: e.g. an integer beyond 64 bits
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def loads(data: bytes | str) -> Any:
    """``json.loads``; raises :class:`ValueError` (``json.JSONDecodeError``) or
    :class:`UnicodeDecodeError` like it."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data, parse_constant=_refuse_constant)
    # orjson reads integers beyond 64 bits as floats (of magnitude >= 2**63); only when such
    # a float is in the result is the input read again, exactly.
    if _has_huge_float(obj):
        return json.loads(data, parse_constant=_refuse_constant)
    return obj


_HUGE = float(2**63)


def _has_huge_float(obj: Any) -> bool:
    if type(obj) is float:
        return not -_HUGE < obj < _HUGE
    stack = [obj]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            items: Any = v.values()
        elif type(v) is list:
            items = v
        else:
            continue
        for x in items:
            t = type(x)
            if t is float:
                if not -_HUGE < x < _HUGE:
                    return True
            elif t is dict or t is list:
                stack.append(x)
    return False


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 §6)")
