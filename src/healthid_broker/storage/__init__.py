"""Persistence: SQLAlchemy models, Alembic migrations, engine and session helpers.

No identity data of insured persons is stored anywhere (TOMS T-01).
"""

from __future__ import annotations

from .db import (
    alembic_config,
    default_database_url,
    make_engine,
    make_session_factory,
    migrate,
    open_database,
)

__all__ = [
    "alembic_config",
    "default_database_url",
    "make_engine",
    "make_session_factory",
    "migrate",
    "open_database",
]
