"""Broker-held sealing keys for the transient store (T-02), kept in a secret file of the data
directory (0600) that every broker process of a deployment shares.

Format: ``{"current": kid, "index_key": b64, "keys": {kid: {"key": b64, "created": ts}}}``.
The file is created once (``healthid-broker init``, or the first start of the embedded shape)
through the key provider's exclusive create and read through its checks
(:mod:`healthid_broker.crypto.key_provider`): a missing, empty, malformed or badly protected
file is a hard failure, never a reason to make new keys.

:func:`rotate` adds a new key and makes it current; keys older than ``keep`` seconds beyond
the newest (default 1 h > the 10-minute TTL of every entry) are dropped, so in-flight logins
sealed under the previous key stay readable. Processes read the file at start-up: rotate,
then restart the processes one by one.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..crypto.key_provider import (
    KeyProviderError,
    SecretMissingError,
    create_secret_file,
    read_secret_file,
    replace_secret_file,
)
from .errors import SealError
from .sealing import Sealer

__all__ = [
    "ENV_VAR",
    "FILE_NAME",
    "KEEP_OLD_KEYS",
    "create_sealing_keys",
    "load_sealer",
    "parse_sealing_keys",
    "rotate",
]

FILE_NAME = "sealing-keys.json"
ENV_VAR = "HEALTHID_BROKER_SEALING_KEYS"
KEEP_OLD_KEYS = 3600.0
_KEY_LEN = 32


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _new_document(now: float) -> dict[str, Any]:
    return {"current": 1, "index_key": _b64(os.urandom(_KEY_LEN)),
            "keys": {"1": {"key": _b64(os.urandom(_KEY_LEN)), "created": now}}}


def _encode(data: dict[str, Any]) -> bytes:
    return (json.dumps(data) + "\n").encode("utf-8")


def _key(value: object, source: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise KeyProviderError(f"{source}: {what} is not a base64 string")
    try:
        key = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyProviderError(f"{source}: {what} is not base64") from exc
    if len(key) != _KEY_LEN:
        raise KeyProviderError(f"{source}: {what} must be {_KEY_LEN} bytes, found {len(key)}")
    return key


def _document(raw: bytes, source: str) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, ValueError) as exc:
        raise KeyProviderError(f"{source} is not a sealing-key document (JSON)") from exc
    if not isinstance(data, dict) or not isinstance(data.get("keys"), dict) or not data["keys"]:
        raise KeyProviderError(f"{source} holds no sealing keys")
    return data


def parse_sealing_keys(raw: bytes, source: str) -> Sealer:
    """The sealer described by a sealing-key document; :class:`KeyProviderError` naming
    ``source`` for anything short of a complete, well-formed document."""
    data = _document(raw, source)
    keys: dict[int, bytes] = {}
    for kid, entry in data["keys"].items():
        if not (isinstance(kid, str) and kid.isdigit() and isinstance(entry, dict)):
            raise KeyProviderError(f"{source}: malformed key entry {kid!r}")
        created = entry.get("created")
        if not isinstance(created, int | float) or isinstance(created, bool):
            raise KeyProviderError(f"{source}: key {kid} has no creation time")
        keys[int(kid)] = _key(entry.get("key"), source, f"key {kid}")
    current = data.get("current")
    if not isinstance(current, int) or isinstance(current, bool):
        raise KeyProviderError(f"{source}: 'current' is not a key id")
    try:
        return Sealer(keys, current, _key(data.get("index_key"), source, "index_key"))
    except SealError as exc:
        raise KeyProviderError(f"{source}: {exc}") from exc


def create_sealing_keys(data_dir: str | os.PathLike[str], *, now: float | None = None) -> bool:
    """Create the data directory's sealing-key file unless it exists (``True`` if created)."""
    doc = _new_document(time.time() if now is None else now)
    return create_secret_file(Path(data_dir) / FILE_NAME, _encode(doc))


def load_sealer(
    data_dir: str | os.PathLike[str], *, create: bool = False, now: float | None = None
) -> Sealer:
    """The deployment's sealer from ``<data_dir>/sealing-keys.json``.

    ``create``: make the file first when it does not exist (the embedded shape's first
    start; T-19: no shipped keys). Without it a missing file is a
    :class:`~healthid_broker.crypto.key_provider.SecretMissingError`.
    """
    path = Path(data_dir) / FILE_NAME
    if create:
        create_sealing_keys(data_dir, now=now)
    return parse_sealing_keys(read_secret_file(path), f"sealing-key file {path}")


@contextmanager
def _rotation_lock(data_dir: Path) -> Iterator[None]:
    # Rotations on one host are serialised, so none is lost to a concurrent one.
    if not data_dir.is_dir():
        raise SecretMissingError(data_dir / FILE_NAME)
    fd = os.open(data_dir / f".{FILE_NAME}.lock", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def rotate(
    data_dir: str | os.PathLike[str], *, now: float | None = None, keep: float = KEEP_OLD_KEYS
) -> int:
    """Add a fresh key, make it current, drop keys retired for longer than ``keep``.

    The file must exist (``healthid-broker init``); it is replaced atomically.
    """
    t = time.time() if now is None else now
    d = Path(data_dir)
    path = d / FILE_NAME
    source = f"sealing-key file {path}"
    with _rotation_lock(d):
        raw = read_secret_file(path)
        parse_sealing_keys(raw, source)  # refuse to rotate a broken file
        data = _document(raw, source)
        kids = sorted(int(k) for k in data["keys"])
        new = (kids[-1] % 255) + 1
        while str(new) in data["keys"]:
            new = (new % 255) + 1
        cur_created = data["keys"][str(data["current"])]["created"]
        data["keys"] = {k: v for k, v in data["keys"].items()
                        if int(k) == int(data["current"]) or t - cur_created < keep}
        data["keys"][str(new)] = {"key": _b64(os.urandom(_KEY_LEN)), "created": t}
        data["current"] = new
        replace_secret_file(path, _encode(data))
    return new
