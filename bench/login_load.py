#!/usr/bin/env python3
"""Load benchmark: complete GesundheitsID logins through the broker (docs/design.md §8:
performance is measured by this script, not by timed unit tests).

Three processes, all on loopback:

1. ``healthid-broker sandbox --json --auto-person KVNR`` — federation master and sectoral IdPs;
2. ``healthid-broker demo --json --external-sandbox FILE [--redis-url URL]`` — the broker (plus
   the small demo app in the same process, which this bench never calls);
3. this process — the load generator (bench/load_client.py over aiohttp or, with
   ``--client httpx``, httpx; keep-alive, bounded concurrency, count and time; docs/decisions/0005).

One complete login, as a real OIDC client with PKCE (RFC 7636) and a nonce does it::

    GET  <browser_base>/demo/authorize?…&idp_hint=<IdP>   → 302 to the IdP's front channel
    GET  <IdP front channel>                               → 302 (auto person) to the broker
    GET  <browser_base>/demo/callback?code&state           → 302 to redirect_uri?code&state&iss
    POST <broker>/demo/token (client_secret_basic)         → 200 {id_token, access_token}

(the final redirect to the demo app's own /app/callback is not followed: it is not the broker).

Reported: logins/s, p50/p99 of the complete login and of each step, errors, the broker's
CPU-milliseconds per complete login (utime+stime of process 2 from /proc/<pid>/stat around
the measured phase, after a warm-up) and — with the Redis store — the bytes one in-flight
login occupies in the transient store (UPSTREAM_PENDING and CODE_ISSUED entries: key +
value bytes, and Redis' MEMORY USAGE for reference). Child processes are stopped in all cases.

    .venv/bin/python bench/login_load.py --logins 2000 --concurrency 8 [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import ctypes
import hashlib
import json
import os
import secrets
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # also when loaded by path (tests/bench)
    sys.path.insert(0, str(HERE))

from load_client import LoadClient, TransportError  # noqa: E402 (bench-local module)

Client = httpx.AsyncClient | LoadClient
DEFAULT_PERSON = "A123456780"  # synthetic (healthid_broker.sandbox.persons)
DEFAULT_SCOPE = ("openid urn:telematik:versicherter urn:telematik:display_name "
                 "urn:telematik:given_name urn:telematik:family_name urn:telematik:geburtsdatum "
                 "urn:telematik:alter urn:telematik:geschlecht urn:telematik:email")
DEFAULT_REDIS = "redis://127.0.0.1:6379/14"
TARGET_CPU_MS = 3.0
TARGET_BYTES = 2048
STEPS = ("authorize", "idp", "callback", "token")


class BenchError(Exception):
    """The benchmark could not run (a child process failed to start, a login broke)."""


# --------------------------------------------------------------------------- processes


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the bench process dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Child:
    name: str
    proc: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return int(self.proc.pid)

    async def stop(self) -> None:
        if self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 15)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()

    def log_tail(self, n: int = 20) -> str:
        try:
            lines = self.log_path.read_text("utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])


async def start_child(name: str, argv: Sequence[str], log_path: Path,
                      env: dict[str, str] | None = None, timeout: float = 90.0
                      ) -> tuple[Child, dict[str, Any]]:
    """Start a ``--json`` command and wait for its one JSON line on stdout."""
    log_fh = open(log_path, "wb")  # noqa: SIM115 - closed right after the child got it
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log_fh,
            env=env, preexec_fn=_die_with_parent)
    finally:
        log_fh.close()
    child = Child(name, proc, log_path)
    assert proc.stdout is not None
    try:
        line = await asyncio.wait_for(proc.stdout.readline(), timeout)
    except TimeoutError:
        await child.stop()
        raise BenchError(f"{name} did not report ready within {timeout:.0f} s; its log:\n"
                         f"{child.log_tail()}") from None
    if not line:
        await child.stop()
        raise BenchError(f"{name} exited before it was ready; its log:\n{child.log_tail()}")
    try:
        info = json.loads(line)
    except ValueError:
        await child.stop()
        raise BenchError(f"{name} printed no JSON line; its log:\n{child.log_tail()}") from None
    return child, info


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of a process (all its threads) in seconds, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
        stat = fh.read()
    fields = stat[stat.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime/stime are fields 14/15 (man 5 proc)
    tck = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tck, int(fields[12]) / tck


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads)."""
    return sum(cpu_split(pid))


