"""CLI: ``tenant``, ``app``, ``client``, ``keys``, ``apply`` and ``db`` sub-commands.

Every command takes ``--data-dir`` (default ``./data``), ``--database-url`` (default
SQLite in the data directory), ``--key-provider`` (``file`` | ``env`` | ``env:VAR``) and
``--json``. A database that is behind is migrated on first use when the connecting role
may (SQLite; the PostgreSQL owner role). Private keys never appear in the output; a
client secret is printed once, when it is created.

``db upgrade`` runs the migrations (PostgreSQL: with the owner role's URL); ``db roles``
prints — or with ``--apply`` runs — the SQL that creates the owner and the runtime role
(T-15; :mod:`healthid_broker.storage.rls`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from healthid_broker.crypto.app_signing import DEFAULT_ID_TOKEN_ALG, ID_TOKEN_ALGS
from healthid_broker.crypto.envelope import EnvelopeError
from healthid_broker.crypto.key_provider import KeyProviderError, load_key_provider
from healthid_broker.storage import (
    SchemaError,
    default_database_url,
    migrate,
    open_database,
    setup_roles,
)
from healthid_broker.storage.rls import role_setup_sql

from ..tenancy.errors import TenancyError
from ..tenancy.service import ENVIRONMENTS, TenancyService
from ..tenancy.validation import ACR_VALUES, AUTH_METHODS
from ..tenancy.views import ApplicationView, KeyChange

__all__ = ["add_commands", "service_from_args"]

Handler = Callable[[argparse.Namespace], int]


def _common() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--data-dir", default="./data", help="data directory (default ./data)")
    p.add_argument(
        "--database-url",
        default=None,
        help="SQLAlchemy URL (default sqlite:///<data-dir>/broker.db)",
    )
    p.add_argument(
        "--key-provider",
        default=os.environ.get("HEALTHID_BROKER_KEY_PROVIDER", "file"),
        help="key-encryption key source: file (DATA_DIR/kek.key), env, env:VAR",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def _db_url(args: argparse.Namespace) -> str:
    return str(args.database_url or default_database_url(args.data_dir))


def service_from_args(args: argparse.Namespace) -> TenancyService:
    """A :class:`TenancyService` for the parsed common options (migrates the embedded
    database). A KEK is made here only in the embedded shape: on PostgreSQL it comes from
    `healthid-broker init`, so a node with an empty data directory cannot start a second
    KEK (docs/decisions/0009)."""
    from healthid_broker.runtime.secrets import is_shared_shape

    url = _db_url(args)
    _engine, factory = open_database(url)
    create = not is_shared_shape(url, None)
    return TenancyService(factory, load_key_provider(args.key_provider, args.data_dir,
                                                     create=create))


def _out(args: argparse.Namespace, data: Any, text: str) -> None:
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(text)


def _guard(fn: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (TenancyError, KeyProviderError, EnvelopeError, SchemaError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1

    run.__doc__ = fn.__doc__
    return run


def _app_text(a: ApplicationView) -> str:
    lines = [
        f"{a.short_key}  ({'active' if a.active else 'INACTIVE'})",
        f"  tenant:        {a.tenant_name}",
        f"  display name:  {a.display_name}",
        f"  organisation:  {a.organization_name}",
        f"  scopes:        {' '.join(a.scopes)}",
        f"  required acr:  {a.required_acr}",
        f"  clients:       {len(a.clients)}",
    ]
    for c in a.clients:
        lines.append(
            f"    - {c.name}: {c.client_id} ({c.auth_method}, ID token {c.id_token_alg}"
            f"{'' if c.active else ', INACTIVE'})"
        )
        lines.extend(f"      DEVIATION: {d}" for d in c.deviations)
    return "\n".join(lines)


def _changes_text(changes: tuple[KeyChange, ...]) -> str:
    if not changes:
        return "no key changes due"
    return "\n".join(
        f"{c.purpose:15} {c.kid}  {c.change}"
        + (f" (becomes current at {time.strftime('%Y-%m-%d %H:%M:%SZ', time.gmtime(c.at))})"
           if c.change == "pending" else "")
        for c in changes
    )


def _change_dict(c: KeyChange) -> dict[str, Any]:
    return {"purpose": c.purpose, "kid": c.kid, "change": c.change, "at": c.at}


# ---------------------------------------------------------------- tenant


@_guard
def _tenant_create(args: argparse.Namespace) -> int:
    t = service_from_args(args).create_tenant(args.name, now=time.time())
    _out(args, {"id": t.id, "name": t.name}, f"created tenant {t.name} ({t.id})")
    return 0


@_guard
def _tenant_list(args: argparse.Namespace) -> int:
    ts = service_from_args(args).list_tenants()
    _out(args, [{"id": t.id, "name": t.name} for t in ts],
         "\n".join(f"{t.name}  {t.id}" for t in ts) or "no tenants")
    return 0


@_guard
def _tenant_show(args: argparse.Namespace) -> int:
    svc = service_from_args(args)
    t = svc.get_tenant(args.name)
    if t is None:
        print(f"error: no tenant {args.name!r}", file=sys.stderr)
        return 1
    apps = svc.list_applications(t.name)
    _out(
        args,
        {"id": t.id, "name": t.name, "created_at": t.created_at,
         "applications": [a.short_key for a in apps]},
        f"{t.name}  {t.id}\n  applications: {', '.join(a.short_key for a in apps) or '-'}",
    )
    return 0


# ---------------------------------------------------------------- app


@_guard
def _app_create(args: argparse.Namespace) -> int:
    scopes = args.scope or ["openid"]
    a = service_from_args(args).create_application(
        args.tenant, args.short_key, display_name=args.name or args.short_key,
        organization_name=args.organization, scopes=scopes, required_acr=args.acr,
        now=time.time(),
    )
    _out(args, a.summary(), "created application (with a new key set)\n" + _app_text(a))
    return 0


@_guard
def _app_list(args: argparse.Namespace) -> int:
    apps = service_from_args(args).list_applications(args.tenant)
    _out(
        args,
        [a.summary() for a in apps],
        "\n".join(
            f"{a.short_key}  {a.tenant_name}  {a.display_name}"
            f"{'' if a.active else '  INACTIVE'}"
            for a in apps
        ) or "no applications",
    )
    return 0


@_guard
def _app_show(args: argparse.Namespace) -> int:
    svc = service_from_args(args)
    a = svc.get_application(args.short_key)
    if a is None:
        print(f"error: no application with short key {args.short_key!r}", file=sys.stderr)
        return 1
    keys = svc.key_infos(a.short_key)
    data = a.summary()
    data["keys"] = [
        {"purpose": k.purpose, "kid": k.kid, "state": k.state, "created_at": k.created_at,
         "activated_at": k.activated_at, "retired_at": k.retired_at, "not_after": k.not_after}
        for k in keys
    ]
    text = _app_text(a) + "\n  keys:\n" + "\n".join(
        f"    {k.purpose:15} {k.kid}  {k.state}" for k in keys
    )
    _out(args, data, text)
    return 0


@_guard
def _app_deactivate(args: argparse.Namespace) -> int:
    a = service_from_args(args).deactivate_application(args.short_key, now=time.time())
    _out(args, a.summary(), f"deactivated application {a.short_key}")
    return 0


@_guard
def _app_rotate(args: argparse.Namespace) -> int:
    changes = service_from_args(args).rotate_keys(
        args.short_key, time.time(), force=args.force, purposes=args.purpose or None
    )
    _out(args, [_change_dict(c) for c in changes], _changes_text(changes))
    return 0


@_guard
def _app_registration(args: argparse.Namespace) -> int:
    data = service_from_args(args).registration_data(
        args.short_key, base=args.base, environment=args.environment, now=time.time()
    )
    text = "\n".join(
        [
            f"entity id:     {data['entity_id']}",
            f"organisation:  {data['organization_name']}",
            f"environment:   {data['environment']}",
            f"scopes:        {' '.join(data['scopes'])}",
            "federation signing keys:",
        ]
        + [f"kid {k['kid']}\n{k['pem']}" for k in data["keys"]]
    )
    _out(args, data, text)
    return 0


# ---------------------------------------------------------------- client


@_guard
def _client_create(args: argparse.Namespace) -> int:
    jwks = None
    if args.jwks:
        try:
            with open(args.jwks, encoding="utf-8") as fh:
                jwks = json.load(fh)
        except (OSError, ValueError) as exc:
            print(f"error: cannot read JWKS file {args.jwks}: {exc}", file=sys.stderr)
            return 1
    created = service_from_args(args).create_client(
        args.short_key, auth_method=args.auth_method, redirect_uris=args.redirect_uri,
        now=time.time(), name=args.name, scopes=args.scope or None, jwks=jwks,
        id_token_alg=args.id_token_alg,
        require_par=args.require_par,
    )
    data = created.client.summary()
    text = f"created client {created.client.name}\n  client_id: {created.client.client_id}"
    text += "".join(f"\n  DEVIATION: {d}" for d in created.client.deviations)
    if created.secret is not None:
        data["client_secret"] = created.secret
        text += (
            f"\n  client_secret: {created.secret}\n"
            "  (shown once; only a keyed hash is stored — copy it now)"
        )
    _out(args, data, text)
    return 0


@_guard
def _client_list(args: argparse.Namespace) -> int:
    cs = service_from_args(args).list_clients(args.short_key)
    _out(args, [c.summary() for c in cs],
         "\n".join(f"{c.name}  {c.client_id}  {c.auth_method}"
                   f"{'' if c.active else '  INACTIVE'}" for c in cs) or "no clients")
    return 0


@_guard
def _client_show(args: argparse.Namespace) -> int:
    svc = service_from_args(args)
    for c in svc.list_clients(args.short_key):
        if args.client in (c.client_id, c.name):
            d = c.summary()
            text = "\n".join(f"{k}: {_plain(v)}" for k, v in d.items() if k != "deviations")
            text += "".join(f"\nDEVIATION: {dev}" for dev in c.deviations)
            _out(args, d, text)
            return 0
    print(f"error: application {args.short_key!r} has no client {args.client!r}",
          file=sys.stderr)
    return 1


def _plain(v: Any) -> str:
    if isinstance(v, list):
        return " ".join(str(x) for x in v)
    if isinstance(v, dict):
        return json.dumps(v)
    return str(v)


@_guard
def _client_update(args: argparse.Namespace) -> int:
    view = service_from_args(args).update_client(
        args.short_key, args.client, now=time.time(),
        redirect_uris=args.redirect_uri or None, scopes=args.scope or None,
        require_par=args.require_par, id_token_alg=args.id_token_alg)
    d = view.summary()
    text = f"updated client {view.name}\n" + "\n".join(
        f"{k}: {_plain(v)}" for k, v in d.items() if k != "deviations")
    text += "".join(f"\nDEVIATION: {dev}" for dev in view.deviations)
    _out(args, d, text)
    return 0


@_guard
def _client_delete(args: argparse.Namespace) -> int:
    service_from_args(args).delete_client(args.short_key, args.client)
    _out(args, {"deleted": args.client}, f"deleted client {args.client}")
    return 0


# ---------------------------------------------------------------- keys, apply, db


@_guard
def _keys_rotate_due(args: argparse.Namespace) -> int:
    done = service_from_args(args).rotate_due(time.time())
    _out(
        args,
        {k: [_change_dict(c) for c in v] for k, v in done.items()},
        "\n".join(f"{k}:\n" + _changes_text(v) for k, v in done.items()) or "no key changes due",
    )
    return 0


@_guard
def _apply(args: argparse.Namespace) -> int:
    from ..tenancy.apply import apply_config, load_config

    doc = load_config(args.file)
    result = apply_config(service_from_args(args), doc, now=time.time(), dry_run=args.dry_run)
    data = {
        "dry_run": result.dry_run,
        "changes": result.changes,
        "client_ids": result.client_ids,
        "client_secrets": result.secrets,
    }
    lines = list(result.changes) or ["no changes"]
    if result.dry_run and result.changes:
        lines.append("(dry run: nothing was written)")
    for k, secret in result.secrets.items():
        lines.append(f"client_secret for {k} (shown once): {secret}")
    _out(args, data, "\n".join(lines))
    return 0


@_guard
def _db_upgrade(args: argparse.Namespace) -> int:
    migrate(_db_url(args))
    _out(args, {"upgraded": True}, "database is at the newest schema")
    return 0


def _db_roles(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    database = args.database or (make_url(args.database_url).database
                                 if args.database_url else None)
    if not database:
        print("error: name the database with --database or --database-url", file=sys.stderr)
        return 2
    try:
        statements = role_setup_sql(owner=args.owner, runtime=args.runtime, database=database)
        if not args.apply:
            print(";\n".join(statements) + ";")
            return 0
        if not args.database_url:
            print("error: --apply needs --database-url (an administrator's URL)",
                  file=sys.stderr)
            return 2
        setup_roles(args.database_url, owner=args.owner, runtime=args.runtime)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except DBAPIError as exc:
        first = (str(exc.orig).splitlines() or [""])[0]
        print(f"error: setting up the roles failed: {type(exc.orig).__name__}: {first}",
              file=sys.stderr)
        return 1
    print(f"roles {args.owner} (owner, runs migrations) and {args.runtime} (runtime) "
          f"are set up on {database}")
    return 0


def add_commands(subparsers: Any) -> None:
    common = _common()

    tenant = subparsers.add_parser("tenant", help="tenants").add_subparsers(
        dest="tenant_command", required=True, metavar="ACTION")
    p = tenant.add_parser("create", parents=[common], help="create a tenant")
    p.add_argument("name")
    p.set_defaults(func=_tenant_create)
    p = tenant.add_parser("list", parents=[common], help="list tenants")
    p.set_defaults(func=_tenant_list)
    p = tenant.add_parser("show", parents=[common], help="show a tenant")
    p.add_argument("name")
    p.set_defaults(func=_tenant_show)

    app = subparsers.add_parser("app", help="applications (federation entities)").add_subparsers(
        dest="app_command", required=True, metavar="ACTION")
    p = app.add_parser("create", parents=[common], help="create an application and its keys")
    p.add_argument("short_key")
    p.add_argument("--tenant", required=True)
    p.add_argument("--name", help="display name (default: the short key)")
    p.add_argument("--organization", required=True, help="organisation name")
    p.add_argument("--scope", action="append", help="allowed scope (repeatable)")
    p.add_argument("--acr", choices=ACR_VALUES, default=ACR_VALUES[0])
    p.set_defaults(func=_app_create)
    p = app.add_parser("list", parents=[common], help="list applications")
    p.add_argument("--tenant")
    p.set_defaults(func=_app_list)
    p = app.add_parser("show", parents=[common], help="show an application and its keys")
    p.add_argument("short_key")
    p.set_defaults(func=_app_show)
    p = app.add_parser("deactivate", parents=[common], help="deactivate an application")
    p.add_argument("short_key")
    p.set_defaults(func=_app_deactivate)
    p = app.add_parser("rotate-keys", parents=[common], help="do the due key rotation steps")
    p.add_argument("short_key")
    p.add_argument("--force", action="store_true",
                   help="publish a next key now (it becomes current after >= 24 h, A_24607)")
    p.add_argument("--purpose", action="append",
                   choices=["federation_sig", "mtls", "id_token_enc", "id_token_sig"],
                   help="limit --force to these key purposes (repeatable)")
    p.set_defaults(func=_app_rotate)
    p = app.add_parser("registration", parents=[common],
                       help="print what gematik's registration needs")
    p.add_argument("short_key")
    p.add_argument("--base", required=True, help="public base URL of the broker")
    p.add_argument("--environment", choices=ENVIRONMENTS, default="tu")
    p.set_defaults(func=_app_registration)

    client = subparsers.add_parser("client", help="OIDC clients of an application")
    csub = client.add_subparsers(dest="client_command", required=True, metavar="ACTION")
    p = csub.add_parser("create", parents=[common], help="create a client")
    p.add_argument("short_key")
    p.add_argument("--name", help="client name (default: generated)")
    p.add_argument("--auth-method", choices=list(AUTH_METHODS), default="client_secret_basic")
    p.add_argument("--redirect-uri", action="append", required=True, help="(repeatable)")
    p.add_argument("--scope", action="append", help="(repeatable; default: the app's scopes)")
    p.add_argument("--jwks", help="JSON file with the client's public JWKS")
    p.add_argument("--id-token-alg", choices=list(ID_TOKEN_ALGS), default=DEFAULT_ID_TOKEN_ALG,
                   help="id_token_signed_response_alg (RS256 deviates from BSI TR-02102-1)")
    p.add_argument("--require-par", action="store_true",
                   help="the client must push its authorization requests (RFC 9126 PAR)")
    p.set_defaults(func=_client_create)
    p = csub.add_parser("update", parents=[common], help="change a client's settings")
    p.add_argument("short_key")
    p.add_argument("client", help="client_id or name")
    p.add_argument("--redirect-uri", action="append",
                   help="(repeatable; replaces the registered redirect URIs)")
    p.add_argument("--scope", action="append", help="(repeatable; replaces the scopes)")
    p.add_argument("--require-par", action=argparse.BooleanOptionalAction, default=None,
                   help="the client must (or need not) use the PAR endpoint (RFC 9126)")
    p.add_argument("--id-token-alg", choices=list(ID_TOKEN_ALGS),
                   help="id_token_signed_response_alg (RS256 deviates from BSI TR-02102-1)")
    p.set_defaults(func=_client_update)
    p = csub.add_parser("list", parents=[common], help="list clients")
    p.add_argument("short_key")
    p.set_defaults(func=_client_list)
    p = csub.add_parser("show", parents=[common], help="show a client")
    p.add_argument("short_key")
    p.add_argument("client", help="client_id or name")
    p.set_defaults(func=_client_show)
    p = csub.add_parser("delete", parents=[common], help="delete a client")
    p.add_argument("short_key")
    p.add_argument("client", help="client_id or name")
    p.set_defaults(func=_client_delete)

    keys = subparsers.add_parser("keys", help="key maintenance").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION")
    p = keys.add_parser("rotate-due", parents=[common],
                        help="rotate every application's keys that are due (run daily)")
    p.set_defaults(func=_keys_rotate_due)

    p = subparsers.add_parser("apply", parents=[common],
                              help="apply a declarative TOML/YAML description")
    p.add_argument("file")
    p.add_argument("--dry-run", action="store_true", help="show the diff, change nothing")
    p.set_defaults(func=_apply)

    db = subparsers.add_parser("db", help="database maintenance").add_subparsers(
        dest="db_command", required=True, metavar="ACTION")
    p = db.add_parser("upgrade", parents=[common],
                      help="run the migrations (PostgreSQL: as the owner role)")
    p.set_defaults(func=_db_upgrade)
    p = db.add_parser(
        "roles", help="print (or --apply) the SQL creating the owner and runtime roles",
        description="The owner role owns the schema and runs `db upgrade`; the runtime "
        "role, which the broker connects as, may only read and write rows (no DDL, no "
        "BYPASSRLS). Passwords are not set: use ALTER ROLE ... PASSWORD, or certificates.")
    p.add_argument("--owner", required=True, help="name of the owner role")
    p.add_argument("--runtime", required=True, help="name of the runtime role")
    p.add_argument("--database-url", default=None,
                   help="an administrator's URL of the database (superuser, or CREATEROLE "
                        "and owner of the database)")
    p.add_argument("--database", default=None, help="database name (when printing only)")
    p.add_argument("--apply", action="store_true", help="run the SQL instead of printing it")
    p.set_defaults(func=_db_roles)
