"""Fixtures every room's tests may use."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database on the local server, dropped afterwards
    (parallel runs never share one)."""
    name = f"hidb_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class PgRoles:
    """The owner and the runtime role of one test database (see storage/rls.py)."""

    owner: str
    runtime: str
    owner_url: str
    runtime_url: str
    admin_url: str


@pytest.fixture
def pg_roles(pg_url: str) -> Iterator[PgRoles]:
    """``pg_url``'s database with its own owner and runtime role (cluster-wide, so
    uniquely named), migrated as the owner; the roles are dropped afterwards."""
    from healthid_broker.storage import migrate, setup_roles

    tag = uuid.uuid4().hex[:10]
    owner, runtime = f"hidb_owner_{tag}", f"hidb_runtime_{tag}"
    host, db = pg_url.split("@", 1)[1].split("/", 1)
    roles = PgRoles(owner, runtime, f"postgresql+psycopg://{owner}@{host}/{db}",
                    f"postgresql+psycopg://{runtime}@{host}/{db}", pg_url)
    try:
        setup_roles(pg_url, owner=owner, runtime=runtime)
        migrate(roles.owner_url)
        yield roles
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{runtime}"')
            conn.execute(f'DROP ROLE IF EXISTS "{owner}"')
