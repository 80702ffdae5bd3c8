"""Changes are live at once: an announcement drops the named application's cached view (and
only that one), a reconnect drops them all, a rolled-back change announces nothing, and the
embedded shape notices a commit of another process within a second."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthid_broker.crypto.key_provider import StaticKeyProvider
from healthid_broker.runtime.directory import TenancyDirectory
from healthid_broker.runtime.invalidation import (
    PostgresChangeListener,
    SqliteChangeWatcher,
    apply_announcement,
    change_watcher_for,
    libpq_conninfo,
)
from healthid_broker.runtime.settings import BrokerSettings
from healthid_broker.storage.db import default_database_url, open_database
from healthid_broker.tenancy.service import TenancyService

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
ACR = "gematik-ehealth-loa-high"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recorder:
    def __init__(self) -> None:
        self.calls: list[str | None] = []

    def invalidate(self, short_key: str | None = None) -> None:
        self.calls.append(short_key)


def _tenancy(url: str) -> tuple[Any, TenancyService]:
    engine, factory = open_database(url)
    svc = TenancyService(factory, StaticKeyProvider.generate())
    t0 = time.time()
    svc.create_tenant("acme", now=t0)
    for key in ("app-a", "app-b"):
        svc.create_application("acme", key, display_name=key, organization_name="ACME",
                               scopes=["openid"], required_acr=ACR, now=t0)
    return engine, svc


def _directory(svc: TenancyService, tmp_path: Path) -> TenancyDirectory:
    settings = BrokerSettings(public_base="https://broker.example", data_dir=tmp_path,
                              environment="tu", master_entity_id="https://m.example",
                              master_jwks={"keys": []})
    return TenancyDirectory(svc, settings, pairwise_root=b"r" * 32)


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[tuple[TenancyService, TenancyDirectory, str]]:
    url = default_database_url(tmp_path)
    engine, svc = _tenancy(url)
    try:
        yield svc, _directory(svc, tmp_path), url
    finally:
        engine.dispose()


# --- the invalidation logic ------------------------------------------------------------

@pytest.mark.anyio
async def test_an_announcement_drops_the_named_view_only(
        embedded: tuple[TenancyService, TenancyDirectory, str]) -> None:
    svc, directory, _url = embedded
    a1, b1 = await directory.get("app-a"), await directory.get("app-b")
    assert a1 is not None and b1 is not None
    svc.update_application("app-a", now=time.time(), display_name="Renamed")
    assert await directory.get("app-a") is a1  # cached: the change is not seen yet
    apply_announcement(directory, "app-a")
    a2 = await directory.get("app-a")
    assert a2 is not None and a2.display_name == "Renamed"
    assert await directory.get("app-b") is b1  # the other application stays cached


@pytest.mark.anyio
async def test_an_announced_new_application_is_no_longer_unknown(
        embedded: tuple[TenancyService, TenancyDirectory, str]) -> None:
    svc, directory, _url = embedded
    assert await directory.get("app-new") is None  # remembered as unknown (negative cache)
    svc.create_application("acme", "app-new", display_name="New", organization_name="ACME",
                           scopes=["openid"], required_acr=ACR, now=time.time())
    assert await directory.get("app-new") is None
    apply_announcement(directory, "app-new")
    assert await directory.get("app-new") is not None


@given(st.one_of(st.just("*"), st.just(""), st.text(min_size=65, max_size=200)))
def test_everything_or_anything_unlike_a_short_key_drops_all(payload: str) -> None:
    rec = Recorder()
    apply_announcement(rec, payload)
    assert rec.calls == [None]


@given(st.text(min_size=1, max_size=64).filter(lambda s: s != "*"))
def test_a_short_key_drops_that_key(payload: str) -> None:
    rec = Recorder()
    apply_announcement(rec, payload)
    assert rec.calls == [payload]


class _SlowDirectory(TenancyDirectory):
    """Loads block until released, so an invalidation can arrive during a load."""

    def __init__(self, tmp_path: Path) -> None:
        settings = BrokerSettings(public_base="https://b.example", data_dir=tmp_path,
                                  environment="tu", master_entity_id="https://m.example",
                                  master_jwks={"keys": []})
        super().__init__(None, settings, pairwise_root=b"r" * 32)  # type: ignore[arg-type]
        self.loads = 0
        self.release = threading.Event()

    def _load(self, short_key: str, now: float) -> Any:
        self.loads += 1
        n = self.loads
        self.release.wait(5)
        return f"view-{n}"


@pytest.mark.anyio
async def test_a_load_begun_before_the_change_is_not_cached(tmp_path: Path) -> None:
    d = _SlowDirectory(tmp_path)
    first = asyncio.create_task(d.get("app"))
    await asyncio.sleep(0.05)  # load 1 reads the old rows
    apply_announcement(d, "app")  # the change commits meanwhile
    second = asyncio.create_task(d.get("app"))  # must not join the old load
    await asyncio.sleep(0.05)
    d.release.set()
    assert await first == "view-1"
    assert await second == "view-2"
    assert await d.get("app") == "view-2"  # the cache holds the load begun after the change
    assert d.loads == 2 and not d._loading


# --- the embedded shape: SQLite ------------------------------------------------------------

@pytest.mark.anyio
async def test_sqlite_watcher_notices_another_connections_commit(tmp_path: Path) -> None:
    path = tmp_path / "broker.db"
    with sqlite3.connect(path) as c:
        c.execute("CREATE TABLE t (x INTEGER)")
    rec = Recorder()
    watcher = change_watcher_for(rec, f"sqlite:///{path}")
    assert isinstance(watcher, SqliteChangeWatcher)
    watcher.interval = 0.05
    task = asyncio.create_task(watcher.run())
    try:
        await asyncio.sleep(0.3)
        assert rec.calls == []  # nothing committed: nothing dropped
        other = sqlite3.connect(path)  # like the CLI in another process
        other.execute("INSERT INTO t VALUES (1)")
        other.commit()
        other.close()
        for _ in range(40):
            if rec.calls:
                break
            await asyncio.sleep(0.05)
        assert rec.calls == [None]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


@pytest.mark.anyio
async def test_embedded_change_through_the_tenancy_service_is_live_within_a_second(
        embedded: tuple[TenancyService, TenancyDirectory, str]) -> None:
    svc, directory, url = embedded
    watcher = change_watcher_for(directory, url)
    assert isinstance(watcher, SqliteChangeWatcher)
    task = asyncio.create_task(watcher.run())
    try:
        before = await directory.get("app-a")
        assert before is not None and before.active
        await asyncio.sleep(0.1)  # the watcher has read its first version
        svc.deactivate_application("app-a", now=time.time())
        t0 = time.monotonic()
        while (await directory.get("app-a")) is before:
            assert time.monotonic() - t0 < 1.5, "the change was not seen within a second"
            await asyncio.sleep(0.02)
        after = await directory.get("app-a")
        assert after is not None and not after.active
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_no_watcher_for_an_in_memory_database() -> None:
    assert change_watcher_for(Recorder(), "sqlite://") is None
    assert change_watcher_for(Recorder(), "sqlite:///:memory:") is None


def test_conninfo_of_a_sqlalchemy_url() -> None:
    assert libpq_conninfo("postgresql+psycopg://u:p%40w@h:5433/db") == \
        "postgresql://u:p%40w@h:5433/db"


# --- the shared shape: PostgreSQL LISTEN/NOTIFY ------------------------------------------

@contextlib.asynccontextmanager
async def _listening(listener: PostgresChangeListener) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(listener.run())
    try:
        await asyncio.wait_for(listener.listening.wait(), 10)
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _until(cond: Any, limit: float = 1.0) -> float:
    t0 = time.monotonic()
    while not cond():
        assert time.monotonic() - t0 < limit, "not within the limit"
        await asyncio.sleep(0.01)
    return time.monotonic() - t0


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgres_announcements_name_the_changed_application(pg_roles: Any) -> None:
    engine, svc = _tenancy(pg_roles.runtime_url)
    rec = Recorder()
    listener = PostgresChangeListener.for_url(rec, pg_roles.runtime_url)
    try:
        async with _listening(listener):
            assert rec.calls == [None]  # connected: whatever came before is unknown
            now = time.time()
            created = await asyncio.to_thread(
                svc.create_client, "app-b", auth_method="client_secret_basic",
                redirect_uris=["https://app.example/cb"], now=now)
            await _until(lambda: rec.calls[1:] == ["app-b"])
            await asyncio.to_thread(svc.deactivate_client, "app-b",
                                    created.client.client_id, now=now)
            await asyncio.to_thread(svc.update_application, "app-a", now=now,
                                    display_name="Renamed")
            await _until(lambda: rec.calls[1:] == ["app-b", "app-b", "app-a"])
            await asyncio.to_thread(svc.rotate_keys, "app-a", now, force=True)
            await _until(lambda: rec.calls[-1] == "app-a" and len(rec.calls) == 5)

            # A rolled-back transaction announces nothing (NOTIFY is sent on commit).
            def rolled_back() -> None:
                with contextlib.suppress(RuntimeError), svc.db.transaction() as s:
                    svc.db.announce_change(s, "app-b")
                    raise RuntimeError("rolled back")

            await asyncio.to_thread(rolled_back)
            await asyncio.sleep(0.3)
            assert len(rec.calls) == 5
    finally:
        engine.dispose()


def _terminate_listener(database: str) -> int:
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND "
            "application_name = 'healthid-broker change listener'", (database,)).fetchall()
    return len(rows)


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgres_reconnect_drops_every_view(pg_roles: Any, tmp_path: Path) -> None:
    engine, svc = _tenancy(pg_roles.runtime_url)
    directory = _directory(svc, tmp_path)
    listener = PostgresChangeListener.for_url(directory, pg_roles.runtime_url,
                                              min_backoff=0.05)
    try:
        async with _listening(listener):
            a1, b1 = await directory.get("app-a"), await directory.get("app-b")
            # a change by another process is seen at once, and only for its application
            await asyncio.to_thread(svc.update_application, "app-a", now=time.time(),
                                    display_name="Renamed")
            await _until(lambda: "app-a" not in directory._cache)
            assert (await directory.get("app-a")).display_name == "Renamed"  # type: ignore[union-attr]
            assert await directory.get("app-b") is b1
            assert a1 is not None
            # the connection drops: after the reconnect nothing cached survives
            assert _terminate_listener(pg_roles.runtime_url.rsplit("/", 1)[1]) == 1
            await _until(lambda: listener.connections == 2, limit=5)
            assert not directory._cache
            assert await directory.get("app-b") is not b1
            # and it listens again
            await asyncio.to_thread(svc.update_application, "app-b", now=time.time(),
                                    display_name="Renamed B")
            await _until(lambda: "app-b" not in directory._cache)
    finally:
        engine.dispose()


@pytest.mark.postgres
@pytest.mark.anyio
async def test_postgres_listener_retries_until_the_server_answers(pg_roles: Any) -> None:
    rec = Recorder()
    attempts = 0
    conninfo = libpq_conninfo(pg_roles.runtime_url)

    async def connect() -> psycopg.AsyncConnection[Any]:
        nonlocal attempts
        attempts += 1
        if attempts < 3:  # the server is not reachable yet (a closed port)
            return await psycopg.AsyncConnection.connect(
                "postgresql://postgres@127.0.0.1:1/none", connect_timeout=2)
        return await psycopg.AsyncConnection.connect(conninfo, autocommit=True)

    listener = PostgresChangeListener(rec, connect, min_backoff=0.05)
    async with _listening(listener):
        assert attempts == 3 and listener.connections == 1 and rec.calls == [None]
