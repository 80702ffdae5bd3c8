"""Fixtures every room's tests may use, and the marker rules (tests/marker_rules.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from marker_rules import MarkerRules

pytest_plugins = ["pytester"]  # tests/test_markers.py runs the marker rules on sample tests

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"

MARKER_RULES = MarkerRules(Path(__file__).parent)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these markers
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``postgres`` and ``redis`` on every test whose code needs the server (marker_rules)."""
    MARKER_RULES.add_automatic(items)


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database on the local server, dropped afterwards
    (parallel runs never share one)."""
    if request.node.get_closest_marker("postgres") is None:
        # Reached through request.getfixturevalue, which the collection hook cannot see.
        pytest.fail(f"{request.node.nodeid} uses PostgreSQL without the postgres marker")
    name = f"hidb_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
