#!/usr/bin/env python3
"""CPU per request of the broker's HTTP layer alone: server, routing, guards and response
objects, with the provider service replaced by a stub that answers at once.

It starts the broker's public app (``web.broker_app.create_broker_app``) through
``web.server.start_server`` on uvloop in a child process, sends N keep-alive requests over
C connections from this process, and reads the child's CPU (utime+stime from
``/proc/<pid>/stat``) around them. ``--src`` points at another checkout's ``src`` to
measure an older version of the same layer (docs/decisions/0006 compares uvicorn +
Starlette with the server of commit 005830b)::

    git archive 005830b src | tar -x -C /tmp/old
    .venv/bin/python bench/http_overhead.py --src /tmp/old/src --json
    .venv/bin/python bench/http_overhead.py --json

Requests: ``GET /healthz`` and ``POST /demo/token`` (a 200-byte form, HTTP Basic), the
token endpoint's form parsing included. Linux only (``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_SRC = HERE.parent / "src"

_CHILD = r'''
import asyncio, sys
import uvloop
from healthid_broker.provider.service import ErrorPage, TokenAnswer
from healthid_broker.web.broker_app import BrokerWeb, Urls, create_broker_app
from healthid_broker.web.server import settle_heap, start_server

class Service:
    async def _app(self, short_key):
        return None
    async def token(self, short_key, items, authorization):
        return TokenAnswer(400, {"error": "invalid_grant",
                                 "error_description": "the code is invalid"},
                           {"Cache-Control": "no-store", "Pragma": "no-cache"})

async def main():
    web = BrokerWeb(Service(), Urls("https://b.example", "https://b.example"))
    server = await start_server(create_broker_app(web), host="127.0.0.1", port=0)
    settle_heap()
    print(server.port, flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await server.stop()

uvloop.run(main())
'''

FORM = (b"grant_type=authorization_code&code=" + b"c" * 43
        + b"&redirect_uri=https%3A%2F%2Fapp.example%2Fcallback&code_verifier=" + b"v" * 43)
REQUESTS = {
    "healthz": b"GET /healthz HTTP/1.1\r\nHost: b.example\r\n\r\n",
    "token": (b"POST /demo/token HTTP/1.1\r\nHost: b.example\r\n"
              b"Authorization: Basic Y2xpZW50OnNlY3JldA==\r\n"
              b"Content-Type: application/x-www-form-urlencoded\r\n"
              b"Content-Length: %d\r\n\r\n" % len(FORM)) + FORM,
}


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _connection(port: int, request: bytes, count: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    for _ in range(count):
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        if not head.startswith((b"HTTP/1.1 200", b"HTTP/1.1 400")):
            raise RuntimeError(head[:80].decode("latin-1"))
        await reader.readexactly(length)
    writer.close()


async def drive(port: int, request: bytes, n: int, concurrency: int) -> None:
    per = n // concurrency
    await asyncio.gather(*(_connection(port, request, per) for _ in range(concurrency)))


def measure(src: Path, n: int, concurrency: int, repeat: int) -> dict[str, object]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        out: dict[str, object] = {"src": str(src), "requests": n, "concurrency": concurrency}
        for name, request in REQUESTS.items():
            asyncio.run(drive(port, request, max(concurrency, n // 10), concurrency))  # warm-up
            runs = []
            for _ in range(repeat):
                before, t0 = cpu_seconds(child.pid), time.perf_counter()
                asyncio.run(drive(port, request, n, concurrency))
                cpu, wall = cpu_seconds(child.pid) - before, time.perf_counter() - t0
                runs.append(cpu / n * 1e6)
            out[name] = {"cpu_us_per_request": round(statistics.median(runs), 1),
                         "runs": [round(r, 1) for r in runs],
                         "requests_per_s_last_run": round(n / wall)}
        return out
    finally:
        if child.stdin is not None:
            child.stdin.close()
        try:
            child.wait(10)
        except subprocess.TimeoutExpired:
            child.kill()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, default=DEFAULT_SRC,
                   help="the src directory healthid_broker is imported from")
    p.add_argument("--requests", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    result = measure(a.src.resolve(), a.requests, a.concurrency, a.repeat)
    if a.json:
        print(json.dumps(result))
    else:
        for name in REQUESTS:
            r = result[name]
            assert isinstance(r, dict)
            print(f"{name:8} {r['cpu_us_per_request']:7.1f} CPU-µs per request "
                  f"(median of {a.repeat}: {r['runs']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
