"""Engine, session and migration helpers.

Default database: SQLite file ``<data_dir>/broker.db``; PostgreSQL by URL
(``postgresql+psycopg://user@host:5432/db``). :func:`migrate` is the one migration entry
point (Alembic, ``storage/migrations``); on PostgreSQL it runs as the owner role
(``healthid-broker db upgrade --database-url <owner url>``, or ``init``), the service
itself connects as the runtime role, which cannot run DDL (T-15, :mod:`.rls`).
:func:`open_database` migrates only a database that is behind; one at the newest
revision is opened without any DDL, so the runtime role can open it.

Concurrent migrations (four processes starting at once) are serialised: PostgreSQL by a
transaction-level advisory lock, SQLite by ``BEGIN IMMEDIATE``; the later ones find the
schema current and change nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from .rls import MIGRATION_LOCK, role_setup_sql

__all__ = [
    "SchemaError",
    "alembic_config",
    "current_revision",
    "default_database_url",
    "head_revision",
    "make_engine",
    "make_session_factory",
    "migrate",
    "open_database",
    "setup_roles",
]


class SchemaError(RuntimeError):
    """The database schema is behind and this connection's role may not migrate it."""

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


def head_revision() -> str:
    """The newest migration revision shipped with this version."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(conn: Connection) -> str | None:
    """The revision the database at ``conn`` is at (``None``: not migrated)."""
    return MigrationContext.configure(conn).get_current_revision()


def _immediate_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def _migration_engine(target: str | Engine) -> Engine:
    url = target if isinstance(target, str) else target.url.render_as_string(hide_password=False)
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":
        # pysqlite runs DDL outside any transaction; take SQLite's write lock first so
        # that concurrent migrations run one after another.
        event.listen(engine, "connect",
                     lambda dbapi_conn, _rec: setattr(dbapi_conn, "isolation_level", None))
        event.listen(engine, "begin", _immediate_begin)
    return engine


_REVOKE_VERSION_WRITES = """
DO $$ DECLARE g record; BEGIN
FOR g IN SELECT DISTINCT grantee FROM information_schema.role_table_grants
  WHERE table_schema = current_schema() AND table_name = 'alembic_version'
    AND privilege_type IN ('INSERT', 'UPDATE', 'DELETE', 'TRUNCATE')
    AND grantee <> current_user
LOOP
  EXECUTE format('REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON alembic_version FROM %I',
                 g.grantee);
END LOOP; END $$
"""


def migrate(target: str | Engine, revision: str = "head") -> None:
    """Upgrade the database at ``target`` (URL or engine) to ``revision``.

    The single migration entry point (``db upgrade``, ``init``, the embedded default's
    first start). On PostgreSQL, connect as the owner role; the whole upgrade is one
    transaction under an advisory lock, so concurrent callers run one after another and
    the later ones change nothing. Afterwards only the owner may write the version table
    (the runtime role's default privileges would otherwise include it).
    """
    engine = _migration_engine(target)
    try:
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": MIGRATION_LOCK})
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            if conn.dialect.name == "postgresql":
                conn.execute(text(_REVOKE_VERSION_WRITES))
    finally:
        engine.dispose()


def open_database(url: str, *, upgrade: bool = True) -> tuple[Engine, sessionmaker[Session]]:
    """Engine and session factory for ``url``.

    With ``upgrade``, a database that is not at the newest revision is migrated first
    (the embedded default, and a PostgreSQL URL of the owner role). A database at the
    newest revision is opened without DDL. The runtime role cannot migrate: a schema
    that is behind then raises :class:`SchemaError`, which says to run ``db upgrade``.
    """
    engine = make_engine(url)
    if upgrade:
        with engine.connect() as conn:
            behind = current_revision(conn) != head_revision()
        if behind:
            try:
                migrate(engine)
            except DBAPIError as exc:
                engine.dispose()
                if getattr(exc.orig, "sqlstate", None) != "42501":  # insufficient_privilege
                    raise
                raise SchemaError(
                    "the database schema is not at the newest revision and this role may "
                    "not migrate it; run `healthid-broker db upgrade --database-url <owner "
                    "role URL>` (or `healthid-broker init`) first"
                ) from exc
    return engine, make_session_factory(engine)


def setup_roles(admin_url: str, *, owner: str, runtime: str) -> None:
    """Create or correct the owner and the runtime role on the database of ``admin_url``
    (:func:`~.rls.role_setup_sql`), in one transaction under the migration lock.

    ``admin_url`` connects as a superuser or a CREATEROLE role that owns the database.
    """
    engine = make_engine(admin_url)
    try:
        if engine.dialect.name != "postgresql":
            raise ValueError("database roles exist on PostgreSQL only")
        database = engine.url.database or ""
        with engine.begin() as conn:
            for stmt in role_setup_sql(owner=owner, runtime=runtime, database=database):
                conn.execute(text(stmt))
    finally:
        engine.dispose()
