"""The one place that builds the broker's Redis client (redis-py asyncio, hiredis parser).

Everything a deployment decides about Redis is a :class:`RedisSettings`:

* ``redis://[user[:password]@]host[:port][/db]`` — plain TCP, database ``db`` (default 0);
* ``rediss://…`` — TLS, the server certificate checked against the system trust store or
  ``ca_file``, host name checked; ``cert_file``/``key_file`` add a client certificate
  (mutual TLS);
* ``redis+sentinel://[user[:password]@]host:port[,host:port…]/<master-name>[/db]`` (and
  ``rediss+sentinel://`` for TLS to the sentinels *and* the data nodes) — Redis Sentinel;
  equivalently a plain ``redis://`` URL for credentials/db plus ``sentinels`` and
  ``sentinel_master``. The URL's user and password authenticate at the data nodes;
  sentinels that require a password of their own get ``sentinel_password_file``;
* ``password_file`` — the AUTH password read from a file (owner-only permissions, one line)
  instead of the URL, so it never shows in a process list; a URL user name still applies
  (Redis 6 ACL user);
* ``connect_timeout`` / ``command_timeout`` (seconds), ``max_connections`` (pool size per
  process), ``health_check_interval`` (a connection idle for longer is PINGed before use).

Retries: one immediate retry on a *connection* error (a pooled connection that a Redis
restart or a Sentinel fail-over closed), never on a timeout — a timed-out ``GETDEL`` may
have run, and re-sending writes to a struggling server is what turns an outage into a storm.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

__all__ = ["RedisConfigError", "RedisSettings", "connect_redis", "parse_sentinel"]

DEFAULT_SENTINEL_PORT = 26379


class RedisConfigError(ValueError):
    """The Redis configuration is unusable (message names the setting, never a secret)."""


def parse_sentinel(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port``; port defaults to 26379) → ``(host, port)``."""
    text = text.strip()
    if not text:
        raise RedisConfigError("an empty sentinel address")
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise RedisConfigError(f"not a sentinel address: {text!r}")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    if not host:
        raise RedisConfigError(f"not a sentinel address: {text!r}")
    try:
        port = int(port_text) if port_text else DEFAULT_SENTINEL_PORT
    except ValueError:
        raise RedisConfigError(f"not a sentinel port: {text!r}") from None
    if not 0 < port < 65536:
        raise RedisConfigError(f"not a sentinel port: {text!r}")
    return host, port


def _read_secret_file(path: Path, what: str) -> str:
    """A password file: owned by us, not readable by group or others, one non-empty line."""
    try:
        st = path.stat()
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise RedisConfigError(
                f"the {what} file {path} is readable by group or others; chmod 600 it")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise RedisConfigError(f"cannot read the {what} file {path}: "
                               f"{type(exc).__name__}") from None
    secret = text.rstrip("\r\n")
    if not secret or "\n" in secret or "\r" in secret:
        raise RedisConfigError(f"the {what} file {path} must hold exactly one non-empty line")
    return secret


