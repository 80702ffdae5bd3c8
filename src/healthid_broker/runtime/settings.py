"""Broker settings: what a deployment decides (bases, federation, database, Redis)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..crypto.jose import JWK

log = logging.getLogger("healthid_broker.runtime")

ENVIRONMENTS = {
    # gematik's federation masters (docs/ti-profile.md §2); the operator pins their keys.
    "tu": "https://app-test.federationmaster.de",
    "ru": "https://app-ref.federationmaster.de",
    "pu": "https://app.federationmaster.de",
}


@dataclass(frozen=True)
class BrokerSettings:
    public_base: str
    data_dir: Path
    environment: str  # sandbox | tu | ru | pu
    master_entity_id: str
    master_jwks: dict[str, Any]
    browser_base: str | None = None
    database_url: str | None = None
    redis_url: str | None = None
    ca_file: str | None = None  # trust store for outbound https (the sandbox CA in the demo)
    directory_ttl: float = 30.0

    @property
    def browser(self) -> str:
        return (self.browser_base or self.public_base).rstrip("/")

    def check(self) -> None:
        """Refuse settings that would break the TI profile or mix environments (T-29)."""
        from urllib.parse import urlsplit

        if self.environment not in ("sandbox", *ENVIRONMENTS):
            raise ValueError(f"unknown federation environment {self.environment!r}")
        for name, url in (("public base", self.public_base), ("browser base", self.browser)):
            parts = urlsplit(url)
            if parts.query or parts.fragment or not parts.hostname:
                raise ValueError(f"the {name} must be a plain absolute URL")
            # Entity ids are https (docs/ti-profile.md §5.1); pages may be loopback http only
            # in the sandbox.
            loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
            if parts.scheme != "https" and not (
                    name == "browser base" and self.environment == "sandbox" and loopback):
                raise ValueError(f"the {name} must be https: {url}")
        if self.environment != "sandbox" and self.master_entity_id != ENVIRONMENTS[
                self.environment]:
            log.warning("federation master %s differs from gematik's %s master",
                        self.master_entity_id, self.environment)


def load_jwks_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A pinned JWKS file: a JSON object with a non-empty ``keys`` list of EC P-256 keys."""
    from ..crypto.jose import JoseError

    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot read a JWKS: {exc}") from exc
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not keys:
        raise ValueError(f"{path}: not a JWKS with at least one key")
    for i, k in enumerate(keys):
        try:
            JWK.from_dict(k)
        except JoseError as exc:
            raise ValueError(f"{path}: key #{i} is unusable: {exc}") from exc
    return {"keys": keys}
