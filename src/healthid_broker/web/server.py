"""Run ASGI apps inside the current event loop with uvicorn — ``serve``, the demo, the tests
and the bench all go through here (docs/decisions/0006-maintained-http-server.md).

uvicorn's httptools protocol, extended by :mod:`.http_protocol` with a request-head bound,
a head deadline and a connection cap; configured without access log (request lines carry
query strings, T-01), without ``server`` header, without lifespan events, WebSockets or
proxy headers. Signals stay with the calling program.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import ssl
from collections.abc import Coroutine, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn

from .http_protocol import (
    HEAD_TIMEOUT,
    MAX_CONNECTIONS,
    MAX_HEAD_BYTES,
    BoundedConfig,
    BoundedHttpToolsProtocol,
)

_T = TypeVar("_T")

KEEP_ALIVE = 5
"""Seconds an idle keep-alive connection is kept after a response."""
GRACEFUL_STOP = 3
"""Seconds :meth:`RunningServer.stop` lets requests in flight finish."""


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to the calling program and reports when
    it listens."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.listening = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.listening.set()


@dataclass
class RunningServer:
    server: uvicorn.Server
    task: asyncio.Task[None]
    host: str
    port: int

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (at most :data:`GRACEFUL_STOP`
        seconds), close the rest."""
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.task


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


def server_config(
    app: Any, *, ssl_context: ssl.SSLContext | None = None, keep_alive: int = KEEP_ALIVE,
    head_timeout: float = HEAD_TIMEOUT, max_head_bytes: int = MAX_HEAD_BYTES,
    max_connections: int = MAX_CONNECTIONS,
) -> BoundedConfig:
    """The uvicorn configuration every server of the project runs with."""
    return BoundedConfig(
        app,
        max_head_bytes=max_head_bytes, head_timeout=head_timeout,
        max_connections=max_connections,
        http=BoundedHttpToolsProtocol,
        loop="none",  # the caller's loop (uvloop through run_main)
        ws="none", lifespan="off", interface="asgi3",
        log_config=None,  # logging is the program's (logs.py), not uvicorn's
        access_log=False,  # request lines carry query strings (T-01)
        server_header=False,
        proxy_headers=False,  # no X-Forwarded-* trusted unless a deployment adds it
        timeout_keep_alive=keep_alive,
        # Connections are capped at accept (http_protocol); one more than that leaves
        # uvicorn's own limit to tasks whose client has gone (answered 503).
        limit_concurrency=max_connections + 1,
        timeout_graceful_shutdown=GRACEFUL_STOP,
        ssl_context_factory=(lambda _config, _default: ssl_context) if ssl_context else None,
    )


async def start_server(
    app: Any, *, host: str, port: int = 0, ssl_context: ssl.SSLContext | None = None,
    sock: socket.socket | None = None, keep_alive: int = KEEP_ALIVE,
    head_timeout: float = HEAD_TIMEOUT, max_head_bytes: int = MAX_HEAD_BYTES,
    max_connections: int = MAX_CONNECTIONS,
) -> RunningServer:
    """Serve ``app`` (ASGI) with uvicorn in the running event loop and return once it
    listens; ``port=0`` picks a free port.

    With ``sock`` it serves that already bound socket (so callers can learn the port before
    they build the app). The bounds are :mod:`.http_protocol`'s."""
    if sock is None:
        sock = bind_socket(host, port)
    config = server_config(app, ssl_context=ssl_context, keep_alive=keep_alive,
                           head_timeout=head_timeout, max_head_bytes=max_head_bytes,
                           max_connections=max_connections)
    config.load()
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    listening = asyncio.create_task(server.listening.wait())
    await asyncio.wait({task, listening}, return_when=asyncio.FIRST_COMPLETED)
    if not server.listening.is_set():
        listening.cancel()
        task.result()  # raises what stopped the start
        raise OSError("the HTTP server stopped during start-up")
    return RunningServer(server, task, host, sock.getsockname()[1])


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