@dataclass(frozen=True)
class RedisSettings:
    """How to reach Redis; see the module documentation for the URL forms."""

    url: str
    password_file: Path | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    sentinel_master: str | None = None
    sentinel_password_file: Path | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    connect_timeout: float = 2.0
    command_timeout: float = 2.0
    max_connections: int = 64
    health_check_interval: float = 30.0
    client_name: str = "healthid-broker"

    def resolve(self) -> ResolvedRedis:
        """Check every setting and return what :func:`connect_redis` passes to redis-py."""
        parts = urlsplit(self.url)
        scheme = parts.scheme.lower()
        if scheme not in ("redis", "rediss", "redis+sentinel", "rediss+sentinel"):
            raise RedisConfigError(
                "a Redis URL starts with redis://, rediss://, redis+sentinel:// or "
                "rediss+sentinel://")
        if parts.query or parts.fragment:
            raise RedisConfigError("options go into their own settings, not the Redis URL's "
                                   "query")
        tls = scheme.startswith("rediss")
        netloc = parts.netloc
        userinfo, _, hostinfo = netloc.rpartition("@")
        user_text, has_pw, pw_text = userinfo.partition(":")
        username = unquote(user_text) or None
        password = unquote(pw_text) if has_pw else None
        segments = [s for s in parts.path.split("/") if s]
        sentinels = list(self.sentinels)
        master = self.sentinel_master
        if scheme.endswith("+sentinel"):
            if not hostinfo:
                raise RedisConfigError("a redis+sentinel:// URL lists the sentinels: "
                                       "host:port[,host:port…]")
            sentinels += [parse_sentinel(s) for s in hostinfo.split(",")]
            if not segments:
                raise RedisConfigError("a redis+sentinel:// URL names the master: "
                                       "redis+sentinel://host:port/<master-name>[/db]")
            if master is not None and master != segments[0]:
                raise RedisConfigError("the sentinel master is named twice, differently")
            master = unquote(segments.pop(0))
            host, port = "", 0
        else:
            if not hostinfo:
                raise RedisConfigError("the Redis URL has no host")
            try:
                host, port = parts.hostname or "", parts.port or 6379
            except ValueError:
                raise RedisConfigError("the Redis URL's port is not a number") from None
        if len(segments) > 1:
            raise RedisConfigError("the Redis URL's path is the database number only")
        try:
            db = int(segments[0]) if segments else 0
        except ValueError:
            raise RedisConfigError("the Redis URL's path must be a database number") from None
        if not 0 <= db < 16384:
            raise RedisConfigError("the Redis database number is out of range")
        if bool(sentinels) != bool(master):
            raise RedisConfigError("Redis Sentinel needs both sentinel addresses and the "
                                   "master's name")
        if self.password_file is not None:
            if password is not None:
                raise RedisConfigError("the Redis password is given twice (URL and file)")
            password = _read_secret_file(Path(self.password_file), "Redis password")
        sentinel_password = None
        if self.sentinel_password_file is not None:
            if not sentinels:
                raise RedisConfigError("a sentinel password file without sentinels")
            sentinel_password = _read_secret_file(Path(self.sentinel_password_file),
                                                  "sentinel password")
        if (self.ca_file or self.cert_file or self.key_file) and not tls:
            raise RedisConfigError("TLS files are given but the Redis URL is not rediss://")
        if bool(self.cert_file) != bool(self.key_file):
            raise RedisConfigError("a Redis client certificate needs both cert and key file")
        for name, value in (("connect timeout", self.connect_timeout),
                            ("command timeout", self.command_timeout)):
            if not 0 < value <= 60:
                raise RedisConfigError(f"the Redis {name} must be in (0, 60] seconds")
        if not 1 <= self.max_connections <= 10_000:
            raise RedisConfigError("the Redis pool size must be between 1 and 10000")
        if self.health_check_interval < 0:
            raise RedisConfigError("the Redis health-check interval must not be negative")

        kwargs: dict[str, Any] = {
            "db": db,
            "username": username,
            "password": password,
            "socket_connect_timeout": self.connect_timeout,
            "socket_timeout": self.command_timeout,
            "socket_keepalive": True,
            "health_check_interval": self.health_check_interval,
            "client_name": self.client_name,
            "decode_responses": False,
            # one retry on a dropped connection, none on a timeout (module doc)
            "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), 1,
                           supported_errors=(RedisConnectionError,)),
        }
        tls_kwargs: dict[str, Any] = {}
        if tls:
            tls_kwargs = {"ssl": True, "ssl_cert_reqs": "required",
                          "ssl_check_hostname": True, "ssl_ca_certs": self.ca_file,
                          "ssl_certfile": self.cert_file, "ssl_keyfile": self.key_file}
        return ResolvedRedis(host=host, port=port, sentinels=tuple(sentinels),
                             master=master, tls=tls, max_connections=self.max_connections,
                             kwargs={**kwargs, **tls_kwargs},
                             sentinel_kwargs={
                                 "socket_connect_timeout": self.connect_timeout,
                                 "socket_timeout": self.command_timeout,
                                 "password": sentinel_password,
                                 "decode_responses": False,
                                 **tls_kwargs})


@dataclass(frozen=True)
class ResolvedRedis:
    """The checked configuration (no I/O yet): exactly what goes to redis-py."""

    host: str
    port: int
    sentinels: tuple[tuple[str, int], ...]
    master: str | None
    tls: bool
    max_connections: int
    kwargs: dict[str, Any]
    sentinel_kwargs: dict[str, Any]

    def __repr__(self) -> str:  # never print the password
        where = (f"sentinel {self.master} via {list(self.sentinels)}" if self.master
                 else f"{self.host}:{self.port}")
        return f"ResolvedRedis({where}, db={self.kwargs['db']}, tls={self.tls})"


def connect_redis(settings: RedisSettings) -> Redis:
    """A redis-py asyncio client (connection pool) for ``settings``; connects lazily."""
    r = settings.resolve()
    if r.master is not None:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]
            list(r.sentinels), sentinel_kwargs=r.sentinel_kwargs,
            max_connections=r.max_connections, **r.kwargs)
        client: Redis = sentinel.master_for(r.master, redis_class=Redis)
        return client
    return Redis(host=r.host, port=r.port, max_connections=r.max_connections, **r.kwargs)

