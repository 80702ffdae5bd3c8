"""Tenant separation in PostgreSQL (T-15, T-28), on the real server: the runtime role
cannot see or change another tenant's rows, cannot switch row-level security off, cannot
run DDL; the catalog check fails for a tenant-owned table without its policy."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import errors
from sqlalchemy import text

from healthid_broker.crypto.key_provider import StaticKeyProvider
from healthid_broker.storage import (
    SchemaError,
    make_engine,
    migrate,
    open_database,
    setup_roles,
)
from healthid_broker.storage.db import current_revision, head_revision
from healthid_broker.storage.rls import (
    DIRECTORY_FUNCTIONS,
    GLOBAL_TABLES,
    TENANT_OWNED_TABLES,
    catalog_problems,
    runtime_role_problems,
)
from healthid_broker.tenancy import TenancyService

pytestmark = pytest.mark.postgres

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
NOW = 1_800_000_000.0
TENANT_TABLES = ("tenants", "tenant_data_keys", "applications", "clients", "app_keys")


def _plain(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://")


@pytest.fixture
def two_tenants(pg_roles: Any) -> Iterator[tuple[TenancyService, dict[str, str]]]:
    """Tenants ``alpha`` and ``beta``, one application and one client each, created
    through the service connected as the runtime role."""
    engine, factory = open_database(pg_roles.runtime_url)
    svc = TenancyService(factory, StaticKeyProvider.generate())
    ids = {}
    for name in ("alpha", "beta"):
        ids[name] = svc.create_tenant(name, now=NOW).id
        svc.create_application(name, f"{name}-app", display_name=name, organization_name=name,
                               scopes=["openid"], required_acr="gematik-ehealth-loa-high",
                               now=NOW)
        svc.create_client(f"{name}-app", auth_method="client_secret_basic",
                          redirect_uris=["https://app.example/cb"], now=NOW, name="web")
    try:
        yield svc, ids
    finally:
        engine.dispose()


def _runtime(pg_roles: Any) -> psycopg.Connection:
    return psycopg.connect(_plain(pg_roles.runtime_url))


def test_roles_are_what_the_design_says(pg_roles: Any) -> None:
    with psycopg.connect(_plain(pg_roles.admin_url)) as conn:
        rows = dict(
            (r[0], r[1:]) for r in conn.execute(
                "SELECT rolname, rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, "
                "rolinherit FROM pg_roles WHERE rolname = ANY(%s)",
                [[pg_roles.owner, pg_roles.runtime]])
        )
        assert rows[pg_roles.runtime] == (False, False, False, False, False)
        assert rows[pg_roles.owner][:4] == (False, False, False, False)
        owners = {r[0] for r in conn.execute(
            "SELECT tableowner FROM pg_tables WHERE schemaname = 'public'")}
        assert owners == {pg_roles.owner}
        privs = {
            (r[0], r[1]) for r in conn.execute(
                "SELECT table_name, privilege_type FROM information_schema.role_table_grants "
                "WHERE grantee = %s", [pg_roles.runtime])
        }
    for table in TENANT_TABLES:
        assert {p for t, p in privs if t == table} == {"SELECT", "INSERT", "UPDATE", "DELETE"}
    assert {p for t, p in privs if t == "alembic_version"} == {"SELECT"}


def test_runtime_role_check(pg_roles: Any) -> None:
    checks = {}
    for name, url in (("runtime", pg_roles.runtime_url), ("owner", pg_roles.owner_url),
                      ("admin", pg_roles.admin_url)):
        engine = make_engine(url)
        with engine.connect() as conn:
            checks[name] = runtime_role_problems(conn)
        engine.dispose()
    assert checks["runtime"] == []
    assert checks["owner"] == [
        f"role {pg_roles.owner} owns the schema's tables (use the runtime role)",
        f"role {pg_roles.owner} may CREATE in the schema (DDL)",
    ]
    assert checks["admin"][:2] == [
        "role postgres is a superuser (row-level security does not apply)",
        "role postgres has BYPASSRLS",
    ]


def test_query_without_tenant_filter_sees_only_its_tenant(
    pg_roles: Any, two_tenants: tuple[TenancyService, dict[str, str]]
) -> None:
    _svc, ids = two_tenants
    with _runtime(pg_roles) as conn:
        # No tenant set: nothing tenant-owned is visible at all.
        for table in TENANT_TABLES:
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
        conn.rollback()
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", [ids["alpha"]])
        for table in TENANT_TABLES:
            column = TENANT_OWNED_TABLES[table]
            seen = {r[0] for r in conn.execute(f"SELECT {column} FROM {table}")}
            assert seen == {ids["alpha"]}, table
        # A forgotten filter in a write touches only the own tenant's rows ...
        updated = conn.execute("UPDATE applications SET display_name = 'x'").rowcount
        assert updated == 1
        deleted = conn.execute("DELETE FROM clients").rowcount
        assert deleted == 1
        conn.rollback()
    # ... and rows of the other tenant cannot be written into from here.
    with _runtime(pg_roles) as conn:
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", [ids["alpha"]])
        with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
            conn.execute(
                "INSERT INTO tenant_data_keys (id, tenant_id, kek_id, wrapped_key, created_at) "
                "VALUES ('x', %s, 'k', '\\x00', 0)", [ids["beta"]])
    with _runtime(pg_roles) as conn:
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", [ids["alpha"]])
        with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("UPDATE tenant_data_keys SET tenant_id = %s", [ids["beta"]])


def test_tenant_setting_ends_with_the_transaction(
    pg_roles: Any, two_tenants: tuple[TenancyService, dict[str, str]]
) -> None:
    _svc, ids = two_tenants
    with _runtime(pg_roles) as conn:
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", [ids["beta"]])
        assert conn.execute("SELECT count(*) FROM applications").fetchone() == (1,)
        conn.commit()
        assert conn.execute("SELECT count(*) FROM applications").fetchone() == (0,)


@pytest.mark.parametrize("statement", [
    "ALTER TABLE applications DISABLE ROW LEVEL SECURITY",
    "ALTER TABLE clients NO FORCE ROW LEVEL SECURITY",
    "DROP POLICY tenant_isolation ON app_keys",
    "CREATE POLICY open ON tenants FOR SELECT USING (true)",
    "CREATE TABLE escape (id int)",
    "CREATE FUNCTION peek() RETURNS int LANGUAGE sql SECURITY DEFINER AS $$ SELECT 1 $$",
    "ALTER TABLE applications ADD COLUMN note text",
    "TRUNCATE clients",
    "UPDATE alembic_version SET version_num = '0001'",
    "SET ROLE postgres",
])
def test_runtime_role_cannot_change_the_rules(pg_roles: Any, statement: str) -> None:
    with _runtime(pg_roles) as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute(statement)


def test_row_security_off_errors_instead_of_showing_rows(
    pg_roles: Any, two_tenants: tuple[TenancyService, dict[str, str]]
) -> None:
    with _runtime(pg_roles) as conn:
        conn.execute("SET row_security = off")  # allowed, but it cannot bypass anything:
        with pytest.raises(errors.InsufficientPrivilege, match="row-level security"):
            conn.execute("SELECT * FROM applications")


def test_owner_logged_in_directly_is_filtered_too(
    pg_roles: Any, two_tenants: tuple[TenancyService, dict[str, str]]
) -> None:
    _svc, ids = two_tenants
    with psycopg.connect(_plain(pg_roles.owner_url)) as conn:
        for table in TENANT_TABLES:
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
        conn.execute("SELECT set_config('app.tenant_id', %s, true)", [ids["beta"]])
        assert conn.execute("SELECT short_key FROM applications").fetchall() == [("beta-app",)]


def test_directory_read_path_returns_routing_data_only(
    pg_roles: Any, two_tenants: tuple[TenancyService, dict[str, str]]
) -> None:
    _svc, ids = two_tenants
    with _runtime(pg_roles) as conn:
        assert conn.execute("SELECT healthid_application_tenant('beta-app')").fetchone() == (
            ids["beta"],)
        assert conn.execute("SELECT healthid_application_tenant('nope')").fetchone() == (None,)
        cur = conn.execute("SELECT * FROM healthid_application_directory() ORDER BY 1")
        assert [d.name for d in cur.description or []] == ["short_key", "tenant_id"]
        assert cur.fetchall() == [("alpha-app", ids["alpha"]), ("beta-app", ids["beta"])]
        cur = conn.execute("SELECT * FROM healthid_tenant_directory() ORDER BY 2")
        assert [d.name for d in cur.description or []] == ["id", "name", "created_at"]
        assert [r[1] for r in cur.fetchall()] == ["alpha", "beta"]
        # The functions did not leave a tenant behind: direct reads still see nothing.
        assert conn.execute("SELECT count(*) FROM applications").fetchone() == (0,)


def test_service_as_runtime_role_serves_each_tenant(
    two_tenants: tuple[TenancyService, dict[str, str]]
) -> None:
    svc, ids = two_tenants
    app = svc.get_application("beta-app")
    assert app is not None and app.tenant_id == ids["beta"] and app.tenant_name == "beta"
    assert [c.name for c in app.clients] == ["web"]
    assert svc.application_keys("alpha-app", NOW).short_key == "alpha-app"
    assert [a.short_key for a in svc.list_applications()] == ["alpha-app", "beta-app"]
    assert [a.short_key for a in svc.list_applications("beta")] == ["beta-app"]
    assert svc.rotate_due(NOW + 200 * 86400)  # every application is reached
    created = svc.create_client("alpha-app", auth_method="client_secret_basic",
                                redirect_uris=["https://a.example/cb"], now=NOW)
    assert created.secret is not None
    fresh = TenancyService(svc.db.sessions, svc.data_keys.provider)  # cold pepper cache
    assert fresh.verify_client_secret(created.client, created.secret)


def test_catalog_has_a_policy_on_every_tenant_table(pg_roles: Any) -> None:
    engine = make_engine(pg_roles.owner_url)
    try:
        with engine.begin() as conn:
            assert catalog_problems(conn) == []
            tables = {r[0] for r in conn.execute(text(
                "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"))}
            assert tables == set(TENANT_OWNED_TABLES) | GLOBAL_TABLES
            # A table added later without its policy makes the check fail:
            conn.execute(text("CREATE TABLE usage_events (id int, tenant_id varchar(36))"))
            assert catalog_problems(conn) == [
                "usage_events: row-level security is not enabled",
                "usage_events: row-level security is not forced",
                "usage_events: no policy restricts it to the transaction's tenant",
            ]
            conn.execute(text("ALTER TABLE usage_events ENABLE ROW LEVEL SECURITY"))
            conn.execute(text("ALTER TABLE usage_events FORCE ROW LEVEL SECURITY"))
            conn.execute(text("CREATE POLICY everyone ON usage_events USING (true)"))
            assert catalog_problems(conn) == [
                "usage_events: no policy restricts it to the transaction's tenant",
                "usage_events: policy everyone admits rows of other tenants",
            ]
            conn.execute(text("DROP POLICY everyone ON usage_events"))
            conn.execute(text(
                "CREATE POLICY tenant_isolation ON usage_events "
                "USING (tenant_id = current_setting('app.tenant_id', true)) "
                "WITH CHECK (tenant_id = current_setting('app.tenant_id', true))"))
            assert catalog_problems(conn) == []
            conn.execute(text(
                "CREATE FUNCTION sneak() RETURNS bigint LANGUAGE sql SECURITY DEFINER "
                "AS $$ SELECT count(*) FROM applications $$"))
            assert catalog_problems(conn) == [
                "function sneak: SECURITY DEFINER outside the directory read path",
                "function sneak: SECURITY DEFINER without a fixed search_path",
            ]
            conn.rollback()
    finally:
        engine.dispose()
    assert len(DIRECTORY_FUNCTIONS) == 3


@pytest.fixture
def role_names(pg_url: str) -> Iterator[tuple[str, str, str]]:
    """Unique owner and runtime role names for ``pg_url``'s database (not yet created),
    and the URL template; the roles and the database are dropped afterwards."""
    tag = uuid.uuid4().hex[:10]
    owner, runtime = f"hidb_owner_{tag}", f"hidb_runtime_{tag}"
    host, db = pg_url.split("@", 1)[1].split("/", 1)
    try:
        yield owner, runtime, f"postgresql+psycopg://{{}}@{host}/{db}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{runtime}"')
            conn.execute(f'DROP ROLE IF EXISTS "{owner}"')


def test_runtime_role_cannot_migrate_a_schema_that_is_behind(
    pg_url: str, role_names: tuple[str, str, str]
) -> None:
    owner, runtime, url = role_names
    setup_roles(pg_url, owner=owner, runtime=runtime)
    migrate(url.format(owner), "0001")
    with pytest.raises(SchemaError, match="db upgrade"):
        open_database(url.format(runtime))
    migrate(url.format(owner))
    engine, _factory = open_database(url.format(runtime))
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
    engine.dispose()


def _cli(*args: str) -> subprocess.Popen[bytes]:
    exe = Path(sys.executable).with_name("healthid-broker")
    return subprocess.Popen([str(exe), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_four_processes_set_up_roles_and_migrate_at_once(
    pg_url: str, role_names: tuple[str, str, str], tmp_path: Path
) -> None:
    owner, runtime, url = role_names
    procs = [_cli("db", "roles", "--owner", owner, "--runtime", runtime, "--apply",
                  "--database-url", pg_url) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    procs = [_cli("db", "upgrade", "--data-dir", str(tmp_path), "--database-url",
                  url.format(owner)) for _ in range(4)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    engine = make_engine(url.format(owner))
    with engine.connect() as conn:
        assert current_revision(conn) == head_revision()
        assert catalog_problems(conn) == []
    engine.dispose()
    # A second set-up changes nothing and still succeeds.
    setup_roles(pg_url, owner=owner, runtime=runtime)
