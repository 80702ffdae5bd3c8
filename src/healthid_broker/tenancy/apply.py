"""Declarative configuration: ``healthid-broker apply FILE`` (TOML or YAML).

Shape (TOML shown; YAML is the same structure)::

    [[tenants]]
    name = "acme"

    [[tenants.applications]]
    short_key = "acme-app"
    display_name = "Acme App"
    organization_name = "Acme GmbH"
    scopes = ["openid", "urn:telematik:alter"]
    required_acr = "gematik-ehealth-loa-high"
    active = true                         # optional, default true

    [[tenants.applications.clients]]
    name = "web"                          # stable identifier inside the application
    auth_method = "client_secret_basic"   # or private_key_jwt | none
    redirect_uris = ["https://app.example/cb"]
    scopes = ["openid"]                   # optional, default: the application's scopes
    jwks = { keys = [ ... ] }             # optional (required for private_key_jwt)
    id_token_signed_response_alg = "ES256"  # optional: ES256 (default), RS256, PS256
    active = true                         # optional, default true

Idempotent: objects are matched by tenant name, short key and client name; only
differences are written, and a second run reports no changes. Nothing is deleted
(objects missing from the file stay as they are). The whole run is one database
transaction: it either applies completely or not at all; ``dry_run`` rolls it back.
Inside that transaction the tenant scope (row-level security, T-28) switches to each
tenant of the file in turn.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy.orm import Session

from healthid_broker.crypto.app_signing import DEFAULT_ID_TOKEN_ALG

from .clients import validate_client_jwks
from .errors import Conflict, InvalidInput
from .rows import app_row
from .service import TenancyService
from .validation import validate_id_token_alg, validate_scopes

__all__ = ["ApplyResult", "apply_config", "load_config"]

_TENANT_KEYS = {"name", "applications"}
_APP_KEYS = {
    "short_key", "display_name", "organization_name", "scopes", "required_acr", "active",
    "clients",
}
_CLIENT_KEYS = {"name", "auth_method", "redirect_uris", "scopes", "jwks", "active",
                "id_token_signed_response_alg"}


@dataclass
class ApplyResult:
    """``changes``: human-readable diff lines (``+`` created, ``~`` changed).
    ``secrets``: client secrets of newly created clients, ``"<short_key>/<name>"`` → secret
    (shown once; empty on a dry run)."""

    changes: list[str] = field(default_factory=list)
    secrets: dict[str, str] = field(default_factory=dict)
    client_ids: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False


def load_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {p}: {exc.strerror}") from exc
    try:
        if p.suffix.lower() in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            data = tomllib.loads(text)
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as exc:
        raise InvalidInput(f"{p} is not valid {p.suffix.lstrip('.') or 'TOML'}: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise InvalidInput(f"{p}: the top level must be a table/mapping")
    return data


def _table(obj: object, where: str, allowed: set[str], required: tuple[str, ...]) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise InvalidInput(f"{where}: expected a table/mapping")
    unknown = set(obj) - allowed
    if unknown:
        raise InvalidInput(f"{where}: unknown key(s) {', '.join(sorted(map(str, unknown)))}")
    for r in required:
        if r not in obj:
            raise InvalidInput(f"{where}: missing key {r!r}")
    return dict(obj)


def _list(obj: object, where: str) -> list[Any]:
    if obj is None:
        return []
    if not isinstance(obj, list):
        raise InvalidInput(f"{where}: expected a list")
    return obj


def _bool(obj: object, where: str) -> bool:
    if not isinstance(obj, bool):
        raise InvalidInput(f"{where}: expected true or false")
    return obj


def _fmt(v: object) -> str:
    if isinstance(v, list | tuple):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


class _DryRun(Exception):
    pass


def apply_config(
    service: TenancyService, doc: Mapping[str, Any], *, now: float, dry_run: bool = False
) -> ApplyResult:
    """Make the database match ``doc`` (see module doc); return the diff."""
    top = _table(doc, "file", {"tenants"}, ())
    result = ApplyResult(dry_run=dry_run)
    try:
        with service.db.transaction() as s:
            _apply(service, s, top, now, result)
            if dry_run:
                raise _DryRun
    except _DryRun:
        result.secrets.clear()
        result.client_ids.clear()
    return result


def _apply(
    svc: TenancyService, s: Session, top: dict[str, Any], now: float, result: ApplyResult
) -> None:
    seen_apps: set[str] = set()
    for ti, traw in enumerate(_list(top.get("tenants"), "tenants")):
        tw = f"tenants[{ti}]"
        t = _table(traw, tw, _TENANT_KEYS, ("name",))
        tname = t["name"]
        known = next((x for x in svc.db.tenants(s) if x.name == tname), None)
        if known is None:
            tenant_id = svc.tenants.create_in(s, tname, now).id
            result.changes.append(f"+ tenant {tname}")
        else:
            tenant_id = known.id
        svc.db.enter(s, tenant_id)
        for ai, araw in enumerate(_list(t.get("applications"), f"{tw}.applications")):
            aw = f"{tw}.applications[{ai}]"
            a = _table(
                araw, aw, _APP_KEYS,
                ("short_key", "display_name", "organization_name", "scopes", "required_acr"),
            )
            key = a["short_key"]
            if key in seen_apps:
                raise InvalidInput(f"{aw}: application {key!r} appears twice")
            seen_apps.add(key)
            active = _bool(a.get("active", True), f"{aw}.active")
            want_scopes = list(validate_scopes(_list(a["scopes"], f"{aw}.scopes")))
            owner = svc.db.application_tenant(s, key)
            if owner is None:
                svc.applications.create_in(
                    s, tenant_id, key, display_name=a["display_name"],
                    organization_name=a["organization_name"], scopes=want_scopes,
                    required_acr=a["required_acr"], now=now, active=active,
                )
                result.changes.append(f"+ application {key} (tenant {tname}, new key set)")
                app = app_row(s, tenant_id, key, lock=True)
            else:
                if owner != tenant_id:
                    raise Conflict(f"{aw}: application {key!r} belongs to another tenant")
                app = app_row(s, tenant_id, key, lock=True)
                diffs = {
                    name: (getattr(app, name), want)
                    for name, want in (
                        ("display_name", a["display_name"]),
                        ("organization_name", a["organization_name"]),
                        ("scopes", want_scopes),
                        ("required_acr", a["required_acr"]),
                        ("active", active),
                    )
                    if getattr(app, name) != want
                }
                if diffs:
                    for name, (old, new) in diffs.items():
                        result.changes.append(
                            f"~ application {key}: {name}: {_fmt(old)} -> {_fmt(new)}"
                        )
                    union = list(dict.fromkeys([*app.scopes, *want_scopes]))
                    svc.applications.update_row(
                        s, app, now=now,
                        display_name=a["display_name"],
                        organization_name=a["organization_name"],
                        scopes=union, required_acr=a["required_acr"], active=active,
                        check_clients=False,
                    )
            seen_clients: set[str] = set()
            for ci, craw in enumerate(_list(a.get("clients"), f"{aw}.clients")):
                cw = f"{aw}.clients[{ci}]"
                c = _table(craw, cw, _CLIENT_KEYS, ("name", "auth_method", "redirect_uris"))
                cname = c["name"]
                if cname in seen_clients:
                    raise InvalidInput(f"{cw}: client {cname!r} appears twice")
                seen_clients.add(cname)
                c_scopes = list(
                    validate_scopes(_list(c.get("scopes", want_scopes), f"{cw}.scopes"),
                                    want_scopes)
                )
                c_active = _bool(c.get("active", True), f"{cw}.active")
                c_jwks = validate_client_jwks(c.get("jwks"))
                c_alg = validate_id_token_alg(
                    c.get("id_token_signed_response_alg", DEFAULT_ID_TOKEN_ALG))
                uris = _list(c["redirect_uris"], f"{cw}.redirect_uris")
                row = next((x for x in app.clients if x.name == cname), None)
                if row is None:
                    created = svc.clients.create_in(
                        s, app, auth_method=c["auth_method"], redirect_uris=uris, now=now,
                        name=cname, scopes=c_scopes, jwks=c_jwks, active=c_active,
                        id_token_alg=c_alg,
                    )
                    result.changes.append(
                        f"+ client {key}/{cname} ({c['auth_method']}, "
                        f"client_id {created.client.client_id})"
                    )
                    result.client_ids[f"{key}/{cname}"] = created.client.client_id
                    if created.secret is not None:
                        result.secrets[f"{key}/{cname}"] = created.secret
                    continue
                if row.auth_method != c["auth_method"]:
                    raise Conflict(
                        f"{cw}: client {key}/{cname} uses {row.auth_method}; the "
                        "authentication method cannot change — delete the client and apply again"
                    )
                cdiffs = {
                    name: (old, new)
                    for name, old, new in (
                        ("redirect_uris", row.redirect_uris, list(uris)),
                        ("scopes", row.scopes, c_scopes),
                        ("jwks", row.jwks, c_jwks),
                        ("active", row.active, c_active),
                        ("id_token_signed_response_alg", row.signed_response_alg, c_alg),
                    )
                    if old != new
                }
                if cdiffs:
                    for name, (old, new) in cdiffs.items():
                        shown = (
                            ("set" if old else "none", "set" if new else "none")
                            if name == "jwks" else (_fmt(old), _fmt(new))
                        )
                        result.changes.append(
                            f"~ client {key}/{cname}: {name}: {shown[0]} -> {shown[1]}"
                        )
                    svc.clients.update_row(
                        s, app, row, now=now, redirect_uris=uris, scopes=c_scopes,
                        jwks=c_jwks, active=c_active, id_token_alg=c_alg,
                    )
            if list(app.scopes) != want_scopes:
                svc.applications.update_row(s, app, now=now, scopes=want_scopes)
