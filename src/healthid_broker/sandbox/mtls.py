"""A TLS-terminating proxy that accepts *self-signed* client certificates.

RFC 8705 §2.2 (self-signed certificate mutual TLS, gematik ``self_signed_tls_client_auth``)
authenticates a client by the certificate it presents, matched against the certificate
the client published in its metadata — there is no CA.  Python's ``ssl`` module aborts
the handshake on any verification failure, so this proxy terminates TLS with pyOpenSSL
over memory BIOs (a verify callback that accepts every certificate) and forwards the
plaintext to an internal HTTP server on 127.0.0.1.

For each upstream connection the proxy records the peer's DER certificate under the
proxy's local source port; the application finds it again through the ASGI
``scope["client"]`` port.  A direct connection to the internal port has no entry and
therefore no client certificate.  See docs/decisions/0001-sandbox-tls-and-loopback.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from OpenSSL import SSL

log = logging.getLogger(__name__)

_READ = 65536
# TLS 1.2 suites: ECDHE key exchange with AES-GCM only; TLS 1.3: the AES-GCM suites.
TLS12_CIPHERS = b"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256"
TLS13_SUITES = b"TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256"


def _accept_any(
    conn: SSL.Connection, cert: object, errnum: int, depth: int, ok: int
) -> bool:
    # The certificate is authenticated by the application (x5c match), not by a CA.
    return True


def server_context(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> SSL.Context:
    """pyOpenSSL server context: TLS 1.2/1.3, ECDHE + AES-GCM, client cert requested."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_cipher_list(TLS12_CIPHERS)
    ctx.set_tls13_ciphersuites(TLS13_SUITES)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    # pyOpenSSL >= 24.3 takes cryptography objects (types-pyOpenSSL lags behind).
    ctx.use_certificate(cert)  # type: ignore[arg-type]
    ctx.use_privatekey(key)  # type: ignore[arg-type]
    ctx.check_privatekey()
    ctx.set_verify(SSL.VERIFY_PEER, _accept_any)
    return ctx


class MTLSProxy:
    """Accept TLS on ``sock``; forward plaintext to ``127.0.0.1:upstream_port``."""

    def __init__(
        self, ctx: SSL.Context, upstream_port: int, peer_certs: dict[int, bytes]
    ) -> None:
        self._ctx = ctx
        self._upstream_port = upstream_port
        self.peer_certs = peer_certs
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self, sock: socket.socket) -> None:
        self._server = await asyncio.start_server(self._handle, sock=sock)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(BaseException):
                await t
        if self._server is not None:
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, SSL.Error, asyncio.IncompleteReadError, OSError) as exc:
            log.debug("mTLS connection ended: %s", type(exc).__name__)
        except asyncio.CancelledError:
            # Only stop() cancels these handlers. Ending normally keeps asyncio's stream
            # server from logging the cancellation as an error with a traceback.
            log.debug("mTLS connection closed at shutdown")
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = SSL.Connection(self._ctx, None)
        conn.set_accept_state()

        def flush() -> None:
            while True:
                try:
                    out = conn.bio_read(_READ)
                except SSL.WantReadError:
                    return
                if not out:
                    return
                writer.write(out)

        # --- handshake
        while True:
            try:
                conn.do_handshake()
                break
            except SSL.WantReadError:
                flush()
                await writer.drain()
                data = await asyncio.wait_for(reader.read(_READ), timeout=15)
                if not data:
                    return
                conn.bio_write(data)
        flush()
        await writer.drain()
        peer: x509.Certificate | None = conn.get_peer_certificate(  # type: ignore[assignment]
            as_cryptography=True  # type: ignore[call-arg]
        )
        der = peer.public_bytes(serialization.Encoding.DER) if peer is not None else b""

        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        local_port = int(up_writer.get_extra_info("sockname")[1])
        if der:
            self.peer_certs[local_port] = der
        try:
            await self._pump(conn, reader, writer, up_reader, up_writer, flush)
        finally:
            self.peer_certs.pop(local_port, None)
            up_writer.close()
            with contextlib.suppress(Exception):
                await up_writer.wait_closed()

    async def _pump(  # noqa: PLR0917
        self,
        conn: SSL.Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        up_reader: asyncio.StreamReader,
        up_writer: asyncio.StreamWriter,
        flush: Callable[[], None],
    ) -> None:

        def drain_plain() -> bool:
            """Move decrypted bytes upstream; False once the client closed TLS."""
            while True:
                try:
                    plain = conn.recv(_READ)
                except SSL.WantReadError:
                    return True
                except SSL.ZeroReturnError:
                    return False
                if not plain:
                    return False
                up_writer.write(plain)

        async def client_to_upstream() -> None:
            if not drain_plain():  # bytes that arrived with the last handshake flight
                return
            await up_writer.drain()
            while True:
                data = await reader.read(_READ)
                if not data:
                    return
                conn.bio_write(data)
                alive = drain_plain()
                flush()
                await up_writer.drain()
                await writer.drain()
                if not alive:
                    return

        async def upstream_to_client() -> None:
            while True:
                data = await up_reader.read(_READ)
                if not data:
                    return
                view = memoryview(data)
                while view:
                    n = conn.send(bytes(view[:16384]))
                    view = view[n:]
                    flush()
                await writer.drain()

        t1 = asyncio.create_task(client_to_upstream())
        t2 = asyncio.create_task(upstream_to_client())
        try:
            await asyncio.wait({t1, t2}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (t1, t2):
                t.cancel()
            for t in (t1, t2):
                with contextlib.suppress(BaseException):
                    await t
        with contextlib.suppress(SSL.Error):
            conn.shutdown()
            flush()
