"""HMAC-SHA256 under a long-lived key, keyed once.

A one-shot ``hmac.digest`` makes OpenSSL 3 look the algorithm up again on every call
(``EVP_MAC_fetch``), which showed up in the broker's profiles under load
(docs/performance.md); copying an already keyed state does not. Same result, bit for bit.
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["HmacSha256"]


class HmacSha256:
    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        self._keyed = hmac.new(key, digestmod=hashlib.sha256)

    def digest(self, msg: bytes) -> bytes:
        h = self._keyed.copy()
        h.update(msg)
        return h.digest()

    def __repr__(self) -> str:
        return "HmacSha256(<key>)"
