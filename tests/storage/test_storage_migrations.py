from __future__ import annotations

import subprocess
import sys
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
    # T-01: there is no column for identity data of insured persons anywhere.
    for table in Base.metadata.tables.values():
        for col in table.columns:
            assert not any(f in col.name.lower() for f in FORBIDDEN), (table.name, col.name)


@pytest.mark.slow
def test_four_processes_migrate_one_sqlite_file_at_once(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("healthid-broker")
    procs = [
        subprocess.Popen([str(exe), "db", "upgrade", "--data-dir", str(tmp_path)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outs
    _assert_no_drift(default_database_url(tmp_path))
