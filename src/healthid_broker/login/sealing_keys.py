"""Broker-held sealing keys for the transient store (T-02), kept in a file of the data
directory (0600) that every broker process of a deployment shares.

Format: ``{"current": kid, "index_key": b64, "keys": {kid: {"key": b64, "created": ts}}}``.
:func:`rotate` adds a new key and makes it current; keys older than ``keep`` seconds beyond
the newest (default 1 h > the 10-minute TTL of every entry) are dropped, so in-flight logins
sealed under the previous key stay readable. Processes read the file at start-up: rotate,
then restart the processes one by one.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

from .sealing import Sealer

FILE_NAME = "sealing-keys.json"
KEEP_OLD_KEYS = 3600.0


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _write(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def _load(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        data: dict[str, Any] = json.load(fh)
    return data


def _new_file(now: float) -> dict[str, Any]:
    return {"current": 1, "index_key": _b64(os.urandom(32)),
            "keys": {"1": {"key": _b64(os.urandom(32)), "created": now}}}


def load_sealer(data_dir: Path, *, now: float | None = None) -> Sealer:
    """The deployment's sealer; the key file is generated on first start (T-19)."""
    path = Path(data_dir) / FILE_NAME
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, _new_file(time.time() if now is None else now))
    data = _load(path)
    keys = {int(k): base64.b64decode(v["key"]) for k, v in data["keys"].items()}
    return Sealer(keys, int(data["current"]), base64.b64decode(data["index_key"]))


def rotate(data_dir: Path, *, now: float | None = None, keep: float = KEEP_OLD_KEYS) -> int:
    """Add a fresh key, make it current, drop keys retired for longer than ``keep``."""
    t = time.time() if now is None else now
    path = Path(data_dir) / FILE_NAME
    data = _load(path) if path.exists() else _new_file(t)
    kids = sorted(int(k) for k in data["keys"])
    new = (kids[-1] % 255) + 1
    while str(new) in data["keys"]:
        new = (new % 255) + 1
    cur_created = data["keys"][str(data["current"])]["created"]
    data["keys"] = {k: v for k, v in data["keys"].items()
                    if int(k) == int(data["current"]) or t - cur_created < keep}
    data["keys"][str(new)] = {"key": _b64(os.urandom(32)), "created": t}
    data["current"] = new
    _write(path, data)
    return new
