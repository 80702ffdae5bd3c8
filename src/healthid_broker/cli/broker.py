"""``healthid-broker demo``, ``init``, ``serve`` and ``sealing-keys``."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any


def add_commands(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the sandbox federation, the broker and a demo app on this machine",
        description="Starts a sandbox TI federation (master + sectoral IdPs), the broker with a "
        "demo tenant/application/client, and a demo app — all on loopback — and prints the URL "
        "to open. Ctrl-C stops it.",
    )
    p.add_argument("--host", default="127.0.0.1",
                   help="loopback address to bind (default %(default)s)")
    p.add_argument("--port", type=int, default=8400,
                   help="first of five consecutive ports; 0 picks free ports (default %(default)s)")
    p.add_argument("--data-dir", type=Path, default=Path(".data/demo"),
                   help="where keys, the database and the CA live (default %(default)s)")
    p.add_argument("--auto-person", metavar="KVNR",
                   help="sandbox IdPs approve this synthetic person without the picker")
    add_redis_options(p, lambda _name: None, prefix_default="hidb-demo:")
    p.add_argument("--external-sandbox", type=Path, metavar="FILE",
                   help="use a separately running sandbox: FILE holds the JSON that "
                   "`healthid-broker sandbox --json` printed")
    p.add_argument("--tls", action="store_true",
                   help="serve the browser-facing pages (demo app, authorize, callback, the "
                   "sandbox IdPs' pages) on https with the demo's local CA too, for strict "
                   "clients; the pages of an --external-sandbox stay as that sandbox serves "
                   "them")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object with URLs, client credentials and the "
                   "federation master's public keys once ready")
    p.set_defaults(func=_demo)
    add_init(sub)
    add_serve(sub)
    sk = sub.add_parser("sealing-keys", help="manage the transient store's sealing keys")
    sk_sub = sk.add_subparsers(dest="sealing_action", required=True, metavar="ACTION")
    rot = sk_sub.add_parser("rotate", help="add a new current key; old keys stay for an hour")
    rot.add_argument("--data-dir", type=Path, default=Path("data"))
    rot.set_defaults(func=_rotate_sealing)


def _rotate_sealing(args: argparse.Namespace) -> int:
    from ..crypto.key_provider import KeyProviderError
    from ..login.sealing_keys import rotate

    try:
        kid = rotate(args.data_dir)
    except KeyProviderError as exc:
        print(f"healthid-broker sealing-keys rotate: {exc}", file=sys.stderr)
        return 1
    print(f"current sealing key is now {kid}; restart the broker processes one by one")
    return 0


def add_init(sub: Any) -> None:
    p = sub.add_parser(
        "init",
        help="create the broker's secrets (and migrate the database) once, before the first start",
        description="Creates the broker-held secrets in the data directory (key-encryption key, "
        "pairwise-subject root, sealing keys; files readable by their owner only) unless they "
        "exist, checks them, and with --database-url migrates the database. Existing secrets are "
        "never changed, so running it again, or from several machines at once, is safe. A "
        "shared deployment (Redis or PostgreSQL) needs it before its first `serve`.",
    )
    p.add_argument("--data-dir", type=Path, default=Path(_env_default("DATA_DIR") or "data"))
    p.add_argument("--database-url", default=_env_default("DATABASE_URL"),
                   help="also migrate this database to the newest schema")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_init)


def _init(args: argparse.Namespace) -> int:
    from ..crypto.key_provider import KeyProviderError
    from ..runtime.secrets import SECRET_FILES, init_secrets

    try:
        created = init_secrets(args.data_dir)
    except (KeyProviderError, OSError) as exc:
        print(f"healthid-broker init: {exc}", file=sys.stderr)
        return 1
    migrated = False
    if args.database_url:
        from sqlalchemy.exc import SQLAlchemyError

        from ..storage.db import migrate

        try:
            migrate(args.database_url)
        except SQLAlchemyError as exc:
            print(f"healthid-broker init: cannot migrate the database: "
                  f"{type(exc).__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
            return 1
        migrated = True
    if args.json:
        print(json.dumps({"data_dir": str(args.data_dir), "created": created,
                          "unchanged": [n for n in SECRET_FILES if n not in created],
                          "database_migrated": migrated}))
    else:
        if created:
            print(f"created {', '.join(created)} in {args.data_dir}")
        kept = [n for n in SECRET_FILES if n not in created]
        if kept:
            print(f"{', '.join(kept)} already existed in {args.data_dir}: left unchanged")
        if migrated:
            print("database is at the newest schema")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ..logs import setup_logging

    setup_logging("INFO", json_format=False)
    try:
        from ..web.server import run_main

        return run_main(_run_demo(args))
    except KeyboardInterrupt:
        return 0


async def _run_demo(args: argparse.Namespace) -> int:
    from ..crypto.key_provider import KeyProviderError
    from ..demo.run import Demo, DemoConfig
    from ..web.server import settle_heap

    external = None
    if args.external_sandbox is not None:
        external = json.loads(args.external_sandbox.read_text(encoding="utf-8"))
    try:
        redis = redis_settings(args)
        limits = rate_limits(args)
    except ValueError as exc:
        print(f"healthid-broker demo: {exc}", file=sys.stderr)
        return 2
    demo = Demo(DemoConfig(host=args.host, port=args.port, data_dir=args.data_dir,
                           auto_person=args.auto_person, redis=redis,
                           redis_prefix=args.redis_prefix,
                           external_sandbox=external, rate_limits=limits, tls=args.tls))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        info = await demo.start()
    except (OSError, KeyProviderError) as exc:
        print(f"healthid-broker demo: cannot start: {exc}", file=sys.stderr)
        await demo.stop()
        return 1
    if args.json:
        print(json.dumps(info), flush=True)
        if args.tls:
            print(_trust_hint(info["ca_cert"]), file=sys.stderr, flush=True)
    else:
        print(
            "\n  healthid-broker demo is running (SANDBOX — synthetic persons only)\n\n"
            f"  Open the demo app:   {info['demo_app']}\n"
            f"  Issuer (OIDC):       {info['issuer']}\n"
            f"  client_id:           {info['client_id']}\n"
            f"  client_secret:       {info['client_secret']}\n"
            f"  Local CA:            {info['ca_cert']}\n\n"
            + (_trust_hint(info["ca_cert"]) if args.tls else "")
            + "  Ctrl-C stops it.\n", flush=True)
    settle_heap()
    await stop.wait()
    await demo.stop()
    return 0


def _trust_hint(ca: str) -> str:
    """How to make browsers and client libraries trust the demo's local CA (``--tls``)."""
    return (
        "  Every page is on https, signed by the local CA above. To trust it:\n"
        f"    Node:      NODE_EXTRA_CA_CERTS={ca} node app.js\n"
        f"    Python:    SSL_CERT_FILE={ca} (httpx, Authlib), REQUESTS_CA_BUNDLE={ca} (requests)\n"
        "    Chromium:  import it under Settings > Privacy and security > Security >\n"
        "               Manage certificates > Authorities (or: certutil -d sql:$HOME/.pki/nssdb\n"
        f"               -A -t C,, -n healthid-broker-demo -i {ca})\n"
        "    Firefox:   Settings > Privacy & Security > Certificates > View Certificates >\n"
        "               Authorities > Import (trust for websites)\n\n")