def calibration_ms() -> float:
    """CPU-ms of a fixed pure-Python workload in this process: how fast the machine is right
    now (this VM's speed varies by tens of percent from one minute to the next)."""
    t0 = time.process_time()
    acc = 0
    for i in range(1_000_000):
        acc += i * i % 7
    return round((time.process_time() - t0) * 1000, 1)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


# --------------------------------------------------------------------------- one login


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@dataclass
class Target:
    browser_base: str
    broker: str
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    idp: str
    scope: str

    @property
    def authorize_url(self) -> str:
        return f"{self.browser_base}/demo/authorize"

    @property
    def token_url(self) -> str:
        return f"{self.issuer}/token"


class LoginFailed(Exception):
    def __init__(self, step: str, detail: str) -> None:
        super().__init__(f"{step}: {detail}")
        self.step = step


@dataclass
class LoginResult:
    total: float
    steps: dict[str, float]


def _location(resp: Any, step: str) -> str:
    if resp.status_code not in (302, 303):
        raise LoginFailed(step, f"expected a redirect, got HTTP {resp.status_code}")
    loc: str | None = resp.headers.get("location")
    if not loc:
        raise LoginFailed(step, "redirect without Location")
    return loc


async def login(client: Client, t: Target, *, stop_after: str | None = None,
                cpu_probe: Callable[[], float] | None = None) -> LoginResult:
    """One complete login; ``stop_after`` = "authorize" or "callback" leaves it in flight.

    With ``cpu_probe`` (the broker's CPU seconds) each step's broker CPU is recorded too,
    under ``cpu:<step>`` in :attr:`LoginResult.steps` — meaningful only without concurrency.
    """
    verifier = _b64url(secrets.token_bytes(32))
    state = _b64url(secrets.token_bytes(16))
    nonce = _b64url(secrets.token_bytes(16))
    query = urlencode({
        "response_type": "code", "client_id": t.client_id, "redirect_uri": t.redirect_uri,
        "scope": t.scope, "state": state, "nonce": nonce,
        "code_challenge": _b64url(hashlib.sha256(verifier.encode()).digest()),
        "code_challenge_method": "S256", "idp_hint": t.idp,
    })
    steps: dict[str, float] = {}
    probe = cpu_probe or (lambda: 0.0)
    c0 = probe()
    t0 = time.perf_counter()

    r = await client.get(f"{t.authorize_url}?{query}")
    idp_url = _location(r, "authorize")
    t1 = time.perf_counter()
    steps["authorize"] = t1 - t0
    c1 = probe()
    steps["cpu:authorize"] = c1 - c0
    if stop_after == "authorize":
        return LoginResult(t1 - t0, steps)

    r = await client.get(idp_url)
    callback_url = _location(r, "idp")
    if not callback_url.startswith(t.browser_base + "/"):
        raise LoginFailed("idp", "the IdP did not redirect to the broker")
    t2 = time.perf_counter()
    steps["idp"] = t2 - t1
    c2 = probe()
    steps["cpu:idp"] = c2 - c1

    r = await client.get(callback_url)
    app_url = _location(r, "callback")
    t3 = time.perf_counter()
    steps["callback"] = t3 - t2
    c3 = probe()
    steps["cpu:callback"] = c3 - c2
    if not app_url.startswith(t.redirect_uri + "?"):
        raise LoginFailed("callback", "redirect is not to the client's redirect_uri")
    q = {k: v[0] for k, v in parse_qs(urlsplit(app_url).query).items()}
    if "code" not in q:
        raise LoginFailed("callback", f"no code (error={q.get('error', '?')})")
    if q.get("state") != state or q.get("iss") != t.issuer:
        raise LoginFailed("callback", "state or iss does not match (RFC 9207)")
    if stop_after == "callback":
        return LoginResult(t3 - t0, steps)

    r = await client.post(
        t.token_url, auth=(t.client_id, t.client_secret),
        data={"grant_type": "authorization_code", "code": q["code"],
              "redirect_uri": t.redirect_uri, "code_verifier": verifier})
    t4 = time.perf_counter()
    steps["token"] = t4 - t3
    steps["cpu:token"] = probe() - c3
    if r.status_code != 200:
        raise LoginFailed("token", f"HTTP {r.status_code}")
    body = r.json()
    id_token = body.get("id_token", "")
    if id_token.count(".") != 2:
        raise LoginFailed("token", "no (signed, unencrypted) id_token in the answer")
    payload = json.loads(base64.urlsafe_b64decode(id_token.split(".")[1] + "=="))
    if payload.get("nonce") != nonce or payload.get("aud") not in (t.client_id, [t.client_id]):
        raise LoginFailed("token", "nonce or aud of the ID token does not match")
    return LoginResult(t4 - t0, steps)


