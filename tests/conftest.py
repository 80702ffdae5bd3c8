"""Fixtures every room's tests may use, and the marker rules (tests/marker_rules.py)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


@pytest.fixture(autouse=True)
def _restore_root_logging() -> Iterator[None]:
    """A command run in-process (``main([...])``) installs the broker's log handler on the
    root logger, bound to that test's captured stderr; put the root logger back afterwards
    so a later test does not write into a closed capture."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


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


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Start private ``redis-server`` processes on free loopback ports (for what the shared
    server must not be used for: a tiny ``maxmemory``, TLS, Sentinel). ``start(*args,
    config=None, sentinel=False)`` returns the port; every ``{port}`` in ``args`` or
    ``config`` is replaced by it (a TLS server puts it after ``--tls-port`` and gets
    ``--port 0``). Stopped at the end of the test."""
    import shutil
    import socket
    import subprocess
    import time

    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    procs: list[subprocess.Popen[bytes]] = []

    def start(*args: str, config: str | None = None, sentinel: bool = False) -> int:
        port = _free_port()
        work = tmp_path_factory.mktemp("redis")
        cmd = [binary]
        if config is not None:
            conf = work / "redis.conf"
            conf.write_text(config.replace("{port}", str(port)), encoding="utf-8")
            cmd.append(str(conf))
        given = [a.replace("{port}", str(port)) for a in args]
        if "--port" not in given:
            cmd += ["--port", str(port)]
        cmd += ["--bind", "127.0.0.1", "--dir", str(work), *given]
        if sentinel:
            cmd.append("--sentinel")
        else:
            cmd += ["--save", "", "--appendonly", "no"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(proc)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return port
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    err = proc.stderr.read().decode() if proc.stderr else ""
                    raise RuntimeError(f"redis-server did not start: {err}") from None
                time.sleep(0.05)

    try:
        yield start
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


@dataclass(frozen=True)
class PgRoles:
    """The owner and the runtime role of one test database (see storage/rls.py)."""

    owner: str
    runtime: str
    owner_url: str
    runtime_url: str
    admin_url: str


@pytest.fixture
def pg_role_pair(pg_url: str) -> Iterator[PgRoles]:
    """``pg_url``'s database with its own owner and runtime role (cluster-wide, so
    uniquely named), not yet migrated; the roles are dropped afterwards."""
    from healthid_broker.storage import setup_roles

    tag = uuid.uuid4().hex[:10]
    owner, runtime = f"hidb_owner_{tag}", f"hidb_runtime_{tag}"
    host, db = pg_url.split("@", 1)[1].split("/", 1)
    roles = PgRoles(owner, runtime, f"postgresql+psycopg://{owner}@{host}/{db}",
                    f"postgresql+psycopg://{runtime}@{host}/{db}", pg_url)
    try:
        setup_roles(pg_url, owner=owner, runtime=runtime)
        yield roles
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{runtime}"')
            conn.execute(f'DROP ROLE IF EXISTS "{owner}"')


@pytest.fixture
def pg_roles(pg_role_pair: PgRoles) -> PgRoles:
    """:func:`pg_role_pair`, migrated as the owner."""
    from healthid_broker.storage import migrate

    migrate(pg_role_pair.owner_url)
    return pg_role_pair