def add_serve(sub: Any) -> None:
    p = sub.add_parser(
        "serve",
        help="run the broker's public role (production / scale-out shape)",
        description="Serves every active application's federation entity and OpenID Provider. "
        "Stateless: run as many processes as you like behind a load balancer, sharing the "
        "database, Redis and the data directory's key files.",
    )
    env = _env_default
    p.add_argument("--public-base", default=env("PUBLIC_BASE"),
                   required=env("PUBLIC_BASE") is None,
                   help="https base URL; entity ids are <public-base>/<short-key>")
    p.add_argument("--browser-base", default=env("BROWSER_BASE"),
                   help="base URL for pages people see (default: the public base)")
    p.add_argument("--data-dir", type=Path, default=Path(env("DATA_DIR") or "data"))
    p.add_argument("--database-url", default=env("DATABASE_URL"))
    p.add_argument("--key-provider",
                   default=os.environ.get("HEALTHID_BROKER_KEY_PROVIDER", "file"),
                   help="where the broker's secrets come from: file (the data directory, made "
                   "by `healthid-broker init`), env or env:KEK_VAR (environment variables)")
    add_redis_options(p, env)
    p.add_argument("--federation", choices=["sandbox", "tu", "ru", "pu"],
                   default=env("FEDERATION") or "tu")
    p.add_argument("--master", default=env("MASTER"),
                   help="federation master entity id (default: gematik's for tu/ru/pu)")
    p.add_argument("--master-jwks", type=Path, default=env("MASTER_JWKS"),
                   help="the federation master's pinned public keys (JWKS file, A_23046)")
    p.add_argument("--sandbox-info", type=Path,
                   help="federation=sandbox: the JSON a running `healthid-broker sandbox --json` "
                   "printed (master, its keys, CA)")
    p.add_argument("--ca-file", default=env("CA_FILE"),
                   help="extra CA bundle for outbound https (default: system store)")
    p.add_argument("--host", default=env("HOST") or "127.0.0.1")
    p.add_argument("--port", type=int, default=int(env("PORT") or 8443))
    p.add_argument("--tls-cert", default=env("TLS_CERT"))
    p.add_argument("--tls-key", default=env("TLS_KEY"))
    p.add_argument("--rotate-every", type=float, default=float(env("ROTATE_EVERY") or 3600),
                   help="seconds between scheduled key-rotation runs; 0 disables "
                   "(default %(default)s)")
    p.set_defaults(func=_serve)


