"""Key-encryption-key (KEK) providers for envelope encryption (TOMS T-24, T-25).

A :class:`KeyProvider` holds one AES-256 key-encryption key and wraps/unwraps the
per-tenant data keys with it (AES-256-GCM, :mod:`healthid_broker.crypto.envelope`).
The KEK itself never leaves the provider's interface, so an HSM can implement it.

Implementations:

* :class:`LocalFileKeyProvider` — the default: ``<data_dir>/kek.key`` (base64url of 32
  random bytes), generated on first start with mode 0600; a file readable by group or
  others is refused.
* :class:`EnvKeyProvider` — the KEK from an environment variable (default
  ``HEALTHID_BROKER_KEK``, base64url of 32 bytes), e.g. injected from a secret store.
* :class:`StaticKeyProvider` — an in-memory KEK (tests, embedding).

PKCS#11 (HSM): implement :class:`KeyProvider` with a non-extractable AES-256 key object:
``wrap`` = ``C_EncryptInit(CKM_AES_GCM, iv=random 12, aad)`` + ``C_Encrypt`` returning
``iv || ciphertext || tag``; ``unwrap`` the reverse; ``kek_id`` = the key's ``CKA_ID``
(hex). No PKCS#11 implementation ships yet — :func:`load_key_provider` says so instead of
pretending.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import hmac
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "KEK_ENV_VAR",
    "KEK_FILE_NAME",
    "EnvKeyProvider",
    "KeyProvider",
    "KeyProviderError",
    "LocalFileKeyProvider",
    "StaticKeyProvider",
    "load_key_provider",
]

KEK_ENV_VAR = "HEALTHID_BROKER_KEK"
KEK_FILE_NAME = "kek.key"
_KEK_LEN = 32  # AES-256
_NONCE_LEN = 12


class KeyProviderError(Exception):
    """The KEK is missing, malformed, badly protected, or does not open a wrapped key."""


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps and unwraps data keys with a key-encryption key it never reveals."""

    @property
    def kek_id(self) -> str:
        """A stable, non-secret identifier of the KEK (stored next to wrapped keys)."""
        ...

    def wrap(self, key: bytes, aad: bytes) -> bytes:
        """Encrypt ``key`` (a data key) bound to ``aad``."""
        ...

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        """Decrypt a blob made by :meth:`wrap` with the same ``aad``.

        Raises :class:`KeyProviderError` when the blob was tampered with or made by
        another KEK.
        """
        ...


def _kek_id(kek: bytes) -> str:
    # A key check value: HMAC of a fixed label, so the id reveals nothing about the key.
    return hmac.new(kek, b"healthid-broker kek-id v1", hashlib.sha256).hexdigest()[:16]


def _decode_kek(text: str, source: str) -> bytes:
    raw = text.strip()
    try:
        kek = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
    except (binascii.Error, ValueError) as exc:
        raise KeyProviderError(f"{source} is not base64url") from exc
    if len(kek) != _KEK_LEN:
        raise KeyProviderError(
            f"{source} must hold exactly {_KEK_LEN} bytes (base64url), found {len(kek)}"
        )
    return kek


def encode_kek(kek: bytes) -> str:
    """The text form of a KEK (base64url without padding), as the file and env var hold it."""
    return base64.urlsafe_b64encode(kek).rstrip(b"=").decode("ascii")


class StaticKeyProvider:
    """A KEK held in memory. Wrapping is AES-256-GCM: ``nonce(12) || ciphertext || tag``."""

    def __init__(self, kek: bytes) -> None:
        if len(kek) != _KEK_LEN:
            raise KeyProviderError(f"a KEK must be {_KEK_LEN} bytes")
        self._aead = AESGCM(kek)
        self._kek_id = _kek_id(kek)

    @classmethod
    def generate(cls) -> StaticKeyProvider:
        return cls(secrets.token_bytes(_KEK_LEN))

    @property
    def kek_id(self) -> str:
        return self._kek_id

    def wrap(self, key: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(_NONCE_LEN)
        return nonce + self._aead.encrypt(nonce, key, aad)

    def unwrap(self, blob: bytes, aad: bytes) -> bytes:
        if len(blob) < _NONCE_LEN + 16:
            raise KeyProviderError("wrapped key is truncated")
        try:
            return self._aead.decrypt(blob[:_NONCE_LEN], blob[_NONCE_LEN:], aad)
        except InvalidTag as exc:
            raise KeyProviderError(
                "wrapped key does not open with this KEK (modified data, or a different KEK)"
            ) from exc

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kek_id={self._kek_id!r})"


class LocalFileKeyProvider(StaticKeyProvider):
    """The KEK from a local file; generated (0600) when the file does not exist yet."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        super().__init__(self._load_or_create(self.path, create))

    @classmethod
    def in_data_dir(cls, data_dir: str | os.PathLike[str]) -> LocalFileKeyProvider:
        return cls(Path(data_dir) / KEK_FILE_NAME)

    @staticmethod
    def _load_or_create(path: Path, create: bool) -> bytes:
        if not path.exists():
            if not create:
                raise KeyProviderError(f"key file {path} does not exist")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w", encoding="ascii") as fh:
                    fh.write(encode_kek(secrets.token_bytes(_KEK_LEN)) + "\n")
                # atomic; fails if another process won the race (then use its key)
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        if os.name == "posix":
            mode = stat.S_IMODE(path.stat().st_mode)
            if mode & 0o077:
                raise KeyProviderError(
                    f"key file {path} is accessible by group/others (mode {mode:o}); "
                    f"run: chmod 600 {path}"
                )
        return _decode_kek(path.read_text(encoding="ascii"), f"key file {path}")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={str(self.path)!r}, kek_id={self.kek_id!r})"


class EnvKeyProvider(StaticKeyProvider):
    """The KEK from an environment variable (base64url of 32 bytes)."""

    def __init__(
        self, var: str = KEK_ENV_VAR, environ: Mapping[str, str] | None = None
    ) -> None:
        env = os.environ if environ is None else environ
        value = env.get(var)
        if not value:
            raise KeyProviderError(
                f"environment variable {var} is not set; it must hold a base64url 32-byte key"
            )
        super().__init__(_decode_kek(value, f"environment variable {var}"))


def load_key_provider(
    kind: str,
    data_dir: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
) -> KeyProvider:
    """Pick a provider by name: ``file`` (default), ``env`` or ``env:VARNAME``."""
    if kind == "file":
        return LocalFileKeyProvider.in_data_dir(data_dir)
    if kind == "env":
        return EnvKeyProvider(environ=environ)
    if kind.startswith("env:"):
        return EnvKeyProvider(kind[4:], environ=environ)
    if kind.startswith("pkcs11"):
        raise KeyProviderError(
            "the PKCS#11 key provider is not implemented yet; use 'file' or 'env' "
            "(see healthid_broker.crypto.key_provider for the interface)"
        )
    raise KeyProviderError(f"unknown key provider {kind!r}; use 'file', 'env' or 'env:VAR'")
