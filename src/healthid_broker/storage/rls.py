"""Tenant separation in PostgreSQL: row-level security and the directory read path (T-28).

How it works (docs/decisions/0010-tenant-separation-in-postgresql.md has the reasons):

* Every tenant-owned table has row-level security ENABLED and FORCED (so the table
  owner is subject too) and a policy ``tenant_isolation`` that admits a row only when its
  tenant is the tenant of the current transaction::

      USING (tenant_id = current_setting('app.tenant_id', true))
      WITH CHECK (tenant_id = current_setting('app.tenant_id', true))

  (``tenants`` compares its ``id``). Without the setting nothing is visible and nothing
  can be written. :func:`set_tenant` sets it with ``set_config(…, true)``, i.e. for the
  current transaction only: a pooled connection never carries a tenant into the next
  transaction.
* The service connects as a *runtime role* that owns nothing, has no BYPASSRLS and no
  CREATE on the schema (:func:`role_setup_sql`); migrations run as the *owner role*.
* Lookups that must cross tenants go through three SECURITY DEFINER functions, and only
  through them. They return public routing data, never configuration or key material:

  - :data:`APPLICATION_TENANT` ``(short_key)`` → the tenant id of one application
    (the login path: a request names ``/<short_key>/…``; everything else is then read in
    a transaction of that tenant);
  - :data:`APPLICATION_DIRECTORY` ``()`` → ``(short_key, tenant_id)`` of every
    application (the key-rotation loop, operator listings);
  - :data:`TENANT_DIRECTORY` ``()`` → ``(id, name, created_at)`` of every tenant
    (operator commands that name a tenant).

  They run as the owner; the owner's own SELECT policy ``directory_read`` on
  ``applications`` and ``tenants`` admits rows only while ``current_user <> session_user``
  — inside a SECURITY DEFINER function called by another role. The owner logged in
  directly is filtered like everybody else.

SQLite (the embedded default) has no row-level security: there the same functions are
plain queries, and separation rests on the explicit tenant filters of the tenancy code.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, text
from sqlalchemy.orm import Session

__all__ = [
    "APPLICATION_DIRECTORY",
    "APPLICATION_TENANT",
    "DIRECTORY_FUNCTIONS",
    "GLOBAL_TABLES",
    "MIGRATION_LOCK",
    "TENANT_DIRECTORY",
    "TENANT_OWNED_TABLES",
    "TENANT_SETTING",
    "TenantEntry",
    "application_directory",
    "application_tenant",
    "catalog_problems",
    "role_setup_sql",
    "runtime_role_problems",
    "runtime_role_problems_of",
    "set_tenant",
    "tenant_directory",
]

TENANT_SETTING = "app.tenant_id"

#: Tenant-owned tables and the column that names their tenant. A table created later
#: that has a ``tenant_id`` column, or that is not in :data:`GLOBAL_TABLES`, must get
#: its policy in the migration that creates it (tests/storage/test_rls.py checks the
#: live catalog).
TENANT_OWNED_TABLES: dict[str, str] = {
    "tenants": "id",
    "tenant_data_keys": "tenant_id",
    "applications": "tenant_id",
    "clients": "tenant_id",
    "app_keys": "tenant_id",
}

#: Tables that belong to no tenant (no policy).
GLOBAL_TABLES: frozenset[str] = frozenset({"alembic_version"})

APPLICATION_TENANT = "healthid_application_tenant"
APPLICATION_DIRECTORY = "healthid_application_directory"
TENANT_DIRECTORY = "healthid_tenant_directory"
#: The only SECURITY DEFINER functions of the schema (a test checks the catalog).
DIRECTORY_FUNCTIONS: frozenset[str] = frozenset(
    {APPLICATION_TENANT, APPLICATION_DIRECTORY, TENANT_DIRECTORY}
)

#: Key of the transaction-level advisory lock every migration and role set-up holds
#: (concurrent ``db upgrade`` / ``init`` / ``db roles --apply`` run one after another).
MIGRATION_LOCK = 0x6865616C74686964  # "healthid"


@dataclass(frozen=True)
class TenantEntry:
    """One row of the tenant directory (no configuration, no keys)."""

    id: str
    name: str
    created_at: float


def _postgres(bind: Session | Connection) -> bool:
    engine_or_conn = bind.get_bind() if isinstance(bind, Session) else bind
    return engine_or_conn.dialect.name == "postgresql"


def set_tenant(bind: Session | Connection, tenant_id: str) -> None:
    """Make ``tenant_id`` the tenant of the current transaction (until it ends).

    May be called again inside one transaction to switch tenants (``apply`` does, for a
    file that names several). A no-op on SQLite.
    """
    if _postgres(bind):
        bind.execute(text("SELECT set_config(:k, :v, true)"),
                     {"k": TENANT_SETTING, "v": tenant_id})


def application_tenant(bind: Session | Connection, short_key: str) -> str | None:
    """The tenant id of the application ``short_key`` (the directory read path)."""
    if _postgres(bind):
        sql = "SELECT healthid_application_tenant(:k)"
    else:
        sql = "SELECT tenant_id FROM applications WHERE short_key = :k"
    value = bind.execute(text(sql), {"k": short_key}).scalar()
    return None if value is None else str(value)


def application_directory(bind: Session | Connection) -> list[tuple[str, str]]:
    """``(short_key, tenant_id)`` of every application, ordered by short key."""
    if _postgres(bind):
        sql = ("SELECT short_key, tenant_id FROM healthid_application_directory() "
               "ORDER BY short_key")
    else:
        sql = "SELECT short_key, tenant_id FROM applications ORDER BY short_key"
    return [(str(k), str(t)) for k, t in bind.execute(text(sql))]


def tenant_directory(bind: Session | Connection) -> list[TenantEntry]:
    """Every tenant's id, name and creation time, ordered by name."""
    if _postgres(bind):
        sql = "SELECT id, name, created_at FROM healthid_tenant_directory() ORDER BY name"
    else:
        sql = "SELECT id, name, created_at FROM tenants ORDER BY name"
    return [TenantEntry(str(i), str(n), float(c)) for i, n, c in bind.execute(text(sql))]


