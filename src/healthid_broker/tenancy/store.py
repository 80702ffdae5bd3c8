"""Transactions with a tenant: every read or write of tenant-owned rows happens inside a
transaction whose tenant is set (PostgreSQL row-level security, T-28,
:mod:`healthid_broker.storage.rls`).

Cross-tenant lookups exist only as the directory read path of
:mod:`~healthid_broker.storage.rls` (short key → tenant id, the list of applications, the
list of tenants); they return routing data, never configuration or keys.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.orm import Session

from healthid_broker.storage import rls

from .errors import NotFound

__all__ = ["CHANGE_CHANNEL", "TenantDatabase"]

#: The PostgreSQL channel on which committed configuration changes are announced; the
#: payload is an application's short key (a public routing name, never personal data) or
#: ``*`` for "everything" (:mod:`healthid_broker.runtime.invalidation` listens).
CHANGE_CHANNEL = "healthid_config"


class TenantDatabase:
    """A session factory whose transactions carry the tenant they act for."""

    def __init__(self, sessions: Callable[[], Session]) -> None:
        self.sessions = sessions

    @contextmanager
    def transaction(self, tenant_id: str | None = None) -> Iterator[Session]:
        """One transaction (committed on success, rolled back on error), scoped to
        ``tenant_id``. Without a tenant, PostgreSQL shows no tenant-owned row at all;
        :meth:`enter` sets one later (``apply`` switches between tenants this way)."""
        with self.sessions() as session, session.begin():
            if tenant_id is not None:
                rls.set_tenant(session, tenant_id)
            yield session

    @staticmethod
    def enter(session: Session, tenant_id: str) -> None:
        """Make ``tenant_id`` the tenant of the session's current transaction."""
        rls.set_tenant(session, tenant_id)

    @staticmethod
    def announce_change(session: Session, short_key: str) -> None:
        """Tell every broker process that ``short_key``'s configuration changed.

        On PostgreSQL this is ``pg_notify`` in the session's transaction: delivered when it
        commits, never if it rolls back, and repeated announcements of one key in one
        transaction arrive once. SQLite (one serving process) needs nothing: the process
        sees any commit to the database file (``PRAGMA data_version``)."""
        if session.get_bind().dialect.name == "postgresql":
            session.execute(text("SELECT pg_notify(:channel, :key)"),
                            {"channel": CHANGE_CHANNEL, "key": short_key})

    @contextmanager
    def application_transaction(self, short_key: str) -> Iterator[tuple[Session, str]]:
        """A transaction scoped to the tenant of application ``short_key`` and that
        tenant's id; :class:`NotFound` if there is no such application."""
        with self.transaction() as session:
            tenant_id = rls.application_tenant(session, short_key)
            if tenant_id is None:
                raise NotFound(f"no application with short key {short_key!r}")
            rls.set_tenant(session, tenant_id)
            yield session, tenant_id

    @staticmethod
    def application_tenant(session: Session, short_key: str) -> str | None:
        return rls.application_tenant(session, short_key)

    def application_directory(self) -> list[tuple[str, str]]:
        """``(short_key, tenant_id)`` of every application, by short key."""
        with self.transaction() as session:
            return rls.application_directory(session)

    @staticmethod
    def tenants(session: Session) -> list[rls.TenantEntry]:
        return rls.tenant_directory(session)

    @classmethod
    def find_tenant(cls, session: Session, name_or_id: str) -> rls.TenantEntry:
        for t in cls.tenants(session):
            if name_or_id in (t.name, t.id):
                return t
        raise NotFound(f"no tenant {name_or_id!r}")
