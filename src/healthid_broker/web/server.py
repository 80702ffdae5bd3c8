"""Run ASGI apps inside the current event loop with the project's own HTTP/1.1 server
(:mod:`.lean_server`) — the demo, ``serve``, tests and the bench all go through here."""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from .lean_server import LeanServer

_T = TypeVar("_T")


@dataclass
class RunningServer:
    server: LeanServer
    host: str
    port: int

    async def stop(self) -> None:
        await self.server.stop()


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket; ``port=0`` picks a free port (read it with getsockname)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


async def start_server(
    app: Any, *, host: str, port: int = 0, ssl_context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None,
    keep_alive: float = 5.0, header_timeout: float = 10.0,
) -> RunningServer:
    """Serve ``app`` (ASGI) with :class:`~.lean_server.LeanServer` and return once it
    listens; ``port=0`` picks a free port.

    With ``sock`` it serves that already bound socket (so callers can learn the port before
    they build the app). There is no access log: request lines carry query strings (T-01).
    ``keep_alive`` and ``header_timeout`` are in seconds (see :mod:`.lean_server`)."""
    server = LeanServer(app, keep_alive=keep_alive, header_timeout=header_timeout)
    real_port = await server.listen(host=host, port=port, sock=sock, ssl_context=ssl_context)
    return RunningServer(server, host, real_port)


def settle_heap() -> None:
    """Once start-up is done: collect, then move every surviving object out of the cyclic
    garbage collector's view (``gc.freeze``), so the collections that requests trigger do
    not walk the tens of thousands of long-lived objects of the loaded libraries again and
    again (docs/performance.md)."""
    gc.collect()
    gc.freeze()


def run_main(main: Coroutine[Any, Any, _T]) -> _T:
    """Run a command's main coroutine on uvloop where available (CPU per login,
    docs/performance.md), else on the standard asyncio loop."""
    try:
        import uvloop
    except ImportError:  # e.g. Windows
        return asyncio.run(main)
    return uvloop.run(main)