# ---------------------------------------------------------------- catalog check

_TENANT_CHECK = "current_setting('app.tenant_id'::text, true)"


def catalog_problems(conn: Connection) -> list[str]:
    """What the live PostgreSQL catalog of the current schema gets wrong about tenant
    separation (empty when all is well). Checked:

    * every table that is not in :data:`GLOBAL_TABLES`, and every table with a
      ``tenant_id`` column, has row-level security enabled and forced and a policy for
      ALL commands whose USING and WITH CHECK compare with the transaction's tenant;
    * no other policy admits rows, except the owner's ``directory_read`` (SELECT,
      inside SECURITY DEFINER calls only);
    * the SECURITY DEFINER functions are exactly :data:`DIRECTORY_FUNCTIONS`, each with
      a fixed ``search_path``.
    """
    problems: list[str] = []
    tables = {
        str(name): (bool(rls), bool(force))
        for name, rls, force in conn.execute(text(
            "SELECT c.relname, c.relrowsecurity, c.relforcerowsecurity FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p')"))
    }
    with_tenant = {
        str(r[0]) for r in conn.execute(text(
            "SELECT table_name FROM information_schema.columns "
            "WHERE table_schema = current_schema() AND column_name = 'tenant_id'"))
    }
    policies: dict[str, list[tuple[str, str, list[str], str, str]]] = {}
    for table, name, cmd, roles, qual, check in conn.execute(text(
            "SELECT tablename, policyname, cmd, roles, qual, with_check FROM pg_policies "
            "WHERE schemaname = current_schema()")):
        policies.setdefault(str(table), []).append(
            (str(name), str(cmd), [str(r) for r in roles], str(qual or ""), str(check or "")))
    for table in sorted(tables):
        if table in GLOBAL_TABLES and table not in with_tenant:
            continue
        rls, force = tables[table]
        if not rls:
            problems.append(f"{table}: row-level security is not enabled")
        if not force:
            problems.append(f"{table}: row-level security is not forced")
        isolating = [
            p for p in policies.get(table, [])
            if p[1] == "ALL" and _TENANT_CHECK in p[3] and _TENANT_CHECK in p[4]
        ]
        if not isolating:
            problems.append(f"{table}: no policy restricts it to the transaction's tenant")
        for name, cmd, roles, qual, _check in policies.get(table, []):
            if any(p[0] == name for p in isolating):
                continue
            directory = (name == "directory_read" and cmd == "SELECT"
                         and "public" not in roles and "SESSION_USER" in qual)
            if not directory:
                problems.append(f"{table}: policy {name} admits rows of other tenants")
    functions = {
        str(name): list(config or [])
        for name, config in conn.execute(text(
            "SELECT p.proname, p.proconfig FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE n.nspname = current_schema() AND p.prosecdef"))
    }
    for name in sorted(set(functions) - DIRECTORY_FUNCTIONS):
        problems.append(f"function {name}: SECURITY DEFINER outside the directory read path")
    for name in sorted(DIRECTORY_FUNCTIONS - set(functions)):
        problems.append(f"function {name}: missing")
    for name, config in functions.items():
        if not any(c.startswith("search_path=") for c in config):
            problems.append(f"function {name}: SECURITY DEFINER without a fixed search_path")
    return problems


