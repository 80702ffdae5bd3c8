from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from healthid_broker.crypto.key_provider import StaticKeyProvider
from healthid_broker.storage import default_database_url, open_database
from healthid_broker.tenancy import TenancyService


@pytest.fixture(params=[
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("postgres-runtime-role", marks=pytest.mark.postgres),
])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """SQLite; PostgreSQL as superuser (row-level security not in force); PostgreSQL as
    the runtime role (row-level security in force, migrated by the owner role)."""
    if request.param == "sqlite":
        return default_database_url(tmp_path)
    if request.param == "postgres":
        return str(request.getfixturevalue("pg_url"))
    return str(request.getfixturevalue("pg_roles").runtime_url)


@pytest.fixture
def provider() -> StaticKeyProvider:
    return StaticKeyProvider.generate()


@pytest.fixture
def service(db_url: str, provider: StaticKeyProvider) -> Iterator[TenancyService]:
    engine, factory = open_database(db_url)
    try:
        yield TenancyService(factory, provider)
    finally:
        engine.dispose()
