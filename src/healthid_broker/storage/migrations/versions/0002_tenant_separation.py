"""tenant separation: tenant_id on every tenant-owned table, row-level security (T-28)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

* ``clients`` and ``app_keys`` get their own ``tenant_id`` (filled from the
  application), bound to the parent's by composite foreign keys.
* PostgreSQL only: row-level security ENABLED and FORCED on every tenant-owned table
  with the policy ``tenant_isolation``; the three SECURITY DEFINER directory functions
  and the owner's ``directory_read`` policy (see healthid_broker/storage/rls.py).

A later migration that creates a tenant-owned table copies the ``_tenant_policy`` block
below for it (the statements are written out here, not imported, so that this migration
never changes after release).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_OWNED = {
    "tenants": "id",
    "tenant_data_keys": "tenant_id",
    "applications": "tenant_id",
    "clients": "tenant_id",
    "app_keys": "tenant_id",
}


def _tenant_policy(table: str, column: str) -> None:
    cond = f"{column} = current_setting('app.tenant_id', true)"
    op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    op.execute(
        f"CREATE POLICY tenant_isolation ON {table} AS PERMISSIVE FOR ALL TO PUBLIC "
        f"USING ({cond}) WITH CHECK ({cond})"
    )


def _directory(schema: str) -> None:
    # SQL text from constants and the schema name PostgreSQL itself reported (quoted);
    # nothing here comes from input.
    q = '"' + schema.replace('"', '""') + '"'
    common = (
        "LANGUAGE sql STABLE SECURITY DEFINER "
        "SET search_path = pg_catalog, pg_temp"
    )
    op.execute(
        "CREATE FUNCTION healthid_application_tenant(p_short_key text) RETURNS text "  # noqa: S608
        f"{common} AS $$ SELECT tenant_id::text FROM {q}.applications "
        "WHERE short_key = p_short_key $$"
    )
    op.execute(
        "CREATE FUNCTION healthid_application_directory() "  # noqa: S608
        "RETURNS TABLE (short_key text, tenant_id text) "
        f"{common} AS $$ SELECT short_key::text, tenant_id::text "
        f"FROM {q}.applications $$"
    )
    op.execute(
        "CREATE FUNCTION healthid_tenant_directory() "  # noqa: S608
        "RETURNS TABLE (id text, name text, created_at double precision) "
        f"{common} AS $$ SELECT id::text, name::text, created_at "
        f"FROM {q}.tenants $$"
    )
    # The functions run as their owner (the migrating role). FORCE makes the owner
    # subject to tenant_isolation; this SELECT-only policy lets the owner's rows through
    # only inside a SECURITY DEFINER call made by another role.
    for table in ("applications", "tenants"):
        op.execute(
            f"CREATE POLICY directory_read ON {table} AS PERMISSIVE FOR SELECT "
            "TO CURRENT_USER USING (current_user <> session_user)"
        )


def upgrade() -> None:
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f("uq_applications_id"), ["id", "tenant_id"])
    with op.batch_alter_table("tenant_data_keys", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            batch_op.f("uq_tenant_data_keys_id"), ["id", "tenant_id"]
        )
    for table in ("clients", "app_keys"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("tenant_id", sa.String(length=36), nullable=True))
        op.execute(
            f"UPDATE {table} SET tenant_id = (SELECT a.tenant_id FROM applications a "  # noqa: S608
            f"WHERE a.id = {table}.application_id)"
        )
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.alter_column("tenant_id", existing_type=sa.String(length=36), nullable=False)
        batch_op.drop_constraint("fk_clients_application_id_applications", type_="foreignkey")
        batch_op.create_foreign_key(
            batch_op.f("fk_clients_application_id_applications"), "applications",
            ["application_id", "tenant_id"], ["id", "tenant_id"], ondelete="CASCADE",
        )
    with op.batch_alter_table("app_keys", schema=None) as batch_op:
        batch_op.alter_column("tenant_id", existing_type=sa.String(length=36), nullable=False)
        batch_op.drop_constraint("fk_app_keys_application_id_applications", type_="foreignkey")
        batch_op.drop_constraint("fk_app_keys_data_key_id_tenant_data_keys", type_="foreignkey")
        batch_op.create_foreign_key(
            batch_op.f("fk_app_keys_application_id_applications"), "applications",
            ["application_id", "tenant_id"], ["id", "tenant_id"], ondelete="CASCADE",
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_app_keys_data_key_id_tenant_data_keys"), "tenant_data_keys",
            ["data_key_id", "tenant_id"], ["id", "tenant_id"],
        )

    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for table, column in _OWNED.items():
            _tenant_policy(table, column)
        schema = bind.execute(sa.text("SELECT current_schema()")).scalar()
        _directory(str(schema))


def downgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":
        for fn in ("healthid_application_tenant(text)", "healthid_application_directory()",
                   "healthid_tenant_directory()"):
            op.execute(f"DROP FUNCTION IF EXISTS {fn}")
        for table in ("applications", "tenants"):
            op.execute(f"DROP POLICY IF EXISTS directory_read ON {table}")
        for table in _OWNED:
            op.execute(f"DROP POLICY IF EXISTS tenant_isolation ON {table}")
            op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
            op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    with op.batch_alter_table("app_keys", schema=None) as batch_op:
        batch_op.drop_constraint("fk_app_keys_data_key_id_tenant_data_keys", type_="foreignkey")
        batch_op.drop_constraint("fk_app_keys_application_id_applications", type_="foreignkey")
        batch_op.create_foreign_key(
            batch_op.f("fk_app_keys_data_key_id_tenant_data_keys"), "tenant_data_keys",
            ["data_key_id"], ["id"],
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_app_keys_application_id_applications"), "applications",
            ["application_id"], ["id"], ondelete="CASCADE",
        )
        batch_op.drop_column("tenant_id")
    with op.batch_alter_table("clients", schema=None) as batch_op:
        batch_op.drop_constraint("fk_clients_application_id_applications", type_="foreignkey")
        batch_op.create_foreign_key(
            batch_op.f("fk_clients_application_id_applications"), "applications",
            ["application_id"], ["id"], ondelete="CASCADE",
        )
        batch_op.drop_column("tenant_id")
    with op.batch_alter_table("tenant_data_keys", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_tenant_data_keys_id"), type_="unique")
    with op.batch_alter_table("applications", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_applications_id"), type_="unique")
