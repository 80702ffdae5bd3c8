"""AES-256-GCM sealing of transient-store entries (T-02, docs/toms.md) and keyed store-key hashing.

Wire format of a sealed entry (all binary)::

    +--------+-----------------+-----------------------------+
    | kid 1B | nonce 12B       | AES-256-GCM ciphertext+tag  |
    +--------+-----------------+-----------------------------+

* ``kid`` selects one of the broker-held sealing keys, so rotating the *current* key
  keeps entries sealed under older keys readable until their TTL (≤ 10 min) ends;
  an unknown kid is a :class:`SealError`.
* The additional authenticated data binds the format version, the kid, the
  ``purpose`` and the (raw) store key: an entry written for one purpose or key can
  never be opened as another (same idea as ory/fosite's purpose-bound flow state).
* Nonces are 96 random bits; with rotation (say daily) a key never comes near the
  2^32-messages bound of NIST SP 800-38D §8.3.

Store keys (authorization codes, ``state`` values, transaction ids) are never handed
to the backend in clear: :meth:`Sealer.index` maps (purpose, key) through
HMAC-SHA256 under a separate *index key*. Rotating the index key makes in-flight
entries unreachable (they simply expire), so it rotates rarely if at all.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..crypto.jose import b64u_encode
from ..crypto.mac import HmacSha256
from .errors import SealError

__all__ = ["MAX_KEY_LENGTH", "PURPOSE_RE", "Sealer", "store_fields"]

_VERSION = b"hidb-seal-v1"
_NONCE_LEN = 12
_TAG_LEN = 16
_KEY_LEN = 32  # AES-256
MAX_KEY_LENGTH = 512
"""Longest store key (characters); codes, states and transaction ids are far shorter."""
PURPOSE_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,31}\Z")
OVERHEAD = 1 + _NONCE_LEN + _TAG_LEN


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


# The few purposes in use, checked and length-prefixed once each: purpose → _lp(purpose)
_PURPOSES: dict[str, bytes] = {}


def _purpose_field(purpose: str) -> bytes:
    checked = _PURPOSES.get(purpose) if isinstance(purpose, str) else None
    if checked is not None:
        return checked
    if not isinstance(purpose, str) or not PURPOSE_RE.match(purpose):
        raise SealError("purpose must match [a-z][a-z0-9_.-]{0,31}")
    checked = _lp(purpose.encode("ascii"))
    if len(_PURPOSES) < 64:  # purposes are code constants; never let input grow this
        _PURPOSES[purpose] = checked
    return checked


def _key_field(key: str) -> bytes:
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_LENGTH:
        raise SealError(
            f"store key must be a non-empty string of at most {MAX_KEY_LENGTH} characters")
    return _lp(key.encode("utf-8"))


def store_fields(purpose: str, key: str) -> tuple[bytes, bytes]:
    """The checked, length-prefixed (purpose, key) that the AAD and the index are built of.

    :class:`~.store.SealedStore` computes them once per operation for both its calls
    (:meth:`Sealer.index_of`, :meth:`Sealer.seal_with`, :meth:`Sealer.open_with`).
    """
    return _purpose_field(purpose), _key_field(key)


class Sealer:
    """Seals and opens transient entries with broker-held AES-256-GCM keys.

    ``keys`` maps key ids (0–255) to 32-byte keys; ``current`` is the id used for new
    entries. ``index_key`` (≥ 32 bytes) keys the HMAC over store keys.
    """

    def __init__(
        self,
        keys: Mapping[int, bytes],
        current: int,
        index_key: bytes,
        *,
        random: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if current not in keys:
            raise SealError(f"current sealing key id {current} is not among the keys")
        for kid, key in keys.items():
            if not isinstance(kid, int) or not 0 <= kid <= 255:
                raise SealError("sealing key ids are integers 0..255")
            if len(key) != _KEY_LEN:
                raise SealError(f"sealing key {kid} must be 32 bytes (AES-256)")
        if len(index_key) < _KEY_LEN:
            raise SealError("the index key must be at least 32 bytes")
        self._aead = {kid: AESGCM(bytes(k)) for kid, k in keys.items()}
        # AAD = _VERSION ‖ kid ‖ _lp(purpose) ‖ _lp(key); the part before the purpose per kid
        self._aad_heads = {kid: _VERSION + bytes([kid]) for kid in keys}
        self._sealing = (bytes([current]), self._aead[current], self._aad_heads[current])
        self._current = current
        self._index_mac = HmacSha256(bytes(index_key))
        self._random = random

    @classmethod
    def generate(cls, kid: int = 1) -> Sealer:
        """A sealer with fresh random keys (embedded default; keys live in memory only)."""
        return cls({kid: os.urandom(_KEY_LEN)}, kid, os.urandom(_KEY_LEN))

    @property
    def current_kid(self) -> int:
        return self._current

    @property
    def key_ids(self) -> frozenset[int]:
        return frozenset(self._aead)

    def index(self, purpose: str, key: str) -> str:
        """The HMAC-SHA256 store index of (purpose, key), base64url (43 chars)."""
        return self.index_of(store_fields(purpose, key))

    def seal(self, purpose: str, key: str, plaintext: bytes) -> bytes:
        return self.seal_with(store_fields(purpose, key), plaintext)

    def open(self, purpose: str, key: str, sealed: bytes) -> bytes:
        return self.open_with(store_fields(purpose, key), sealed)

    # The same on fields from :func:`store_fields`.

    def index_of(self, fields: tuple[bytes, bytes]) -> str:
        return b64u_encode(self._index_mac.digest(fields[0] + fields[1]))

    def seal_with(self, fields: tuple[bytes, bytes], plaintext: bytes) -> bytes:
        nonce = self._random(_NONCE_LEN)
        if len(nonce) != _NONCE_LEN:
            raise SealError("nonce source returned the wrong length")
        kid, aead, aad_head = self._sealing
        return kid + nonce + aead.encrypt(nonce, plaintext, aad_head + fields[0] + fields[1])

    def open_with(self, fields: tuple[bytes, bytes], sealed: bytes) -> bytes:
        if len(sealed) < OVERHEAD:
            raise SealError("sealed entry is too short")
        kid = sealed[0]
        aead = self._aead.get(kid)
        if aead is None:
            raise SealError(
                f"sealed entry uses key id {kid}, which this broker does not hold "
                "(was the key removed before its entries expired?)"
            )
        nonce = sealed[1 : 1 + _NONCE_LEN]
        aad = self._aad_heads[kid] + fields[0] + fields[1]
        try:
            return aead.decrypt(nonce, sealed[1 + _NONCE_LEN :], aad)
        except InvalidTag:
            raise SealError(
                "sealed entry does not authenticate: tampered, or sealed for another "
                "purpose or key"
            ) from None