def add_redis_options(p: Any, env: Any, *, prefix_default: str = "hidb:") -> None:
    """The Redis and rate-limit options of ``serve`` and ``demo`` (docs/login-flow.md)."""
    g = p.add_argument_group("Redis (transient login store and rate-limit counters)")
    g.add_argument("--redis-url", default=env("REDIS_URL"),
                   help="redis://[user[:password]@]host[:port][/db], rediss://… (TLS) or "
                   "redis+sentinel://host:port[,host:port…]/MASTER[/db]; without it the "
                   "store and the rate limits are in memory (one process only)")
    g.add_argument("--redis-prefix", default=env("REDIS_PREFIX") or prefix_default,
                   help="key prefix in Redis (default %(default)s)")
    g.add_argument("--redis-password-file", type=Path, default=env("REDIS_PASSWORD_FILE"),
                   help="file (mode 600) holding the Redis AUTH password")
    g.add_argument("--redis-sentinel", action="append", metavar="HOST:PORT",
                   default=_split(env("REDIS_SENTINELS")),
                   help="a Redis Sentinel to ask for the master (repeatable)")
    g.add_argument("--redis-sentinel-master", metavar="NAME",
                   default=env("REDIS_SENTINEL_MASTER"),
                   help="the master's name at the sentinels")
    g.add_argument("--redis-sentinel-password-file", type=Path,
                   default=env("REDIS_SENTINEL_PASSWORD_FILE"),
                   help="file (mode 600) holding the sentinels' own password")
    g.add_argument("--redis-ca-file", default=env("REDIS_CA_FILE"),
                   help="CA bundle for rediss:// (default: system store)")
    g.add_argument("--redis-cert-file", default=env("REDIS_CERT_FILE"),
                   help="client certificate for rediss:// (with --redis-key-file)")
    g.add_argument("--redis-key-file", default=env("REDIS_KEY_FILE"))
    g.add_argument("--redis-connect-timeout", type=float,
                   default=float(env("REDIS_CONNECT_TIMEOUT") or 2.0),
                   help="seconds (default %(default)s)")
    g.add_argument("--redis-timeout", type=float, default=float(env("REDIS_TIMEOUT") or 2.0),
                   help="seconds a command may take (default %(default)s)")
    g.add_argument("--redis-pool-size", type=int, default=int(env("REDIS_POOL_SIZE") or 64),
                   help="connections per process (default %(default)s)")
    g.add_argument("--redis-health-check-interval", type=float,
                   default=float(env("REDIS_HEALTH_CHECK_INTERVAL") or 30.0),
                   help="PING a connection idle this many seconds before use "
                   "(default %(default)s)")
    p.add_argument("--rate-limit", action="append", metavar="CATEGORY=N",
                   default=_split(env("RATE_LIMITS")),
                   help="requests per minute: authorize|choose|callback|token=N per source "
                   "address, client.authorize|client.token=N per client, 0 or `off` "
                   "disables (repeatable; defaults: authorize, choose, callback 60, token "
                   "600, client.authorize and client.token 3000)")


