from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from healthid_broker.storage import default_database_url, make_engine, migrate
from healthid_broker.storage.models import Base

FORBIDDEN = ("kvnr", "birth", "given_name", "family_name", "email", "geburtsdatum", "id_token")


def _assert_no_drift(url: str) -> None:
    migrate(url)
    migrate(url)  # idempotent
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, Base.metadata)
            assert diff == [], f"models and migrations differ: {diff}"
            tables = set(inspect(conn).get_table_names())
    finally:
        engine.dispose()
    assert {"tenants", "applications", "clients", "app_keys", "tenant_data_keys"} <= tables


def test_sqlite_migrations_match_models(tmp_path: Path) -> None:
    url = default_database_url(tmp_path / "d")
    assert url == f"sqlite:///{(tmp_path / 'd').resolve()}/broker.db"
    _assert_no_drift(url)


@pytest.mark.postgres
def test_postgres_migrations_match_models(pg_url: str) -> None:
    _assert_no_drift(pg_url)


def test_no_identity_data_columns() -> None:
    # TOMS T-01: there is no column for identity data of insured persons anywhere.
    for table in Base.metadata.tables.values():
        for col in table.columns:
            assert not any(f in col.name.lower() for f in FORBIDDEN), (table.name, col.name)
