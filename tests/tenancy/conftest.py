from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from healthid_broker.crypto.key_provider import StaticKeyProvider
from healthid_broker.storage import default_database_url, open_database
from healthid_broker.tenancy import TenancyService

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database, dropped afterwards."""
    name = f"h3_tenancy_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return default_database_url(tmp_path)
    return str(request.getfixturevalue("pg_url"))


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
