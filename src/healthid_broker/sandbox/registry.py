"""The sandbox's stand-in for gematik's out-of-band RP registration.

In the real federation a relying party is registered by sending gematik a form with its
entity identifier, organisation, environment, requested scopes and the PEM + kid of each
federation signing key (docs/ti-profile.md §3.5).  The sandbox keeps the same data
in ``<data_dir>/registrations.json``; the running master re-reads that file whenever it
changes, so ``healthid-broker sandbox register`` works against a running sandbox.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ..crypto.jose import JWK, JoseError

REGISTRATIONS_FILE = "registrations.json"


class RegistrationError(ValueError):
    """A registration request is malformed; the message says which field is wrong."""


@dataclass(frozen=True)
class Registration:
    entity_id: str
    jwks: dict[str, Any]
    organization_name: str = ""
    scopes: str = ""
    registered_at: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "entity_id": self.entity_id,
            "jwks": self.jwks,
            "organization_name": self.organization_name,
            "scopes": self.scopes,
            "registered_at": self.registered_at,
        }


def check_entity_id(entity_id: Any) -> str:
    """An entity identifier is an https URL without query, fragment or trailing slash."""
    if not isinstance(entity_id, str) or not entity_id:
        raise RegistrationError("entity_id must be a non-empty string")
    parts = urlsplit(entity_id)
    if parts.scheme != "https" or not parts.hostname:
        raise RegistrationError("entity_id must be an absolute https URL")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise RegistrationError("entity_id must not carry query, fragment or user info")
    if entity_id.endswith("/"):
        raise RegistrationError("entity_id must not end with '/'")
    return entity_id


def _check_jwks(jwks: Any) -> dict[str, Any]:
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list) \
            or not jwks["keys"]:
        raise RegistrationError("jwks must be an object with a non-empty 'keys' list")
    keys = []
    for i, k in enumerate(jwks["keys"]):
        try:
            jwk = JWK.from_dict(k)
        except JoseError as exc:
            raise RegistrationError(f"jwks key #{i}: {exc}") from exc
        if not jwk.kid:
            raise RegistrationError(f"jwks key #{i} has no kid")
        keys.append(jwk.public().public_dict())
    return {"keys": keys}


def _pem_keys(keys: Any) -> dict[str, Any]:
    """Convert the ``keys: [{kid, pem}]`` of the broker's registration data to a JWKS."""
    if not isinstance(keys, list) or not keys:
        raise RegistrationError("keys must be a non-empty list of {kid, pem}")
    out = []
    for i, k in enumerate(keys):
        if not isinstance(k, Mapping) or not isinstance(k.get("kid"), str) \
                or not isinstance(k.get("pem"), str):
            raise RegistrationError(f"keys[{i}] must be an object with string kid and pem")
        try:
            pub = serialization.load_pem_public_key(k["pem"].encode("ascii"))
        except (ValueError, UnicodeEncodeError) as exc:
            raise RegistrationError(f"keys[{i}].pem is not a PEM public key") from exc
        if not isinstance(pub, ec.EllipticCurvePublicKey) or not isinstance(
            pub.curve, ec.SECP256R1
        ):
            raise RegistrationError(f"keys[{i}] is not an EC P-256 key (A_23196)")
        out.append(JWK(pub, kid=k["kid"], use="sig", alg="ES256").public_dict())
    return {"keys": out}


def parse_registration(data: Any, *, now: float | None = None) -> Registration:
    """Accept ``{entity_id, jwks, organization_name?, scopes?}`` or the broker's
    ``app registration`` output ``{entity_id, organization_name, environment, scopes,
    keys:[{kid, pem}]}``."""
    if not isinstance(data, Mapping):
        raise RegistrationError("registration must be a JSON object")
    entity_id = check_entity_id(data.get("entity_id"))
    if "jwks" in data:
        jwks = _check_jwks(data["jwks"])
    elif "keys" in data:
        jwks = _pem_keys(data["keys"])
    else:
        raise RegistrationError("registration needs 'jwks' or 'keys'")
    org = data.get("organization_name", "")
    if not isinstance(org, str):
        raise RegistrationError("organization_name must be a string")
    scopes = data.get("scopes", "")
    if isinstance(scopes, list) and all(isinstance(s, str) for s in scopes):
        scopes = " ".join(scopes)
    if not isinstance(scopes, str):
        raise RegistrationError("scopes must be a string or a list of strings")
    return Registration(
        entity_id, jwks, org, scopes, int(time.time() if now is None else now)
    )


class RegistrationStore:
    """Registrations persisted as JSON in the data directory, re-read on change."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / REGISTRATIONS_FILE
        self._stamp: tuple[int, int] | None = None
        self._items: dict[str, Registration] = {}

    def _reload(self) -> None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._stamp, self._items = None, {}
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        try:
            raw = json.loads(self.path.read_text("utf-8"))
        except (OSError, ValueError):
            return  # a writer is mid-way; keep the previous view
        items: dict[str, Registration] = {}
        for entry in raw.get("registrations", []) if isinstance(raw, dict) else []:
            try:
                reg = parse_registration(entry, now=entry.get("registered_at", 0))
            except RegistrationError:
                continue
            items[reg.entity_id] = reg
        self._items, self._stamp = items, stamp

    def all(self) -> dict[str, Registration]:
        self._reload()
        return dict(self._items)

    def get(self, entity_id: str) -> Registration | None:
        self._reload()
        return self._items.get(entity_id)

    def add(self, reg: Registration) -> None:
        self._reload()
        items = dict(self._items)
        items[reg.entity_id] = reg
        self.path.parent.mkdir(parents=True, exist_ok=True)
        body = json.dumps(
            {"registrations": [r.to_json() for r in items.values()]}, indent=2
        )
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".reg-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
        os.replace(tmp, self.path)
        self._items = items
        self._stamp = None  # force a re-read (mtime granularity)
