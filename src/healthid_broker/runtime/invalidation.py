"""Configuration changes reach every broker process at once.

A transaction that creates, changes or deactivates an application, a client or a key
announces the application's short key (:meth:`TenantDatabase.announce_change`); each
serving process drops that application's cached view (:class:`TenancyDirectory`), so the
next request reads the committed rows. The listener runs as a background task; the login
path only sees a dictionary entry disappear.

- **PostgreSQL** (the shared shape): ``LISTEN`` on :data:`CHANGE_CHANNEL` over one psycopg
  connection of its own. ``NOTIFY`` is delivered on commit, within milliseconds. When the
  connection drops, the listener reconnects with exponential backoff and then drops every
  cached view, since it may have missed announcements meanwhile; between the drop and the
  reconnect, the periodic refresh (``directory_ttl``) is the fallback.
- **SQLite** (the embedded shape, one serving process; the CLI writes from another):
  ``PRAGMA data_version`` changes whenever another connection committed to the database
  file. It is read once per ``interval`` (1 s) on a connection of its own — a few
  microseconds — and a change drops every cached view.

The announcement is the short key, a public routing name: no personal data travels.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import psycopg
from sqlalchemy.engine import make_url

from ..tenancy.store import CHANGE_CHANNEL

__all__ = [
    "CHANGE_CHANNEL",
    "Invalidates",
    "PostgresChangeListener",
    "SqliteChangeWatcher",
    "apply_announcement",
    "change_watcher_for",
]

log = logging.getLogger("healthid_broker.runtime")

ALL = "*"
_MAX_KEY = 64  # longer than any short key: treated as "everything"


class Invalidates(Protocol):
    def invalidate(self, short_key: str | None = None) -> None: ...


def apply_announcement(directory: Invalidates, payload: str) -> None:
    """Drop what one announcement names: the short key's view, or every view for ``*``
    (and for anything that cannot be a short key: dropping too much is only a reload)."""
    if payload == ALL or not payload or len(payload) > _MAX_KEY:
        directory.invalidate()
    else:
        directory.invalidate(payload)


def libpq_conninfo(database_url: str) -> str:
    """The libpq connection string of a SQLAlchemy PostgreSQL URL."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


Connect = Callable[[], Awaitable[psycopg.AsyncConnection[Any]]]


class PostgresChangeListener:
    """``LISTEN`` for announcements on a connection of its own; reconnect with backoff.

    ``idle_check`` seconds without a notification run ``SELECT 1``, so a connection that
    died silently is noticed (TCP keepalives are set as well)."""

    def __init__(self, directory: Invalidates, connect: Connect, *,
                 channel: str = CHANGE_CHANNEL, min_backoff: float = 0.1,
                 max_backoff: float = 10.0, idle_check: float = 15.0) -> None:
        self.directory = directory
        self.connect = connect
        self.channel = channel
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.idle_check = idle_check
        self.connections = 0  # successful LISTENs so far (for tests and diagnostics)
        self.listening = asyncio.Event()

    @classmethod
    def for_url(cls, directory: Invalidates, database_url: str,
                **kwargs: Any) -> PostgresChangeListener:
        conninfo = libpq_conninfo(database_url)

        async def connect() -> psycopg.AsyncConnection[Any]:
            return await psycopg.AsyncConnection.connect(
                conninfo, autocommit=True, connect_timeout=5,
                application_name="healthid-broker change listener",
                keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3)

        return cls(directory, connect, **kwargs)

    async def run(self) -> None:
        """Listen until cancelled."""
        backoff = self.min_backoff
        while True:
            try:
                conn = await self.connect()
            except (psycopg.Error, OSError) as exc:
                log.warning("change listener: cannot connect (%s); retrying",
                            type(exc).__name__)
                backoff = await self._pause(backoff)
                continue
            try:
                async with conn:
                    await conn.execute(f'LISTEN "{self.channel}"')
                    # Whatever was announced while we were not listening is unknown.
                    self.directory.invalidate()
                    self.connections += 1
                    self.listening.set()
                    backoff = self.min_backoff
                    await self._listen(conn)
            except (psycopg.Error, OSError) as exc:
                log.warning("change listener: connection lost (%s); reconnecting",
                            type(exc).__name__)
            except Exception as exc:  # noqa: BLE001 — the listener must outlive a fault
                log.error("change listener failed: %s; reconnecting", type(exc).__name__)
            finally:
                self.listening.clear()
            backoff = await self._pause(backoff)

    async def _pause(self, backoff: float) -> float:
        """Sleep about ``backoff`` seconds (jittered, so processes do not reconnect in
        step); return the next backoff."""
        await anyio.sleep(backoff * (0.5 + random.random() / 2))
        return min(backoff * 2, self.max_backoff)

    async def _listen(self, conn: psycopg.AsyncConnection[Any]) -> None:
        while True:
            async for note in conn.notifies(timeout=self.idle_check):
                apply_announcement(self.directory, note.payload)
            await conn.execute("SELECT 1")


class SqliteChangeWatcher:
    """Drop every cached view when ``PRAGMA data_version`` shows another connection's
    commit; checked every ``interval`` seconds."""

    def __init__(self, directory: Invalidates, path: str, *, interval: float = 1.0) -> None:
        self.directory = directory
        self.path = path
        self.interval = interval
        self._conn: sqlite3.Connection | None = None

    def _version(self) -> int:
        if self._conn is None:
            self._conn = sqlite3.connect(self.path, check_same_thread=False,
                                         isolation_level=None)
        row = self._conn.execute("PRAGMA data_version").fetchone()
        return int(row[0])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    async def run(self) -> None:
        """Watch until cancelled."""
        last: int | None = None
        try:
            while True:
                try:
                    version = await anyio.to_thread.run_sync(self._version)
                except sqlite3.Error as exc:
                    log.warning("change watcher: %s", type(exc).__name__)
                    self.close()
                    version = None
                if version is None or (last is not None and version != last):
                    self.directory.invalidate()
                last = version
                await anyio.sleep(self.interval)
        finally:
            self.close()


def change_watcher_for(directory: Invalidates, database_url: str) -> (
        PostgresChangeListener | SqliteChangeWatcher | None):
    """The watcher that fits the database, or ``None`` for an in-memory SQLite database
    (one process; nothing else can change it)."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return PostgresChangeListener.for_url(directory, database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return SqliteChangeWatcher(directory, url.database)
    return None
