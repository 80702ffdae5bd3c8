"""Every secret the broker itself holds, created and loaded through one key-provider path.

=====================  ==========================  =================================
secret                 file in the data directory  environment variable (``env``)
=====================  ==========================  =================================
key-encryption key     ``kek.key``                 ``HEALTHID_BROKER_KEK``
pairwise-subject root  ``pairwise.key``            ``HEALTHID_BROKER_PAIRWISE_ROOT``
sealing keys (T-02)    ``sealing-keys.json``       ``HEALTHID_BROKER_SEALING_KEYS``
=====================  ==========================  =================================

The KEK wraps each tenant's data key (T-24/T-25); a tenant's client-secret pepper and its
application keys are derived from or sealed under that data key, so they need no secret of
their own here. The pairwise root derives each application's pairwise-subject secret
(A_23035, T-07): losing or replacing it changes every person's ``sub`` at every application.

Files are created by :func:`init_secrets` (``healthid-broker init``; the embedded shape also
on its first start) with the key provider's exclusive create, and read by
:func:`load_secrets` with its checks (owner only, not empty, well-formed): a file that fails
them is a hard failure, never regenerated. The text forms are the same in a file and in an
environment variable (``kek.key`` and ``pairwise.key``: base64url of 32 bytes;
``sealing-keys.json``: the JSON document), so a container can take the files' contents as
its environment.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ..crypto.key_provider import (
    KEK_ENV_VAR,
    KEK_FILE_NAME,
    EnvKeyProvider,
    KeyProvider,
    KeyProviderError,
    LocalFileKeyProvider,
    SecretMissingError,
    create_new_kek_file,
    create_secret_file,
    decode_key_text,
    encode_kek,
    read_secret_file,
)
from ..login import sealing_keys
from ..login.sealing import Sealer

__all__ = [
    "PAIRWISE_ENV_VAR",
    "PAIRWISE_FILE_NAME",
    "SECRET_FILES",
    "BrokerSecrets",
    "SecretsMissingError",
    "init_secrets",
    "is_shared_shape",
    "load_secrets",
    "missing_secrets",
]

PAIRWISE_FILE_NAME = "pairwise.key"
PAIRWISE_ENV_VAR = "HEALTHID_BROKER_PAIRWISE_ROOT"
SECRET_FILES = (KEK_FILE_NAME, PAIRWISE_FILE_NAME, sealing_keys.FILE_NAME)
_PAIRWISE_LEN = 32


class SecretsMissingError(KeyProviderError):
    """Broker secrets are missing and this process may not create them."""

    def __init__(self, data_dir: Path, missing: list[str]) -> None:
        super().__init__(
            f"broker secrets missing in {data_dir}: {', '.join(missing)}. Create them once, "
            f"before the first start, with: healthid-broker init --data-dir {data_dir}")
        self.missing = missing


@dataclass(frozen=True)
class BrokerSecrets:
    kek: KeyProvider
    sealer: Sealer
    pairwise_root: bytes = field(repr=False)


def is_shared_shape(database_url: str | None, redis_url: str | None) -> bool:
    """Whether processes may share this deployment: Redis, or a database other than SQLite.
    Such a deployment never makes secrets on start; ``healthid-broker init`` does, once."""
    if redis_url:
        return True
    return bool(database_url) and not str(database_url).startswith("sqlite")


def _create_pairwise_root(path: Path) -> bool:
    return create_secret_file(path, (encode_kek(secrets.token_bytes(_PAIRWISE_LEN)) + "\n")
                              .encode())


def _parse_pairwise_root(data: bytes, source: str) -> bytes:
    # Files made by earlier versions hold the 32 raw bytes; newer ones base64url text.
    if len(data) == _PAIRWISE_LEN:
        return data
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as exc:
        raise KeyProviderError(
            f"{source} must hold {_PAIRWISE_LEN} bytes (base64url), found {len(data)} "
            "bytes of something else") from exc
    return decode_key_text(text, source, _PAIRWISE_LEN)


def missing_secrets(data_dir: str | os.PathLike[str]) -> list[str]:
    """Names of the secret files that do not exist in ``data_dir``."""
    d = Path(data_dir)
    return [name for name in SECRET_FILES if not os.path.lexists(d / name)]


def init_secrets(data_dir: str | os.PathLike[str], *, now: float | None = None) -> list[str]:
    """Create every missing secret file of ``data_dir``; the names of those this call made.

    Safe to run from any number of processes at once: each file is created by exactly one of
    them and then read — and checked — by all (the same checks as :func:`load_secrets`).
    Existing files are never changed.
    """
    d = Path(data_dir)
    created = []
    if create_new_kek_file(d / KEK_FILE_NAME):
        created.append(KEK_FILE_NAME)
    if _create_pairwise_root(d / PAIRWISE_FILE_NAME):
        created.append(PAIRWISE_FILE_NAME)
    if sealing_keys.create_sealing_keys(d, now=time.time() if now is None else now):
        created.append(sealing_keys.FILE_NAME)
    load_secrets(d)
    return created


def load_secrets(
    data_dir: str | os.PathLike[str],
    *,
    provider: str = "file",
    environ: Mapping[str, str] | None = None,
    create: bool = False,
) -> BrokerSecrets:
    """The broker's secrets from the data directory (``provider="file"``) or from the
    environment (``env``; ``env:VAR`` takes the KEK from ``VAR``).

    ``create`` (file only): make missing files first — the embedded shape's first start.
    Without it, missing files raise :class:`SecretsMissingError`, which names
    ``healthid-broker init``.
    """
    d = Path(data_dir)
    if provider == "file":
        if create:
            init_secrets(d)
        missing = missing_secrets(d)
        if missing:
            raise SecretsMissingError(d, missing)
        try:
            kek: KeyProvider = LocalFileKeyProvider.in_data_dir(d, create=False)
            pw_path = d / PAIRWISE_FILE_NAME
            pairwise = _parse_pairwise_root(read_secret_file(pw_path),
                                            f"pairwise-root file {pw_path}")
            sealer = sealing_keys.load_sealer(d)
        except SecretMissingError as exc:  # removed between the check and the read
            raise SecretsMissingError(d, [exc.path.name]) from exc
        return BrokerSecrets(kek=kek, sealer=sealer, pairwise_root=pairwise)
    if provider == "env" or provider.startswith("env:"):
        env = os.environ if environ is None else environ
        kek_var = provider.removeprefix("env").removeprefix(":") or KEK_ENV_VAR
        absent = [v for v in (kek_var, PAIRWISE_ENV_VAR, sealing_keys.ENV_VAR) if not env.get(v)]
        if absent:
            raise KeyProviderError(
                f"environment variables not set: {', '.join(absent)} (the env key provider "
                "takes every broker secret from the environment)")
        return BrokerSecrets(
            kek=EnvKeyProvider(kek_var, environ=env),
            sealer=sealing_keys.parse_sealing_keys(
                env[sealing_keys.ENV_VAR].encode("utf-8"),
                f"environment variable {sealing_keys.ENV_VAR}"),
            pairwise_root=decode_key_text(env[PAIRWISE_ENV_VAR],
                                          f"environment variable {PAIRWISE_ENV_VAR}",
                                          _PAIRWISE_LEN))
    raise KeyProviderError(f"unknown key provider {provider!r}; use 'file', 'env' or 'env:VAR'")
