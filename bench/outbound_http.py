"""CPU per outbound request of candidate HTTP clients (decision 0007).

Starts uvicorn (httptools, uvloop) in a child process on loopback with TLS that *requires* a
client certificate, then drives sequential keep-alive requests from this process — the shape
of the broker's outbound calls: a ``GET`` of a ~3 KB signed statement, and a form ``POST``
(~0.6 KB, eleven fields, like PAR) answered ``201`` with a small JSON body — through each
client, and reports this process's CPU time (``time.process_time``: user + system of all its
threads) per request. Runs of the clients are interleaved and repeated; the median is shown.

Clients:

* ``broker`` — :class:`healthid_broker.http.OutboundClient`, the broker's client (httpx),
  with its response-size bound, deadline and error mapping;
* ``httpx`` — a bare ``httpx.AsyncClient`` configured the same way, ``.get``/``.post``;
* ``aiohttp`` — ``aiohttp.ClientSession`` configured likewise (one session, bounded read via
  ``content.iter_chunked``, ``ClientTimeout(total, connect)``);
* ``former`` — the project's former own client, taken from git history (``--former-commit``),
  for reference.

    .venv/bin/python bench/outbound_http.py --requests 2000 --repeat 5 [--json]

aiohttp is not a dependency of the project; the ``aiohttp`` client is measured only when
it is installed.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import importlib.util
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

STATEMENT = b"eyJhbGciOiJFUzI1NiJ9." + b"x" * 3000 + b".sig"
PAR_FORM = {
    "client_id": "https://broker.example/rp", "state": "s" * 43, "nonce": "n" * 43,
    "code_challenge": "c" * 43, "code_challenge_method": "S256", "response_type": "code",
    "redirect_uri": "https://broker.example/rp/callback",
    "scope": "openid urn:telematik:versicherter urn:telematik:display_name",
    "acr_values": "gematik-ehealth-loa-high", "prompt": "login", "max_age": "0",
}
PAR_ANSWER = b'{"request_uri":"urn:ietf:params:oauth:request_uri:' + b"r" * 43 + \
    b'","expires_in":60}'


# ------------------------------------------------------------------ server (child process)

async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        msg = await receive()
        more = msg.get("more_body", False)
    if scope["method"] == "POST":
        status, ctype, body = 201, b"application/json", PAR_ANSWER
    else:
        status, ctype, body = 200, b"application/entity-statement+jwt", STATEMENT
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _serve(workdir: Path, port: int) -> None:
    import uvicorn

    uvicorn.run(_app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                lifespan="off", log_level="warning", access_log=False,
                timeout_keep_alive=60,
                ssl_certfile=str(workdir / "server.pem"), ssl_keyfile=str(workdir / "server.key"),
                ssl_ca_certs=str(workdir / "client.pem"), ssl_cert_reqs=ssl.CERT_REQUIRED)


# ------------------------------------------------------------------ clients under test

Exchange = Callable[[str], Awaitable[None]]  # one GET or POST, by method name


def _former_module(commit: str, workdir: Path) -> Any:
    """The former own client from git history, importable as ``_former_ref.lean``."""
    pkg = workdir / "_former_ref"
    pkg.mkdir(exist_ok=True)
    repo = Path(__file__).resolve().parent.parent
    for name in ("lean.py", "forms.py"):
        src = subprocess.run(["git", "-C", str(repo), "show",
                              f"{commit}:src/healthid_broker/http/{name}"],
                             check=True, capture_output=True).stdout
        (pkg / name).write_bytes(src)
    (pkg / "__init__.py").write_text(
        "from healthid_broker.http import ClientIdentity, HttpResponse, HttpTransportError, "
        "tls_client_context\n")
    sys.path.insert(0, str(workdir))
    return importlib.import_module("_former_ref.lean")


async def _make(name: str, base: str, workdir: Path, identity: Any,
                former_commit: str) -> tuple[Exchange, Callable[[], Awaitable[None]]]:
    from healthid_broker.http import tls_client_context

    ca = str(workdir / "ca.pem")
    if name == "broker":
        from healthid_broker.http.client import OutboundClient

        broker = OutboundClient(ca_file=ca)

        async def broker_x(method: str) -> None:
            if method == "GET":
                r = await broker.get(base + "/statement", identity=identity)
            else:
                r = await broker.post_form(base + "/par", PAR_FORM, identity=identity)
            assert r.status in (200, 201), r.status

        return broker_x, broker.aclose
    if name == "former":
        former = _former_module(former_commit, workdir).LeanHttpClient(ca_file=ca)

        async def former_x(method: str) -> None:
            if method == "GET":
                r = await former.get(base + "/statement", identity=identity)
            else:
                r = await former.post_form(base + "/par", PAR_FORM, identity=identity)
            assert r.status in (200, 201), r.status

        return former_x, former.aclose
    ctx = tls_client_context(ca, identity)
    if name == "httpx":
        import httpx

        hx = httpx.AsyncClient(verify=ctx, trust_env=False, follow_redirects=False,
                               timeout=httpx.Timeout(10.0, connect=5.0),
                               headers={"user-agent": "healthid-broker",
                                        "accept-encoding": "identity"})

        async def httpx_x(method: str) -> None:
            if method == "GET":
                req = hx.build_request("GET", base + "/statement")
            else:
                req = hx.build_request("POST", base + "/par", content=urlencode(PAR_FORM),
                                       headers={"content-type":
                                                "application/x-www-form-urlencoded"})
            async with asyncio.timeout(10):
                resp = await hx.send(req, stream=True)
                try:
                    size, parts = 0, []
                    async for chunk in resp.aiter_bytes():
                        size += len(chunk)
                        assert size <= 1 << 20
                        parts.append(chunk)
                finally:
                    await resp.aclose()
            assert resp.status_code in (200, 201)

        return httpx_x, hx.aclose
    if name == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=100),
            cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, auto_decompress=False,
            timeout=aiohttp.ClientTimeout(total=10, connect=5),
            headers={"user-agent": "healthid-broker"})

        async def aiohttp_x(method: str) -> None:
            if method == "GET":
                cm = session.get(base + "/statement", allow_redirects=False)
            else:
                cm = session.post(base + "/par", data=urlencode(PAR_FORM),
                                  headers={"content-type":
                                           "application/x-www-form-urlencoded"},
                                  allow_redirects=False)
            async with cm as resp:
                size, parts = 0, []
                async for chunk in resp.content.iter_chunked(65536):
                    size += len(chunk)
                    assert size <= 1 << 20
                    parts.append(chunk)
            assert resp.status in (200, 201)

        return aiohttp_x, session.close
    raise SystemExit(f"unknown client {name}")


async def _measure(exchange: Exchange, method: str, n: int, warmup: int) -> float:
    for _ in range(warmup):
        await exchange(method)
    t0 = time.process_time()
    for _ in range(n):
        await exchange(method)
    return (time.process_time() - t0) / n * 1e6  # µs per request


async def _run(args: argparse.Namespace, workdir: Path, port: int) -> dict[str, Any]:
    from healthid_broker.http import ClientIdentity

    key_pem = (workdir / "client.key").read_bytes()
    identity = ClientIdentity((workdir / "client.pem").read_bytes(), key_pem)
    base = f"https://127.0.0.1:{port}"
    results: dict[str, dict[str, list[float]]] = {
        c: {"GET": [], "POST": []} for c in args.clients}
    for _round in range(args.repeat):
        for name in args.clients:
            exchange, close = await _make(name, base, workdir, identity, args.former_commit)
            try:
                for method in ("GET", "POST"):
                    results[name][method].append(
                        await _measure(exchange, method, args.requests, args.warmup))
            finally:
                await close()
    return {
        "requests_per_run": args.requests, "repeat": args.repeat,
        "python": sys.version.split()[0],
        "versions": _versions(args.clients),
        "us_per_request": {
            c: {m: {"median": round(statistics.median(v), 1),
                    "runs": [round(x, 1) for x in v]} for m, v in per.items()}
            for c, per in results.items()},
    }


def _versions(clients: list[str]) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("httpx", "httpcore", "aiohttp", "uvloop", "uvicorn", "httptools"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def _write_certs(workdir: Path) -> None:
    from healthid_broker.crypto.keys import (
        LocalCA,
        cert_pem,
        new_ec_key,
        private_key_pem,
        self_signed_client_cert,
    )

    ca = LocalCA.create()
    ca.issue_server_cert(["127.0.0.1"]).write(workdir / "server.pem", workdir / "server.key")
    (workdir / "ca.pem").write_bytes(cert_pem(ca.cert))
    key = new_ec_key()
    (workdir / "client.pem").write_bytes(cert_pem(self_signed_client_cert(key, "bench-rp")))
    (workdir / "client.key").write_bytes(private_key_pem(key))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=2000, help="measured requests per run")
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--clients", default="broker,httpx,aiohttp,former")
    p.add_argument("--former-commit", default="005830b")
    p.add_argument("--json", action="store_true")
    p.add_argument("--serve", nargs=2, metavar=("WORKDIR", "PORT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        _serve(Path(args.serve[0]), int(args.serve[1]))
        return 0
    args.clients = [c for c in args.clients.split(",") if c]
    if "aiohttp" in args.clients and importlib.util.find_spec("aiohttp") is None:
        args.clients.remove("aiohttp")
    import uvloop

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        _write_certs(workdir)
        port = _free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", tmp, str(port)])
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("server did not start") from None
                    time.sleep(0.1)
            report = uvloop.run(_run(args, workdir, port))
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(10)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"µs of client CPU per request, median of {args.repeat} × {args.requests}"
              f" (python {report['python']}, {report['versions']})")
        print(f"{'client':<10}{'GET':>10}{'POST':>10}")
        for c, per in report["us_per_request"].items():
            print(f"{c:<10}{per['GET']['median']:>10}{per['POST']['median']:>10}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
