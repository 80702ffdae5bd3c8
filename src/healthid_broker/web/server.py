"""Run ASGI apps on uvicorn inside the current event loop (for the demo, tests, bench)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn

_T = TypeVar("_T")


class _QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the composing command owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class RunningServer:
    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self.task, timeout=10)


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
    access_log: bool = False, sock: socket.socket | None = None,
) -> RunningServer:
    """Start uvicorn for ``app`` and wait until it listens; ``port=0`` picks a free port.

    With ``sock`` uvicorn serves that already bound socket (so callers can learn the port
    before they build the app)."""
    config = uvicorn.Config(
        app, host=host, port=port, log_config=None, access_log=access_log,
        lifespan="off", server_header=False, date_header=True, proxy_headers=False,
        timeout_graceful_shutdown=2,
    )
    config.load()
    if ssl_context is not None:
        config.ssl = ssl_context  # our TR-02102-2 context instead of uvicorn's own
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve(sockets=[sock] if sock is not None else None))
    while not server.started:
        if task.done():
            task.result()  # re-raise the start-up failure (e.g. port in use)
            raise RuntimeError(f"server on {host}:{port} stopped during start-up")
        await asyncio.sleep(0.01)
    sock = server.servers[0].sockets[0]
    real_port = int(sock.getsockname()[1])
    return RunningServer(server, task, host, real_port)


def run_main(main: Coroutine[Any, Any, _T]) -> _T:
    """Run a command's main coroutine on uvloop where available (CPU per login,
    docs/performance.md), else on the standard asyncio loop."""
    try:
        import uvloop
    except ImportError:  # e.g. Windows
        return asyncio.run(main)
    return uvloop.run(main)
