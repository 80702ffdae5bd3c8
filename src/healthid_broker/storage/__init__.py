"""Persistence: SQLAlchemy models, Alembic migrations, engine and session helpers.

No identity data of insured persons is stored anywhere (T-01). Tenant separation in
PostgreSQL (row-level security, the runtime and owner roles, the directory read path):
:mod:`.rls` (T-15, T-28).
"""

from __future__ import annotations

from .db import (
    SchemaError,
    alembic_config,
    default_database_url,
    make_engine,
    make_session_factory,
    migrate,
    open_database,
    setup_roles,
)

__all__ = [
    "SchemaError",
    "alembic_config",
    "default_database_url",
    "make_engine",
    "make_session_factory",
    "migrate",
    "open_database",
    "setup_roles",
]
