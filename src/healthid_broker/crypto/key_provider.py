"""Key-encryption-key (KEK) providers for envelope encryption (T-24, T-25 in docs/toms.md).

A :class:`KeyProvider` holds one AES-256 key-encryption key and wraps/unwraps the
per-tenant data keys with it (AES-256-GCM, :mod:`healthid_broker.crypto.envelope`).
The KEK itself never leaves the provider's interface, so an HSM can implement it.

Implementations:

* :class:`LocalFileKeyProvider` — the default: ``<data_dir>/kek.key`` (base64url of 32
  random bytes, mode 0600), created once by ``healthid-broker init`` (or on the first start of
  the embedded shape) through :func:`create_secret_file`, read through
  :func:`read_secret_file`.
* :class:`EnvKeyProvider` — the KEK from an environment variable (default
  ``HEALTHID_BROKER_KEK``, base64url of 32 bytes), e.g. injected from a secret store.
* :class:`StaticKeyProvider` — an in-memory KEK (tests, embedding).
* :class:`~healthid_broker.crypto.pkcs11.Pkcs11KeyProvider` — the KEK as a non-extractable
  AES-256 key in a PKCS#11 token (HSM); wrap/unwrap run in the token (``CKM_AES_GCM``).
  Selected by ``pkcs11:<module path>?token=<label>&key=<label>`` (docs/keys.md).

Every secret file the broker holds (the KEK, the pairwise-subject root, the sealing keys of
the transient store; :mod:`healthid_broker.runtime.secrets` lists them) goes through the same
two functions here:

* :func:`create_secret_file` — exclusive create: the content is written to a private temporary
  file, flushed to disk and hard-linked into place, which fails if the name exists. Of any
  number of processes creating the same secret at once exactly one wins; the others read the
  winner's complete file. A reader never sees a partial file.
* :func:`read_secret_file` — the file must be a regular file owned by the current user,
  readable by nobody else (no group/other bits) and not empty; anything else is a hard
  failure. Nothing is ever regenerated in place of an unreadable, short or empty file (a new
  pairwise root would change every person's ``sub`` at every application).
"""

from __future__ import annotations

import base64
import binascii
import errno
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
    "SecretMissingError",
    "StaticKeyProvider",
    "create_new_kek_file",
    "create_secret_file",
    "decode_key_text",
    "encode_kek",
    "load_key_provider",
    "read_secret_file",
    "replace_secret_file",
]

KEK_ENV_VAR = "HEALTHID_BROKER_KEK"
KEK_FILE_NAME = "kek.key"
_KEK_LEN = 32  # AES-256
_NONCE_LEN = 12


_MAX_SECRET_FILE = 64 * 1024  # every secret file is far smaller; a larger one is not ours


class KeyProviderError(Exception):
    """A secret is missing, malformed or badly protected, or a KEK does not open a wrapped
    key."""


class SecretMissingError(KeyProviderError):
    """A secret file does not exist (and was not to be created)."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"secret file {path} does not exist")
        self.path = path


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_private_temp(path: Path, content: bytes) -> Path:
    """``content`` in a new 0600 file next to ``path`` (exclusive create), synced to disk."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(content)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def create_secret_file(path: str | os.PathLike[str], content: bytes) -> bool:
    """Create the secret file ``path`` holding ``content`` unless it exists; ``True`` if this
    call created it.

    Safe when many processes call it at once: the content goes to a private temporary file
    first and is then hard-linked to ``path`` (``link`` fails when the name exists), so exactly
    one caller's content becomes the file, and it appears complete or not at all. The data
    directory is created (0700) when missing. An existing file is left untouched, whatever it
    holds: reading it (:func:`read_secret_file`) decides whether it is usable.
    """
    if not content:
        raise KeyProviderError("refusing to create an empty secret file")
    target = Path(path)
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if target.exists():
        return False
    tmp = _write_private_temp(target, content)
    try:
        os.link(tmp, target)
    except FileExistsError:
        return False  # another process won the race; its file is complete
    except OSError as exc:
        if exc.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
            raise KeyProviderError(
                f"cannot create {target}: the file system does not support hard links, which "
                "the exclusive create of secret files needs; put the data directory on a "
                "local file system (or use the env key provider)") from exc
        raise
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(target.parent)
    return True


def replace_secret_file(path: str | os.PathLike[str], content: bytes) -> None:
    """Atomically replace the existing secret file ``path`` (rotation): a reader sees either
    the old or the new complete file. The caller serialises concurrent replacements."""
    if not content:
        raise KeyProviderError("refusing to write an empty secret file")
    target = Path(path)
    tmp = _write_private_temp(target, content)
    try:
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _fsync_dir(target.parent)