def _split(value: str | None) -> list[str]:
    return [v for v in (value or "").replace(",", " ").split() if v]


def redis_settings(args: argparse.Namespace) -> Any:
    """The :class:`~healthid_broker.runtime.redis.RedisSettings` of the command line, or
    ``None`` without ``--redis-url``; checked (raises ``ValueError``)."""
    from ..runtime.redis import RedisSettings, parse_sentinel

    if not args.redis_url:
        if args.redis_sentinel or args.redis_sentinel_master:
            raise ValueError("--redis-sentinel needs --redis-url (for credentials and the "
                             "database, e.g. redis://user@sentinel/0)")
        return None
    settings = RedisSettings(
        url=args.redis_url, password_file=args.redis_password_file,
        sentinels=tuple(parse_sentinel(s) for s in args.redis_sentinel or ()),
        sentinel_master=args.redis_sentinel_master,
        sentinel_password_file=args.redis_sentinel_password_file,
        ca_file=args.redis_ca_file, cert_file=args.redis_cert_file,
        key_file=args.redis_key_file, connect_timeout=args.redis_connect_timeout,
        command_timeout=args.redis_timeout, max_connections=args.redis_pool_size,
        health_check_interval=args.redis_health_check_interval)
    settings.resolve()
    return settings


def rate_limits(args: argparse.Namespace) -> Any:
    from ..web.rate_limit import RateLimits

    return RateLimits.parse(args.rate_limit or ())


def _env_default(name: str) -> str | None:
    return os.environ.get(f"HEALTHID_{name}")


def _serve(args: argparse.Namespace) -> int:
    from ..logs import setup_logging

    setup_logging("INFO")
    try:
        from ..web.server import run_main

        return run_main(_run_serve(args))
    except KeyboardInterrupt:
        return 0


def serve_settings(args: argparse.Namespace) -> Any:
    from ..runtime.settings import ENVIRONMENTS, BrokerSettings, load_jwks_file

    master = args.master
    jwks = None
    ca_file = args.ca_file
    if args.federation == "sandbox":
        if args.sandbox_info is None:
            raise SystemExit("--federation sandbox needs --sandbox-info FILE")
        info = json.loads(args.sandbox_info.read_text(encoding="utf-8"))
        master = master or info["federation_master"]
        jwks = info["master_jwks"]
        ca_file = ca_file or info.get("ca_cert")
    else:
        master = master or ENVIRONMENTS[args.federation]
        if args.master_jwks is None:
            raise SystemExit(
                f"--master-jwks is required for {args.federation}: pin the federation master's "
                "keys as published by gematik (A_23046)")
        jwks = load_jwks_file(args.master_jwks)
    return BrokerSettings(
        public_base=args.public_base.rstrip("/"), browser_base=args.browser_base,
        data_dir=args.data_dir, environment=args.federation, master_entity_id=master,
        master_jwks=jwks, database_url=args.database_url, redis_url=args.redis_url,
        ca_file=ca_file)


