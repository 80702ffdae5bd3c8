"""Engine, session and migration helpers.

Default database: SQLite file ``<data_dir>/broker.db``; PostgreSQL by URL
(``postgresql+psycopg://user@host:5432/db``). Migrations (Alembic, in
``storage/migrations``) run automatically on first use through :func:`migrate`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.orm import Session, sessionmaker

__all__ = [
    "alembic_config",
    "default_database_url",
    "make_engine",
    "make_session_factory",
    "migrate",
    "open_database",
]

_HERE = Path(__file__).resolve().parent


def default_database_url(data_dir: str | os.PathLike[str]) -> str:
    """``sqlite:///<data_dir>/broker.db`` (the data directory is created if missing)."""
    path = Path(data_dir).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path / 'broker.db'}"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys enforced and a busy timeout."""
    engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(url: str | None = None) -> Config:
    cfg = Config(str(_HERE / "alembic.ini"))
    cfg.set_main_option("script_location", str(_HERE / "migrations"))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


# pg_advisory_xact_lock key of schema migrations (any fixed 64-bit value; "hidb-mig")
_MIGRATION_LOCK = 0x6869_6462_2D6D_6967


def migrate(target: str | Engine, revision: str = "head") -> None:
    """Upgrade the database at ``target`` (URL or engine) to ``revision``.

    On PostgreSQL the upgrade holds a transaction-scoped advisory lock, so processes
    migrating at once run one after the other; the later ones find the schema current.
    """
    engine = make_engine(target) if isinstance(target, str) else target
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                             {"key": _MIGRATION_LOCK})
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    finally:
        if isinstance(target, str):
            engine.dispose()


def open_database(url: str, *, upgrade: bool = True) -> tuple[Engine, sessionmaker[Session]]:
    """Engine and session factory for ``url``, migrated to head first (``upgrade``)."""
    engine = make_engine(url)
    if upgrade:
        migrate(engine)
    return engine, make_session_factory(engine)
