"""HMAC-SHA256 under a long-lived key, keyed once.

A one-shot ``hmac.digest`` makes OpenSSL 3 look the algorithm up again on every call
(``EVP_MAC_fetch``), which showed up in the broker's profiles under load
(docs/performance.md); copying an already keyed state does not. Same result, bit for bit.

The keyed state is OpenSSL's own HMAC object (``_hashlib``, what ``hmac.HMAC`` wraps): its
``copy``/``update``/``digest`` are C, while ``hmac.HMAC.copy`` is Python code that builds a
new wrapper object on every call. Without ``_hashlib`` (Python built without OpenSSL) the
standard library's ``hmac`` module does the same work.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable
from typing import Any

_openssl_hmac_new: Callable[..., Any] | None
try:
    from _hashlib import hmac_new as _openssl_hmac_new
except ImportError:  # CPython without OpenSSL
    _openssl_hmac_new = None

__all__ = ["HmacSha256"]


def _keyed_state(key: bytes) -> Any:
    # Anything but bytes/bytearray goes to hmac.new, which refuses it as it always did.
    if _openssl_hmac_new is not None and isinstance(key, bytes | bytearray):
        try:
            return _openssl_hmac_new(key, digestmod="sha256")
        except ValueError:  # an OpenSSL without SHA-256: hmac.new falls back
            pass
    return hmac.new(key, digestmod=hashlib.sha256)


class HmacSha256:
    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        self._keyed = _keyed_state(key)

    def digest(self, msg: bytes) -> bytes:
        h = self._keyed.copy()
        h.update(msg)
        result: bytes = h.digest()
        return result

    def __repr__(self) -> str:
        return "HmacSha256(<key>)"