def runtime_role_problems(conn: Connection) -> list[str]:
    """Why the role of ``conn`` is not fit to be the broker's runtime role (T-15), empty
    when it is: a superuser or BYPASSRLS role escapes row-level security, and an owner
    of the tables or a role with CREATE on the schema can change the rules. Meant for a
    start-up check of the shared shape."""
    problems: list[str] = []
    row = conn.execute(text(
        "SELECT r.rolname, r.rolsuper, r.rolbypassrls, "
        "has_schema_privilege(current_user, current_schema(), 'CREATE'), "
        "EXISTS (SELECT FROM pg_tables t WHERE t.schemaname = current_schema() "
        "AND t.tableowner = current_user) "
        "FROM pg_roles r WHERE r.rolname = current_user")).one()
    name, superuser, bypass, create, owns = row
    if superuser:
        problems.append(f"role {name} is a superuser (row-level security does not apply)")
    if bypass:
        problems.append(f"role {name} has BYPASSRLS")
    if owns:
        problems.append(f"role {name} owns the schema's tables (use the runtime role)")
    if create:
        problems.append(f"role {name} may CREATE in the schema (DDL)")
    return problems


def runtime_role_problems_of(engine: Engine) -> list[str]:
    """:func:`runtime_role_problems` for a PostgreSQL engine; nothing to report for SQLite
    (the embedded shape has no roles: docs/tenancy.md says what it does not enforce)."""
    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as conn:
        return runtime_role_problems(conn)


# ---------------------------------------------------------------- roles

_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _ident(name: str, what: str) -> str:
    if not _ROLE_NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r}: use lower-case letters, digits and _ (max 63)")
    return f'"{name}"'


def role_setup_sql(*, owner: str, runtime: str, database: str,
                   schema: str = "public") -> Sequence[str]:
    """The statements that create (or correct) the owner and the runtime role.

    Run by an administrator (a superuser or a role with CREATEROLE that owns the
    database), before or after ``db upgrade``; running them again changes nothing.

    * ``owner``: LOGIN, owns the schema objects, runs migrations; no superuser, no
      BYPASSRLS (row-level security is FORCED on its tables, so it is filtered too).
    * ``runtime``: LOGIN, NOINHERIT, no superuser, no BYPASSRLS, no CREATEDB/CREATEROLE;
      USAGE (not CREATE) on the schema; exactly SELECT, INSERT, UPDATE, DELETE on the
      owner's tables — present and future (default privileges) — and SELECT only on
      ``alembic_version``.
    * CONNECT on the database is revoked from PUBLIC and granted to the two roles;
      CREATE on the schema is revoked from PUBLIC.

    Passwords are not part of it: set them with ``ALTER ROLE … PASSWORD`` (or psql's
    ``\\password``), or use certificate/peer authentication.
    """
    o = _ident(owner, "owner role")
    r = _ident(runtime, "runtime role")
    s = _ident(schema, "schema")
    if owner == runtime:
        raise ValueError("the owner and the runtime role must differ (T-15)")
    db = '"' + database.replace('"', '""') + '"'
    attrs = "NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"

    def create(role: str, name: str, extra: str) -> str:
        # CREATE ROLE has no IF NOT EXISTS; duplicate_object covers a race with another
        # database's set-up (roles are cluster-wide, the advisory lock is per database).
        return (
            "DO $$ BEGIN "
            f"IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{name}') THEN "
            f"CREATE ROLE {role} LOGIN {attrs} {extra}; END IF; "
            "EXCEPTION WHEN duplicate_object THEN NULL; END $$"
        )

    return (
        f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})",
        create(o, owner, "INHERIT"),
        create(r, runtime, "NOINHERIT"),
        f"ALTER ROLE {o} LOGIN {attrs}",
        f"ALTER ROLE {r} LOGIN NOINHERIT {attrs}",
        f"REVOKE ALL ON DATABASE {db} FROM PUBLIC",
        f"GRANT CONNECT ON DATABASE {db} TO {o}",
        f"GRANT CONNECT ON DATABASE {db} TO {r}",
        f"REVOKE CREATE ON SCHEMA {s} FROM PUBLIC",
        f"GRANT USAGE, CREATE ON SCHEMA {s} TO {o}",
        f"GRANT USAGE ON SCHEMA {s} TO {r}",
        f"REVOKE CREATE ON SCHEMA {s} FROM {r}",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {o} IN SCHEMA {s} "
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {r}",
        # Tables that exist already (set-up after the first migration); the names are
        # checked identifiers (_ident), so formatting them in is safe.
        "DO $$ DECLARE t record; BEGIN "  # noqa: S608
        f"FOR t IN SELECT tablename FROM pg_tables WHERE schemaname = '{schema}' "
        f"AND tableowner = '{owner}' LOOP "
        f"EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON %I.%I TO {r}', "
        f"'{schema}', t.tablename); END LOOP; END $$",
        "DO $$ BEGIN "
        f"IF to_regclass('{schema}.alembic_version') IS NOT NULL THEN "
        f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON {s}.alembic_version FROM {r}; "
        "END IF; END $$",
    )
