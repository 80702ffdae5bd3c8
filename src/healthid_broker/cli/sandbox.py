"""``healthid-broker sandbox`` — run the local TI federation, register relying parties.

Cheap to import: the sandbox's server modules load only when a command runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sandbox",
        help="run the local TI federation sandbox (NOT for production)",
        description="Run a local federation master and sectoral IdPs with synthetic "
        "insured persons. SANDBOX — not for production.",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0,
                   help="https port P (P+1: mutual TLS, P+2: http pages); 0 picks free ports")
    p.add_argument("--data-dir", type=Path, default=Path(".sandbox"))
    p.add_argument("--auto-person", metavar="KVNR", default=None,
                   help="approve every login as this synthetic person without a page")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object (the sandbox info) on stdout once ready")
    p.set_defaults(func=run_sandbox)
    sub = p.add_subparsers(dest="sandbox_command", metavar="OPERATION")
    r = sub.add_parser(
        "register",
        help="register a relying party at the sandbox master (stand-in for gematik's form)",
    )
    r.add_argument("--data-dir", type=Path, default=Path(".sandbox"))
    r.add_argument("--entity-id", help="the RP's entity identifier (https URL)")
    r.add_argument("--jwks", type=Path, help="file with the RP's federation JWKS")
    r.add_argument("--organization-name", default="")
    r.add_argument("--scopes", default="", help="space-separated scopes")
    r.add_argument("--from-json", type=Path, metavar="FILE",
                   help="the JSON printed by 'healthid-broker app registration' ('-' = stdin)")
    r.set_defaults(func=run_register)


def run_register(args: argparse.Namespace) -> int:
    from ..sandbox.registry import RegistrationError, RegistrationStore, parse_registration

    data: dict[str, Any]
    try:
        if args.from_json is not None:
            text = sys.stdin.read() if str(args.from_json) == "-" else \
                args.from_json.read_text("utf-8")
            data = json.loads(text)
            if not isinstance(data, dict):
                raise RegistrationError("the registration JSON must be an object")
            if args.entity_id:
                data["entity_id"] = args.entity_id
        else:
            if not args.entity_id or args.jwks is None:
                print("error: give --entity-id and --jwks, or --from-json FILE",
                      file=sys.stderr)
                return 2
            data = {
                "entity_id": args.entity_id,
                "jwks": json.loads(args.jwks.read_text("utf-8")),
                "organization_name": args.organization_name,
                "scopes": args.scopes,
            }
        reg = parse_registration(data)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    RegistrationStore(args.data_dir).add(reg)
    print(f"registered {reg.entity_id} in {args.data_dir}", file=sys.stderr)
    return 0


def run_sandbox(args: argparse.Namespace) -> int:
    import asyncio
    import logging
    import signal

    from ..sandbox.server import Sandbox, SandboxConfig, SandboxError

    logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> int:
        try:
            sb = Sandbox(SandboxConfig(host=args.host, port=args.port, data_dir=args.data_dir,
                                       auto_person=args.auto_person))
            await sb.start()
        except SandboxError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        info = sb.info()
        if args.json:
            sys.stdout.write(json.dumps(info, ensure_ascii=False) + "\n")
            sys.stdout.flush()
        else:
            print(f"SANDBOX running — federation master {info['federation_master']}",
                  file=sys.stderr)
            print(f"CA certificate: {info['ca_cert']}  (Ctrl-C to stop)", file=sys.stderr)
        try:
            await stop.wait()
        finally:
            await sb.stop()
        return 0

    from ..web.server import run_main

    return run_main(main())