# --------------------------------------------------------------------------- load phase


@dataclass
class PhaseResult:
    completed: list[LoginResult] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    first_error: str | None = None
    wall: float = 0.0


async def run_phase(client: Client, t: Target, *, count: int, concurrency: int,
                    deadline: float) -> PhaseResult:
    """``count`` logins, ``concurrency`` at a time; no new login starts after ``deadline``."""
    res = PhaseResult()
    next_i = 0

    async def worker() -> None:
        nonlocal next_i
        while next_i < count and time.monotonic() < deadline:
            next_i += 1
            try:
                res.completed.append(await login(client, t))
            except LoginFailed as exc:
                res.errors[exc.step] = res.errors.get(exc.step, 0) + 1
                res.first_error = res.first_error or str(exc)
            except (httpx.HTTPError, TransportError) as exc:
                res.errors["transport"] = res.errors.get("transport", 0) + 1
                res.first_error = res.first_error or f"{type(exc).__name__}: {exc}"

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, count)))))
    res.wall = time.perf_counter() - start
    return res


def run_figures(phase: PhaseResult, *, broker: float, sandbox: float, load_generator: float,
                calibration: float) -> dict[str, Any]:
    """One measured run's CPU figures (seconds in, ms per complete login out)."""
    n = len(phase.completed)

    def per_login(seconds: float) -> float | None:
        return round(seconds * 1000 / n, 3) if n else None

    return {
        "logins": n,
        "errors": sum(phase.errors.values()),
        "logins_per_s": round(n / phase.wall, 1) if phase.wall > 0 else 0.0,
        "broker_cpu_ms_per_login": per_login(broker),
        "sandbox_cpu_ms_per_login": per_login(sandbox),
        "broker_to_sandbox_cpu_ratio": round(broker / sandbox, 3) if sandbox > 0 else None,
        # the bench process itself shares the two cores with the broker and the sandbox
        "load_generator_cpu_ms_per_login": per_login(load_generator),
        "calibration_ms": calibration,
    }