async def _run_serve(args: argparse.Namespace) -> int:
    from ..crypto.key_provider import KeyProviderError
    from ..runtime.compose import build_broker
    from ..runtime.invalidation import change_watcher_for
    from ..runtime.rotation import rotation_loop
    from ..runtime.secrets import is_shared_shape, load_secrets
    from ..storage.db import SchemaError, default_database_url, open_database
    from ..storage.rls import runtime_role_problems_of
    from ..tenancy.service import TenancyService
    from ..web.rate_limit import MemoryRateLimiter, RateLimiter, RedisRateLimiter
    from ..web.server import settle_heap, start_server
    from ..web.tls import server_context

    try:
        settings = serve_settings(args)
        settings.check()
        redis = redis_settings(args)
        limits = rate_limits(args)
    except (ValueError, OSError, KeyError) as exc:
        print(f"healthid-broker serve: {exc}", file=sys.stderr)
        return 2
    # Secrets before anything else: a shared deployment never makes them on start (a second
    # set would split the deployment); `healthid-broker init` makes them once.
    try:
        secrets = load_secrets(
            settings.data_dir, provider=args.key_provider,
            create=args.key_provider == "file" and redis is None
            and not is_shared_shape(settings.database_url, settings.redis_url))
    except (KeyProviderError, OSError) as exc:
        print(f"healthid-broker serve: {exc}", file=sys.stderr)
        return 2
    try:
        engine, factory = open_database(settings.database_url
                                        or default_database_url(settings.data_dir))
        problems = runtime_role_problems_of(engine)
    except SchemaError as exc:
        print(f"healthid-broker serve: {exc}", file=sys.stderr)
        return 2
    if problems:
        # T-15: the service runs as a role that row-level security binds and that cannot
        # run DDL; the owner role is for `db upgrade` only (docs/tenancy.md).
        print("healthid-broker serve: the database role is not fit to run the service: "
              + "; ".join(problems) + ". Create an owner and a runtime role with "
              "`healthid-broker db roles`, migrate as the owner (`healthid-broker init` or "
              "`db upgrade`) and serve as the runtime role.", file=sys.stderr)
        engine.dispose()
        return 2
    tenancy = TenancyService(factory, secrets.kek)
    backend = None
    limiter: RateLimiter = MemoryRateLimiter()
    redis_client = None
    if redis is not None:
        from ..login.store import RedisBackend
        from ..runtime.redis import connect_redis

        redis_client = connect_redis(redis)
        backend = RedisBackend(redis_client, prefix=args.redis_prefix)
        limiter = RedisRateLimiter(redis_client, prefix=args.redis_prefix)
    rt = build_broker(settings, tenancy, store_backend=backend, secrets=secrets,
                      rate_limiter=limiter, rate_limits=limits)
    if redis_client is not None:
        rt.closers.append(redis_client.aclose)
    ctx = server_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    server = await start_server(rt.asgi, host=args.host, port=args.port, ssl_context=ctx)
    print(json.dumps({"listening": f"{'https' if ctx else 'http'}://{args.host}:{server.port}",
                      "public_base": settings.public_base, "federation": settings.environment}),
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    settle_heap()
    rotation = None
    if args.rotate_every > 0:
        rotation = asyncio.create_task(
            rotation_loop(tenancy, rt.directory, interval=args.rotate_every))
    # Changes made by the CLI or another process are live at once (runtime.invalidation).
    watcher = change_watcher_for(rt.directory, settings.database_url
                                 or default_database_url(settings.data_dir))
    watching = asyncio.create_task(watcher.run()) if watcher is not None else None
    await stop.wait()
    if rotation is not None:
        rotation.cancel()
    if watching is not None:
        watching.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watching
    await server.stop()
    await rt.aclose()
    return 0
