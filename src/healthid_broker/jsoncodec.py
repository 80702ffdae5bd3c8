"""JSON on the login's hot path: orjson, with the standard library as the fallback.

``dumps`` gives what ``json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()``
gives (floats may be spelled differently, e.g. ``1e16`` for ``1e+16``), and ``loads``
accepts what ``json.loads`` accepts except the non-JSON literals ``NaN``, ``Infinity`` and
``-Infinity`` (RFC 8259 §6), which it refuses. orjson handles the common case several times
faster (docs/performance.md); the few inputs it refuses — integers beyond 64 bits, UTF-16 or
UTF-32 byte input — go to the standard library, so behaviour at the edges (and for hostile
input) stays that of the standard library. ``tests/test_jsoncodec.py`` checks both against
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
    # orjson reads integers beyond 64 bits as floats; input with a run of 19 or more digits
    # (rare: inside strings too) is read by the standard library, exactly.
    if not _has_long_digit_run(data):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.loads(data, parse_constant=_refuse_constant)
    except RecursionError:  # nested deeper than the interpreter's stack allows
        raise ValueError("JSON nested too deeply") from None


_DIGITS_AS_ZERO = bytes(48 if 48 <= b <= 57 else 120 for b in range(256))  # digit → "0"
_RUN = b"0" * 19  # 2**63 has 19 digits


def _has_long_digit_run(data: bytes | str) -> bool:
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    return _RUN in raw.translate(_DIGITS_AS_ZERO)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259 §6)")