def median(values: Sequence[float | None]) -> float | None:
    """The median of the known values (the mean of the middle two for an even count)."""
    known = sorted(v for v in values if v is not None)
    if not known:
        return None
    mid = len(known) // 2
    return known[mid] if len(known) % 2 else (known[mid - 1] + known[mid]) / 2


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (0 < p ≤ 100); 0.0 for no values."""
    if not values:
        return 0.0
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


# --------------------------------------------------------------------------- store size


async def measure_inflight(client: Client, t: Target, redis_url: str, *,
                           k: int, concurrency: int, keep: bool) -> dict[str, Any]:
    """K logins left at UPSTREAM_PENDING and K at CODE_ISSUED; their store entries measured."""
    from redis.asyncio import Redis

    r = Redis.from_url(redis_url)
    pattern = "hidb-demo:*"
    try:
        before = {key async for key in r.scan_iter(match=pattern, count=1000)}
        sem = asyncio.Semaphore(concurrency)

        async def one(stop_after: str) -> None:
            async with sem:
                await login(client, t, stop_after=stop_after)

        await asyncio.gather(*(one("authorize") for _ in range(k)))
        await asyncio.gather(*(one("callback") for _ in range(k)))
        after = {key async for key in r.scan_iter(match=pattern, count=1000)}
        new = sorted(after - before)
        by_purpose: dict[str, dict[str, float]] = {}
        for key in new:
            purpose = key.decode().split(":")[1]
            value_len = int(await r.strlen(key))
            usage = int(await r.memory_usage(key) or 0)
            agg = by_purpose.setdefault(purpose, {"entries": 0, "key_bytes": 0,
                                                  "value_bytes": 0, "memory_usage": 0})
            agg["entries"] += 1
            agg["key_bytes"] += len(key)
            agg["value_bytes"] += value_len
            agg["memory_usage"] += usage
        out: dict[str, Any] = {"k": k, "states": {}}
        names = {"login.upstream": "UPSTREAM_PENDING", "login.code": "CODE_ISSUED",
                 "login.started": "STARTED"}
        for purpose, agg in sorted(by_purpose.items()):
            n = agg["entries"]
            out["states"][names.get(purpose, purpose)] = {
                "purpose": purpose, "entries": int(n),
                "key_bytes": agg["key_bytes"] / n, "value_bytes": agg["value_bytes"] / n,
                "bytes": (agg["key_bytes"] + agg["value_bytes"]) / n,
                "redis_memory_usage": agg["memory_usage"] / n,
            }
        out["bytes_per_inflight_login"] = max(
            (s["bytes"] for s in out["states"].values()), default=0.0)
        if not keep and new:
            await r.delete(*new)
        return out
    finally:
        await r.aclose()


# --------------------------------------------------------------------------- reporting


def ms(x: float) -> float:
    return round(x * 1000, 2)


def summarise(phase: PhaseResult, cpu: float, args: argparse.Namespace,
              extra: dict[str, Any]) -> dict[str, Any]:
    n = len(phase.completed)
    totals = [r.total for r in phase.completed]
    out: dict[str, Any] = {
        "logins_requested": args.logins * args.repeat,
        "logins_completed": n,
        "errors": sum(phase.errors.values()),
        "errors_by_step": phase.errors,
        "first_error": phase.first_error,
        "concurrency": args.concurrency,
        "client": args.client,
        "warmup": args.warmup,
        "idp": args.idp,
        "store": "redis" if args.redis_url else "memory",
        "wall_s": round(phase.wall, 3),
        "logins_per_s": round(n / phase.wall, 1) if phase.wall > 0 else 0.0,
        "latency_ms": {"p50": ms(percentile(totals, 50)), "p99": ms(percentile(totals, 99))},
        "step_latency_ms": {
            s: {"p50": ms(percentile([r.steps[s] for r in phase.completed], 50)),
                "p99": ms(percentile([r.steps[s] for r in phase.completed], 99))}
            for s in STEPS},
        "broker_cpu_ms_per_login": round(cpu * 1000 / n, 3) if n else None,
        "target_cpu_ms_per_login": TARGET_CPU_MS,
    }
    out.update(extra)
    return out


def render(rep: dict[str, Any]) -> str:
    lines = [
        f"complete logins      {rep['logins_completed']} of {rep['logins_requested']} "
        f"(concurrency {rep['concurrency']}, warm-up {rep['warmup']}, IdP {rep['idp']}, "
        f"store {rep['store']})",
        f"errors               {rep['errors']} {rep['errors_by_step'] or ''}"
        + (f"  first: {rep['first_error']}" if rep["first_error"] else ""),
        f"throughput           {rep['logins_per_s']} logins/s over {rep['wall_s']} s",
        f"complete login       p50 {rep['latency_ms']['p50']} ms   "
        f"p99 {rep['latency_ms']['p99']} ms",
    ]
    for w in rep.get("broker_warnings") or ():
        lines.append(f"  broker log: {w[:200]}")
    for s in STEPS:
        v = rep["step_latency_ms"][s]
        lines.append(f"  {s:<18} p50 {v['p50']} ms   p99 {v['p99']} ms")
    cpu = rep["broker_cpu_ms_per_login"]
    verdict = "n/a" if cpu is None else ("meets" if cpu <= TARGET_CPU_MS else "MISSES")
    lines.append(f"broker CPU           {cpu} ms per login ({verdict} target "
                 f"≤ {TARGET_CPU_MS} ms; process also hosts the idle demo app)")
    split = rep.get("broker_cpu_ms_per_login_user_system")
    if split:
        lines.append(f"  user / system      {split[0]} / {split[1]} ms")
    by_step = rep.get("broker_cpu_ms_by_step")
    if by_step:
        lines.append("  by step (sequential, " + str(rep["step_cpu_logins"]) + " logins): "
                     + ", ".join(f"{k} {v} ms" for k, v in by_step.items()))
    lines.append(f"sandbox CPU          {rep['sandbox_cpu_ms_per_login']} ms per login "
                 "(IdPs + master, for context)")
    if rep.get("calibration_ms") is not None:
        lines.append(f"machine speed        {rep['calibration_ms']} ms for the fixed calibration "
                     "loop just before the measured phase (lower = faster)")
    if rep.get("broker_to_sandbox_cpu_ratio") is not None:
        lines.append(f"  broker / sandbox   {rep['broker_to_sandbox_cpu_ratio']} "
                     "(compare runs by this when the machine's speed varies)")
    runs = rep.get("runs") or []
    if len(runs) > 1:
        lines.append(f"runs                 {len(runs)}: broker CPU median "
                     f"{rep['broker_cpu_ms_per_login_median']} ms, max "
                     f"{rep['broker_cpu_ms_per_login_max']} ms per login")
        for i, r in enumerate(runs, 1):
            lines.append(f"  run {i:<3} broker {r['broker_cpu_ms_per_login']} ms  sandbox "
                         f"{r['sandbox_cpu_ms_per_login']} ms  ratio "
                         f"{r['broker_to_sandbox_cpu_ratio']}  load generator "
                         f"{r['load_generator_cpu_ms_per_login']} ms  "
                         f"{r['logins_per_s']} logins/s")
    elif runs:
        lines.append(f"load generator CPU   {runs[0]['load_generator_cpu_ms_per_login']} ms "
                     "per login (this process, on the same two cores)")
    lines.append(f"broker RSS           {rep['broker_rss_mib']} MiB after the run")
    inflight = rep.get("inflight")
    if inflight is None:
        lines.append("in-flight bytes      not measured (needs the Redis store)")
    else:
        b = inflight["bytes_per_inflight_login"]
        verdict = "meets" if b <= TARGET_BYTES else "MISSES"
        lines.append(f"in-flight bytes      {b:.0f} B per login (largest state; {verdict} "
                     f"target ≤ {TARGET_BYTES} B), K = {inflight['k']} per state")
        for name, s in inflight["states"].items():
            lines.append(f"  {name:<18} key {s['key_bytes']:.0f} + value {s['value_bytes']:.0f}"
                         f" = {s['bytes']:.0f} B   (Redis MEMORY USAGE "
                         f"{s['redis_memory_usage']:.0f} B, {s['entries']} entries)")
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="hidb-bench-"))
    children: list[Child] = []
    try:
        py = sys.executable
        sandbox, sb_info = await start_child(
            "sandbox", [py, "-m", "healthid_broker.cli", "sandbox", "--port", "0",
                        "--data-dir", str(work / "sandbox"), "--json",
                        "--auto-person", args.person], work / "sandbox.log")
        children.append(sandbox)
        sb_file = work / "sandbox.json"
        sb_file.write_text(json.dumps(sb_info), "utf-8")
        argv = [py, str(HERE / "_broker_entry.py"), "demo", "--port", "0",
                "--data-dir", str(work / "broker"), "--json", "--external-sandbox", str(sb_file),
                # rate limits on (their cost is measured) but far above the load, or off
                *(("--rate-limit", "off") if args.no_rate_limit else
                  (a for c in ("authorize", "choose", "callback", "token", "client.authorize",
                               "client.token") for a in ("--rate-limit", f"{c}=100000000")))]
        if args.redis_url:
            argv += ["--redis-url", args.redis_url]
        env = dict(os.environ)
        if args.profile:
            env["HIDB_BENCH_PROFILE"] = str(Path(args.profile).resolve())
        elif args.garbage:
            env["HIDB_BENCH_GARBAGE"] = str(Path(args.garbage).resolve())
        broker, info = await start_child("broker", argv, work / "broker.log", env=env)
        children.append(broker)

        idps = [i for i in info["idps"] if i.rstrip("/").endswith("/" + args.idp)]
        if not idps:
            raise BenchError(f"no sandbox IdP named {args.idp!r}; have: {info['idps']}")
        target = Target(
            browser_base=info["broker_browser_base"].rstrip("/"), broker=info["broker"],
            issuer=info["issuer"], client_id=info["client_id"],
            client_secret=info["client_secret"], redirect_uri=info["redirect_uri"],
            idp=idps[0], scope=args.scope)
        ctx = ssl.create_default_context(cafile=info["ca_cert"])
        limits = httpx.Limits(max_connections=args.concurrency * 4,
                              max_keepalive_connections=args.concurrency * 4)
        deadline_all = time.monotonic() + args.max_seconds
        client_cm: Any = (
            LoadClient(verify=ctx, timeout=30.0, connections=args.concurrency * 4)
            if args.client == "aiohttp" else
            httpx.AsyncClient(verify=ctx, limits=limits, timeout=30.0, follow_redirects=False))
        async with client_cm as client:
            if args.warmup:
                warm = await run_phase(client, target, count=args.warmup,
                                       concurrency=args.concurrency, deadline=deadline_all)
                if not warm.completed:
                    raise BenchError(f"no warm-up login completed: {warm.first_error}; "
                                     f"broker log:\n{broker.log_tail()}")
            if args.profile or args.garbage:
                broker.proc.send_signal(signal.SIGUSR1)  # bench/_broker_entry.py
                await asyncio.sleep(0.2)
            runs: list[dict[str, Any]] = []
            phase = PhaseResult()
            u_all = k_all = sb_all = 0.0
            calibration = None
            for _ in range(args.repeat):
                calibration = calibration_ms()
                (u0, k0), sb0 = cpu_split(broker.pid), cpu_seconds(sandbox.pid)
                lg0 = sum(os.times()[:2])
                one = await run_phase(client, target, count=args.logins,
                                      concurrency=args.concurrency, deadline=deadline_all)
                lg1 = sum(os.times()[:2])
                (u1, k1), sb1 = cpu_split(broker.pid), cpu_seconds(sandbox.pid)
                runs.append(run_figures(one, broker=(u1 - u0) + (k1 - k0), sandbox=sb1 - sb0,
                                        load_generator=lg1 - lg0, calibration=calibration))
                u_all, k_all, sb_all = u_all + u1 - u0, k_all + k1 - k0, sb_all + sb1 - sb0
                phase.completed += one.completed
                for step, count in one.errors.items():
                    phase.errors[step] = phase.errors.get(step, 0) + count
                phase.first_error = phase.first_error or one.first_error
                phase.wall += one.wall
            # over all measured runs together (each run's own figures are in "runs")
            broker_all = u_all + k_all
            if args.profile or args.garbage:
                broker.proc.send_signal(signal.SIGUSR2)
                await asyncio.sleep(0.5)
            n = len(phase.completed)
            extra: dict[str, Any] = {
                "sandbox_cpu_ms_per_login": round(sb_all * 1000 / n, 3) if n else None,
                # the yardstick: the sandbox's code is the same in every run, so this ratio
                # compares runs made while the machine was faster or slower
                "broker_to_sandbox_cpu_ratio": (
                    round(broker_all / sb_all, 3) if n and sb_all > 0 else None),
                # where the broker's CPU went: its own code (user) or the kernel (system:
                # syscalls, loopback TCP, TLS records handed to the socket)
                "broker_cpu_ms_per_login_user_system": (
                    [round(u_all * 1000 / n, 3), round(k_all * 1000 / n, 3)]
                    if n else None),
                "broker_rss_mib": round(rss_bytes(broker.pid) / 2**20, 1),
                "calibration_ms": calibration,
                "inflight": None,
                "runs": runs,
                "broker_cpu_ms_per_login_median": median(
                    [r["broker_cpu_ms_per_login"] for r in runs]),
                "broker_cpu_ms_per_login_max": max(
                    (r["broker_cpu_ms_per_login"] or 0.0 for r in runs), default=None),
            }
            if args.step_cpu > 0:
                # One login at a time, so the broker's CPU between two requests is that step's.
                pid = broker.pid
                by_step = {s: 0.0 for s in STEPS}
                done = 0
                for _ in range(args.step_cpu):
                    if time.monotonic() >= deadline_all + 30:
                        break
                    res = await login(client, target, cpu_probe=lambda: cpu_seconds(pid))
                    done += 1
                    for s in STEPS:
                        by_step[s] += res.steps["cpu:" + s]
                extra["broker_cpu_ms_by_step"] = {
                    s: round(v * 1000 / done, 2) for s, v in by_step.items()} if done else None
                extra["step_cpu_logins"] = done
            if args.redis_url and args.inflight > 0:
                extra["inflight"] = await measure_inflight(
                    client, target, args.redis_url, k=args.inflight,
                    concurrency=args.concurrency, keep=args.keep)
        report = summarise(phase, broker_all, args, extra)
        if report["errors"]:
            # The broker's warnings name the cause (they carry no personal data by policy).
            report["broker_warnings"] = [
                line for line in broker.log_tail(400).splitlines()
                if " WARNING " in f" {line} " or line.startswith("WARNING")][-5:]
        if args.keep:
            report["work_dir"] = str(work)
        return report
    finally:
        for c in reversed(children):
            await c.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="Run complete logins against a broker and a sandbox in their own "
        "processes; report logins/s, latency, broker CPU per login and store bytes per "
        "in-flight login.")
    p.add_argument("--logins", type=int, default=2000, help="measured logins (%(default)s)")
    p.add_argument("--concurrency", type=int, default=8, help="logins in parallel (%(default)s)")
    p.add_argument("--repeat", type=int, default=1, metavar="R",
                   help="R measured runs of --logins each on the same processes, one after "
                   "the other; reported each, with the median (%(default)s)")
    p.add_argument("--warmup", type=int, default=100,
                   help="logins before measuring (%(default)s)")
    p.add_argument("--idp", default="nordkasse",
                   help="sandbox IdP slug: nordkasse, suedkasse, mittelland-bkk, privat")
    p.add_argument("--person", default=DEFAULT_PERSON, help="synthetic KVNR (auto person)")
    p.add_argument("--scope", default=DEFAULT_SCOPE, help="scopes the client asks for")
    p.add_argument("--redis-url", default=DEFAULT_REDIS,
                   help="Redis for the broker's transient store; use a dedicated DB number "
                   "(default %(default)s); 'none' = in-memory store, no in-flight measurement")
    p.add_argument("--inflight", type=int, default=200,
                   help="K logins left in each in-flight state for the size measurement")
    p.add_argument("--step-cpu", type=int, default=200, metavar="N",
                   help="afterwards, N sequential logins to split broker CPU by step "
                   "(/proc tick granularity, so use N ≥ 100 for a useful mean; 0 = skip)")
    p.add_argument("--max-seconds", type=float, default=170.0,
                   help="no new login starts after this many seconds (%(default)s)")
    p.add_argument("--profile", metavar="FILE",
                   help="run the broker under cProfile and write its stats to FILE")
    p.add_argument("--no-rate-limit", action="store_true",
                   help="run the broker without its rate limiter (to measure what it costs)")
    p.add_argument("--client", choices=("aiohttp", "httpx"), default="aiohttp",
                   help="the load generator's HTTP client: aiohttp (bench/load_client.py, "
                   "default) or httpx (several CPU-ms per login of its own on the same "
                   "cores)")
    p.add_argument("--garbage", metavar="FILE",
                   help="count the objects only the cyclic garbage collector frees during the "
                   "measured runs (reference cycles per request) and write them to FILE")
    p.add_argument("--keep", action="store_true",
                   help="keep the work directory (logs, keys) and the measured Redis keys")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")
    args = p.parse_args(argv)
    if args.profile and args.garbage:
        p.error("--profile and --garbage use the same signals: give one of them")
    if args.redis_url in ("", "none"):
        args.redis_url = None
    if args.logins < 1 or args.concurrency < 1 or args.repeat < 1 or args.warmup < 0 \
            or args.inflight < 0 or args.step_cpu < 0:
        p.error("--logins, --concurrency and --repeat must be ≥ 1, --warmup and --inflight ≥ 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    def _term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _term)
    try:
        report = asyncio.run(run(args))
    except BenchError as exc:
        print(f"login_load: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("login_load: interrupted", file=sys.stderr)
        return 130
    print(json.dumps(report) if args.json else render(report))
    return 0 if report["errors"] == 0 and report["logins_completed"] > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