def read_secret_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of the secret file ``path``, after the checks every secret gets.

    Hard failures (:class:`KeyProviderError`): the file is missing
    (:class:`SecretMissingError`), not a regular file, owned by another user, accessible by
    group or others, empty, or implausibly large. Symbolic links are followed (a mounted
    secret is often one); the checks apply to the file they lead to.
    """
    p = Path(path)
    try:
        # O_NONBLOCK: a FIFO in the secret's place must not hang the start
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise SecretMissingError(p) from None
    except OSError as exc:
        raise KeyProviderError(f"cannot open secret file {p}: {exc.strerror}") from exc
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise KeyProviderError(f"secret file {p} is not a regular file")
    with os.fdopen(fd, "rb") as fh:
        if st.st_uid != os.geteuid():
            raise KeyProviderError(
                f"secret file {p} is owned by uid {st.st_uid}, not by the broker's user "
                f"(uid {os.geteuid()}); run: chown {os.geteuid()} {p}")
        mode = stat.S_IMODE(st.st_mode)
        if mode & 0o077:
            raise KeyProviderError(
                f"secret file {p} is accessible by group/others (mode {mode:o}); "
                f"run: chmod 600 {p}")
        if st.st_size > _MAX_SECRET_FILE:
            raise KeyProviderError(f"secret file {p} is too large ({st.st_size} bytes)")
        data = fh.read(_MAX_SECRET_FILE + 1)
    if not data.strip():
        raise KeyProviderError(
            f"secret file {p} is empty; restore it from the backup (a new secret would not "
            "match what was made with the old one)")
    return data


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


def decode_key_text(text: str, source: str, length: int = _KEK_LEN) -> bytes:
    """A key of exactly ``length`` bytes from its base64url text (surrounding whitespace and
    missing padding allowed); a :class:`KeyProviderError` naming ``source`` otherwise."""
    raw = text.strip()
    if not raw:
        raise KeyProviderError(f"{source} is empty")
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), altchars=b"-_", validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyProviderError(f"{source} is not base64url") from exc
    if len(key) != length:
        raise KeyProviderError(
            f"{source} must hold exactly {length} bytes (base64url), found {len(key)}"
        )
    return key


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
    """The KEK from a local secret file (checked by :func:`read_secret_file`).

    With ``create`` the file is first created when it does not exist (exclusive create,
    :func:`create_secret_file`); an existing file is never replaced.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = Path(path)
        if create:
            create_new_kek_file(self.path)
        data = read_secret_file(self.path)
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError as exc:
            raise KeyProviderError(f"key file {self.path} is not base64url text") from exc
        super().__init__(decode_key_text(text, f"key file {self.path}"))

    @classmethod
    def in_data_dir(
        cls, data_dir: str | os.PathLike[str], *, create: bool = True
    ) -> LocalFileKeyProvider:
        return cls(Path(data_dir) / KEK_FILE_NAME, create=create)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(path={str(self.path)!r}, kek_id={self.kek_id!r})"


def create_new_kek_file(path: str | os.PathLike[str]) -> bool:
    """Create a KEK file with a fresh random key unless one exists (``True`` if created)."""
    return create_secret_file(path, (encode_kek(secrets.token_bytes(_KEK_LEN)) + "\n").encode())


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
        super().__init__(decode_key_text(value, f"environment variable {var}"))


def load_key_provider(
    kind: str,
    data_dir: str | os.PathLike[str],
    environ: Mapping[str, str] | None = None,
    *,
    create: bool = True,
) -> KeyProvider:
    """Pick a provider by name: ``file`` (default), ``env``, ``env:VARNAME`` or
    ``pkcs11:<module path>?token=<label>&key=<label>`` (PIN from the environment,
    :mod:`healthid_broker.crypto.pkcs11`).

    ``create`` (``file`` and ``pkcs11``): create the KEK (``kek.key``, or the key in the
    token) when it does not exist yet.
    """
    if kind == "file":
        return LocalFileKeyProvider.in_data_dir(data_dir, create=create)
    if kind == "env":
        return EnvKeyProvider(environ=environ)
    if kind.startswith("env:"):
        return EnvKeyProvider(kind[4:], environ=environ)
    if kind.startswith("pkcs11:"):
        from .pkcs11 import Pkcs11KeyProvider

        return Pkcs11KeyProvider.from_spec(kind, environ, create=create)
    raise KeyProviderError(
        f"unknown key provider {kind!r}; use 'file', 'env', 'env:VAR' or "
        "'pkcs11:<module>?token=<label>'")
