"""The Redis client factory: configuration checks, and real connections — ACL user and
password (URL and file), database selection, TLS with a client certificate, Sentinel."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from hypothesis import given
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, ConnectionError

from healthid_broker.crypto.keys import LocalCA, cert_pem, new_ec_key, private_key_pem
from healthid_broker.login import Sealer, StoreUnavailable, redis_store
from healthid_broker.runtime.redis import (
    RedisConfigError,
    RedisSettings,
    connect_redis,
    parse_sentinel,
)

pytestmark = pytest.mark.anyio

SEALER = Sealer({1: os.urandom(32)}, 1, os.urandom(32))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _secret_file(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path


# --------------------------------------------------------------------------- configuration


def test_plain_url_with_user_password_and_db() -> None:
    r = RedisSettings(url="redis://app%40x:p%3Ass@cache.example:6380/3",
                      connect_timeout=1.5, command_timeout=0.7, max_connections=9,
                      health_check_interval=12).resolve()
    assert (r.host, r.port, r.master, r.tls) == ("cache.example", 6380, None, False)
    kw = r.kwargs
    assert (kw["username"], kw["password"], kw["db"]) == ("app@x", "p:ss", 3)
    assert (kw["socket_connect_timeout"], kw["socket_timeout"]) == (1.5, 0.7)
    assert (r.max_connections, kw["health_check_interval"]) == (9, 12)
    assert kw["decode_responses"] is False and "ssl" not in kw
    assert "p:ss" not in repr(r)


def test_tls_url_checks_certificates_and_host_name() -> None:
    r = RedisSettings(url="rediss://cache.example", ca_file="/ca.pem",
                      cert_file="/c.pem", key_file="/c.key").resolve()
    kw = r.kwargs
    assert r.tls and kw["ssl"] is True
    assert (kw["ssl_cert_reqs"], kw["ssl_check_hostname"]) == ("required", True)
    assert (kw["ssl_ca_certs"], kw["ssl_certfile"], kw["ssl_keyfile"]) == (
        "/ca.pem", "/c.pem", "/c.key")


def test_sentinel_by_url_and_by_options() -> None:
    by_url = RedisSettings(url="rediss+sentinel://u:pw@s1:26380,[::1],s3/mymaster/2").resolve()
    assert by_url.sentinels == (("s1", 26380), ("::1", 26379), ("s3", 26379))
    assert (by_url.master, by_url.tls, by_url.kwargs["db"]) == ("mymaster", True, 2)
    assert (by_url.kwargs["username"], by_url.kwargs["password"]) == ("u", "pw")
    assert by_url.sentinel_kwargs["ssl"] is True  # TLS to the sentinels too
    by_opts = RedisSettings(url="redis://u:pw@ignored/2", sentinels=(("s1", 26380),),
                            sentinel_master="mymaster").resolve()
    assert by_opts.sentinels == (("s1", 26380),) and by_opts.master == "mymaster"
    assert "pw" not in repr(by_url) + repr(by_opts)


@pytest.mark.parametrize(("settings", "message"), [
    (RedisSettings(url="http://x"), "starts with"),
    (RedisSettings(url="redis://x/abc"), "database number"),
    (RedisSettings(url="redis://x/1/2"), "database number only"),
    (RedisSettings(url="redis://x/99999"), "out of range"),
    (RedisSettings(url="redis://x:notaport"), "port"),
    (RedisSettings(url="redis://x?ssl=true"), "query"),
    (RedisSettings(url="redis://"), "no host"),
    (RedisSettings(url="redis+sentinel://s1:26379"), "names the master"),
    (RedisSettings(url="redis://x", sentinels=(("s", 1),)), "both"),
    (RedisSettings(url="redis://x", sentinel_master="m"), "both"),
    (RedisSettings(url="redis://x", ca_file="/ca"), "not rediss"),
    (RedisSettings(url="rediss://x", cert_file="/c"), "both cert and key"),
    (RedisSettings(url="redis://x", connect_timeout=0), "timeout"),
    (RedisSettings(url="redis://x", command_timeout=61), "timeout"),
    (RedisSettings(url="redis://x", max_connections=0), "pool size"),
    (RedisSettings(url="redis://x", health_check_interval=-1), "health-check"),
])
def test_unusable_settings_are_refused(settings: RedisSettings, message: str) -> None:
    with pytest.raises(RedisConfigError, match=message):
        settings.resolve()


def test_password_file_checks(tmp_path: Path) -> None:
    good = _secret_file(tmp_path / "pw", "s3cret\n")
    r = RedisSettings(url="redis://user@x", password_file=good).resolve()
    assert (r.kwargs["username"], r.kwargs["password"]) == ("user", "s3cret")
    for name, text, mode, message in (
            ("open", "s3cret", 0o644, "group or others"),
            ("empty", "\n", 0o600, "one non-empty line"),
            ("two", "a\nb\n", 0o600, "one non-empty line")):
        path = _secret_file(tmp_path / name, text, mode)
        with pytest.raises(RedisConfigError, match=message):
            RedisSettings(url="redis://x", password_file=path).resolve()
    with pytest.raises(RedisConfigError, match="cannot read"):
        RedisSettings(url="redis://x", password_file=tmp_path / "missing").resolve()
    with pytest.raises(RedisConfigError, match="twice"):
        RedisSettings(url="redis://:pw@x", password_file=good).resolve()


@given(st.text(max_size=40))
def test_sentinel_address_parser_never_fails_unexpectedly(text: str) -> None:
    try:
        host, port = parse_sentinel(text)
    except RedisConfigError:
        return
    assert host and 0 < port < 65536


async def test_the_client_parses_with_hiredis() -> None:
    client = connect_redis(RedisSettings(url="redis://127.0.0.1:6379/0"))
    try:
        await client.ping()
        conn = await client.connection_pool.get_connection()
        try:
            assert "Hiredis" in type(conn._parser).__name__
        finally:
            await client.connection_pool.release(conn)
    finally:
        await client.aclose()


# --------------------------------------------------------------------------- real servers


@pytest.mark.redis
async def test_acl_user_password_and_database(tmp_path: Path) -> None:
    """An ACL user created for the test (and deleted after): URL password, password file,
    wrong password refused, and the database number respected."""
    admin = Redis(host="127.0.0.1", port=6379)
    user = f"hidb-test-{uuid.uuid4().hex[:10]}"
    prefix = f"acl-{uuid.uuid4().hex}:"
    password = uuid.uuid4().hex
    await admin.execute_command("ACL", "SETUSER", user, "on", f">{password}", "resetkeys",
                                f"~{prefix}*", "-@all", "+@read", "+@write", "+select",
                                "+ping", "+client|setname", "+hello", "+auth")
    clients: list[Redis] = []
    try:
        by_url = connect_redis(RedisSettings(url=f"redis://{user}:{password}@127.0.0.1/5"))
        by_file = connect_redis(RedisSettings(
            url=f"redis://{user}@127.0.0.1:6379/5",
            password_file=_secret_file(tmp_path / "pw", password + "\n")))
        wrong = connect_redis(RedisSettings(url=f"redis://{user}:nope@127.0.0.1/5"))
        clients += [by_url, by_file, wrong]
        store = redis_store(by_url, SEALER, prefix=prefix)
        await store.put("p", "k", b"v", ttl=60)
        assert await redis_store(by_file, SEALER, prefix=prefix).get("p", "k") == b"v"
        # the entry is in database 5, not 0
        assert [k async for k in admin.scan_iter(match=prefix + "*")] == []
        db5 = Redis(host="127.0.0.1", port=6379, db=5)
        clients.append(db5)
        assert len([k async for k in db5.scan_iter(match=prefix + "*")]) == 1
        with pytest.raises(StoreUnavailable):
            await redis_store(wrong, SEALER, prefix=prefix).get("p", "k")
        with pytest.raises(AuthenticationError):
            await wrong.ping()
        await db5.delete(*[k async for k in db5.scan_iter(match=prefix + "*")])
    finally:
        for c in clients:
            await c.aclose()
        await admin.execute_command("ACL", "DELUSER", user)
        await admin.aclose()


def _client_cert(ca: LocalCA) -> tuple[bytes, bytes]:
    key = new_ec_key()
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker")]))
        .issuer_name(ca.cert.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False)
        .sign(ca.key, hashes.SHA256())
    )
    return cert_pem(cert), private_key_pem(key)


@pytest.mark.redis
@pytest.mark.slow
async def test_tls_with_client_certificate(redis_server: Any, tmp_path: Path) -> None:
    """rediss:// against a real TLS Redis that requires client certificates: the right CA
    and certificate work; an unknown CA or a missing client certificate fail."""
    ca = LocalCA.create("redis test CA")
    (tmp_path / "ca.pem").write_bytes(cert_pem(ca.cert))
    ca.issue_server_cert(["localhost", "127.0.0.1"]).write(tmp_path / "srv.pem",
                                                           tmp_path / "srv.key")
    cert, key = _client_cert(ca)
    (tmp_path / "cli.pem").write_bytes(cert)
    _secret_file(tmp_path / "cli.key", key.decode())
    port = redis_server("--port", "0", "--tls-port", "{port}",
                        "--tls-cert-file", str(tmp_path / "srv.pem"),
                        "--tls-key-file", str(tmp_path / "srv.key"),
                        "--tls-ca-cert-file", str(tmp_path / "ca.pem"),
                        "--tls-auth-clients", "yes")
    good = connect_redis(RedisSettings(
        url=f"rediss://localhost:{port}/0", ca_file=str(tmp_path / "ca.pem"),
        cert_file=str(tmp_path / "cli.pem"), key_file=str(tmp_path / "cli.key")))
    other_ca = LocalCA.create("someone else")
    (tmp_path / "other.pem").write_bytes(cert_pem(other_ca.cert))
    wrong_ca = connect_redis(RedisSettings(
        url=f"rediss://localhost:{port}/0", ca_file=str(tmp_path / "other.pem"),
        cert_file=str(tmp_path / "cli.pem"), key_file=str(tmp_path / "cli.key"),
        connect_timeout=2))
    no_cert = connect_redis(RedisSettings(url=f"rediss://localhost:{port}/0",
                                          ca_file=str(tmp_path / "ca.pem"), connect_timeout=2))
    try:
        store = redis_store(good, SEALER, prefix="tls:")
        await store.put("p", "k", b"over tls", ttl=60)
        assert await store.take("p", "k") == b"over tls"
        with pytest.raises(ConnectionError):
            await wrong_ca.ping()
        with pytest.raises(StoreUnavailable):
            await redis_store(no_cert, SEALER, prefix="tls:").get("p", "k")
    finally:
        for c in (good, wrong_ca, no_cert):
            await c.aclose()


@pytest.mark.redis
@pytest.mark.slow
async def test_sentinel_finds_the_master(redis_server: Any) -> None:
    """A real Sentinel (redis-server --sentinel) on loopback monitoring a private master;
    the client asks it for the master, by URL and by options."""
    master_port = redis_server()
    sentinel_port = redis_server(config=(
        "port {port}\n"
        "bind 127.0.0.1\n"
        f"sentinel monitor hidbmaster 127.0.0.1 {master_port} 1\n"
        "sentinel down-after-milliseconds hidbmaster 5000\n"), sentinel=True)
    by_url = connect_redis(RedisSettings(
        url=f"redis+sentinel://127.0.0.1:{sentinel_port}/hidbmaster/1"))
    by_options = connect_redis(RedisSettings(
        url="redis://unused/1", sentinels=(("127.0.0.1", sentinel_port),),
        sentinel_master="hidbmaster"))
    direct = Redis(host="127.0.0.1", port=master_port, db=1)
    try:
        await redis_store(by_url, SEALER, prefix="sen:").put("p", "k", b"via sentinel", ttl=60)
        assert await redis_store(by_options, SEALER, prefix="sen:").take("p", "k") == (
            b"via sentinel")
        await by_url.set("sen:marker", b"1", px=60_000)
        assert await direct.get("sen:marker") == b"1"  # really on the master, database 1
        unknown = connect_redis(RedisSettings(
            url=f"redis+sentinel://127.0.0.1:{sentinel_port}/nosuchmaster", connect_timeout=1))
        try:
            with pytest.raises(StoreUnavailable):
                await redis_store(unknown, SEALER, prefix="sen:").get("p", "k")
        finally:
            await unknown.aclose()
    finally:
        for c in (by_url, by_options, direct):
            await c.aclose()
