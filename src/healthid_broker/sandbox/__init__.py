"""SANDBOX: a local copy of gematik's TI federation (federation master, sectoral IdPs,
synthetic insured persons) with real https and real self-signed mutual TLS.

Never import this package from production code (docs/design.md §4, the sandbox room).  The heavy
server modules load lazily, so ``healthid_broker.cli.sandbox`` stays cheap to import.

    from healthid_broker.sandbox import Sandbox, SandboxConfig
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .server import Sandbox, SandboxConfig, SandboxError

__all__ = ["Sandbox", "SandboxConfig", "SandboxError"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import server

        return getattr(server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
