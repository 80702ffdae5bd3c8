"""``healthid-broker demo`` (and later ``serve``)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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
    p.add_argument("--redis-url", help="use Redis for the transient login store")
    p.add_argument("--external-sandbox", type=Path, metavar="FILE",
                   help="use a separately running sandbox: FILE holds the JSON that "
                   "`healthid-broker sandbox --json` printed")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object with URLs and client credentials once ready")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from ..logs import setup_logging

    setup_logging("INFO", json_format=False)
    try:
        return asyncio.run(_run_demo(args))
    except KeyboardInterrupt:
        return 0


async def _run_demo(args: argparse.Namespace) -> int:
    from ..demo.run import Demo, DemoConfig

    external = None
    if args.external_sandbox is not None:
        external = json.loads(args.external_sandbox.read_text(encoding="utf-8"))
    demo = Demo(DemoConfig(host=args.host, port=args.port, data_dir=args.data_dir,
                           auto_person=args.auto_person, redis_url=args.redis_url,
                           external_sandbox=external))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        info = await demo.start()
    except OSError as exc:
        print(f"healthid-broker demo: cannot start: {exc}", file=sys.stderr)
        await demo.stop()
        return 1
    if args.json:
        print(json.dumps(info), flush=True)
    else:
        print(
            "\n  healthid-broker demo is running (SANDBOX — synthetic persons only)\n\n"
            f"  Open the demo app:   {info['demo_app']}\n"
            f"  Issuer (OIDC):       {info['issuer']}\n"
            f"  client_id:           {info['client_id']}\n"
            f"  client_secret:       {info['client_secret']}\n"
            f"  Local CA:            {info['ca_cert']}\n\n"
            "  Ctrl-C stops it.\n", flush=True)
    await stop.wait()
    await demo.stop()
    return 0
