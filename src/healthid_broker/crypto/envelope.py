"""Envelope encryption: per-tenant data keys wrapped by a KEK (T-24 in docs/toms.md).

* A *data key* (DEK) is 32 random bytes; it seals values with AES-256-GCM. The sealed
  form is ``0x01 || nonce(12) || ciphertext || tag(16)``; the associated data binds each
  value to where it lives (e.g. ``app-key|<kid>|<purpose>``) so blobs cannot be swapped.
* The DEK is stored only *wrapped* by the key provider's KEK
  (:class:`~healthid_broker.crypto.key_provider.KeyProvider`) together with the KEK id, so
  a wrong KEK is reported as such and not as corruption.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .key_provider import KeyProvider, KeyProviderError

__all__ = [
    "DataKey",
    "EnvelopeError",
    "WrappedKey",
    "WrongKeyError",
    "unwrap_data_key",
    "wrap_data_key",
]

_VERSION = b"\x01"
_NONCE_LEN = 12
_TAG_LEN = 16
_DEK_LEN = 32
_SEAL_AAD = b"healthid-broker/seal/v1|"
_WRAP_AAD = b"healthid-broker/dek/v1|"


class EnvelopeError(Exception):
    """A sealed value or wrapped key is malformed or was modified."""


class WrongKeyError(EnvelopeError):
    """The data key was wrapped by a different KEK than the key provider holds."""


class DataKey:
    """A 256-bit data key. Never printed, never stored unwrapped."""

    __slots__ = ("_aead", "_key")

    def __init__(self, key: bytes) -> None:
        if len(key) != _DEK_LEN:
            raise EnvelopeError(f"a data key must be {_DEK_LEN} bytes")
        self._key = key
        self._aead = AESGCM(key)

    @classmethod
    def generate(cls) -> DataKey:
        return cls(secrets.token_bytes(_DEK_LEN))

    def seal(self, plaintext: bytes, aad: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext`` bound to ``aad``."""
        nonce = os.urandom(_NONCE_LEN)
        return _VERSION + nonce + self._aead.encrypt(nonce, plaintext, _SEAL_AAD + aad)

    def open(self, blob: bytes, aad: bytes) -> bytes:
        """Decrypt a value made by :meth:`seal` with the same ``aad``."""
        if len(blob) < 1 + _NONCE_LEN + _TAG_LEN or blob[:1] != _VERSION:
            raise EnvelopeError("sealed value is truncated or has an unknown format version")
        try:
            return self._aead.decrypt(blob[1 : 1 + _NONCE_LEN], blob[1 + _NONCE_LEN :],
                                      _SEAL_AAD + aad)
        except InvalidTag as exc:
            raise EnvelopeError(
                "sealed value failed authentication (modified, moved, or another data key)"
            ) from exc

    def derive(self, label: bytes) -> bytes:
        """A 32-byte subkey for ``label`` (HKDF-SHA256, RFC 5869), e.g. a pepper."""
        return HKDF(hashes.SHA256(), 32, salt=None, info=b"healthid-broker|" + label).derive(
            self._key
        )

    def raw(self) -> bytes:
        return self._key

    def __repr__(self) -> str:
        return "DataKey(<secret>)"


@dataclass(frozen=True)
class WrappedKey:
    """A data key encrypted by the KEK with id ``kek_id``."""

    kek_id: str
    blob: bytes


def wrap_data_key(provider: KeyProvider, key: DataKey, context: str) -> WrappedKey:
    """Wrap ``key`` with the provider's KEK, bound to ``context`` (e.g. the tenant id)."""
    return WrappedKey(provider.kek_id, provider.wrap(key.raw(), _WRAP_AAD + context.encode()))


def unwrap_data_key(provider: KeyProvider, wrapped: WrappedKey, context: str) -> DataKey:
    """Unwrap a data key; :class:`WrongKeyError` if another KEK wrapped it."""
    if wrapped.kek_id != provider.kek_id:
        raise WrongKeyError(
            f"data key was wrapped by KEK {wrapped.kek_id}, but the key provider holds KEK "
            f"{provider.kek_id}: wrong key file or environment variable?"
        )
    try:
        raw = provider.unwrap(wrapped.blob, _WRAP_AAD + context.encode())
    except KeyProviderError as exc:
        raise EnvelopeError(f"wrapped data key does not open: {exc}") from exc
    return DataKey(raw)
