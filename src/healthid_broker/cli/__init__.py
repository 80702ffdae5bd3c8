"""The ``healthid-broker`` command.

Each room contributes its sub-commands through a module with ``add_commands(subparsers)``;
sub-commands set ``func`` (a callable taking the parsed namespace, returning an exit code).
The sandbox is imported only when a sandbox or demo command actually runs.
"""

from __future__ import annotations

import argparse
import importlib

# Modules that register sub-commands. Each must be cheap to import and must not import
# the sandbox at module level.
COMMAND_MODULES = (
    "healthid_broker.cli.sandbox",
    "healthid_broker.cli.tenancy",
    "healthid_broker.cli.broker",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="healthid-broker",
        description="OpenID Connect broker for the GesundheitsID, with a local TI sandbox.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue  # room not built yet
            raise
        mod.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    return int(func(args) or 0)

