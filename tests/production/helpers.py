"""Processes of the production shape for tests: the CLI, a sandbox federation in its own
process, `init` and `serve` processes, and a login driven through them."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CLI = [sys.executable, "-m", "healthid_broker.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env() -> dict[str, str]:
    """The test's environment without any HEALTHID_ setting of the developer's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHID_")}
    return {**env, "PYTHONUNBUFFERED": "1"}


def cli_json(*args: str, env: dict[str, str]) -> Any:
    out = subprocess.run([*CLI, *args, "--json"], env=env, capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


def wait_json_line(proc: subprocess.Popen[str], timeout: float = 30) -> dict[str, Any]:
    deadline = time.time() + timeout
    assert proc.stdout is not None
    while time.time() < deadline:
        line = proc.stdout.readline()
        if line.strip().startswith("{"):
            data: dict[str, Any] = json.loads(line)
            return data
        if proc.poll() is not None:
            raise AssertionError(f"process exited: {proc.stderr.read() if proc.stderr else ''}")
    raise AssertionError("no JSON line in time")


@contextmanager
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    """A list to put started processes in; all of them are stopped at the end."""
    procs: list[subprocess.Popen[str]] = []
    try:
        yield procs
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=10)


# A real `init` process whose imports are done before it waits for the start signal, so the
# processes of a test really reach the secret files and the database at the same moment.
_AT_SIGNAL = (
    "import os, sys, time\n"
    "import healthid_broker.cli as cli, healthid_broker.cli.broker, "
    "healthid_broker.runtime.secrets, healthid_broker.storage.db\n"
    "cli.build_parser()\n"
    "go = sys.argv[1]\n"
    "open(go + '.ready.' + str(os.getpid()), 'w').close()\n"
    "while not os.path.exists(go):\n"
    "    time.sleep(0.001)\n"
    "sys.exit(cli.main(sys.argv[2:]))\n"
)


def start_at_once(argvs: Sequence[Sequence[str]], signal_dir: Path,
                  env: dict[str, str]) -> list[subprocess.Popen[str]]:
    """Start one CLI process per argv; they begin their command at the same moment (after
    every one of them has imported the broker and is waiting for the signal)."""
    signal_dir.mkdir(parents=True, exist_ok=True)
    go = signal_dir / "go"
    assert not go.exists()
    procs = [subprocess.Popen([sys.executable, "-c", _AT_SIGNAL, str(go), *argv], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for argv in argvs]
    deadline = time.time() + 60
    while len(list(signal_dir.glob("go.ready.*"))) < len(procs):
        if time.time() > deadline or any(p.poll() is not None for p in procs):
            for p in procs:
                p.kill()
            raise AssertionError([p.communicate() for p in procs])
        time.sleep(0.01)
    go.touch()
    return procs


def run_at_once(argvs: Sequence[Sequence[str]], signal_dir: Path, env: dict[str, str],
                timeout: float = 120) -> list[subprocess.CompletedProcess[str]]:
    """:func:`start_at_once`, then wait for every process to finish."""
    results = []
    for p, argv in zip(start_at_once(argvs, signal_dir, env), argvs, strict=True):
        out, err = p.communicate(timeout=timeout)
        results.append(subprocess.CompletedProcess(list(argv), p.returncode, out, err))
    return results


def start_sandbox(procs: list[subprocess.Popen[str]], tmp_path: Path, env: dict[str, str],
                  *extra: str) -> dict[str, Any]:
    sbx = subprocess.Popen(
        [*CLI, "sandbox", "--port", "0", "--data-dir", str(tmp_path / "sbx"), "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    procs.append(sbx)
    info = wait_json_line(sbx)
    (tmp_path / "sandbox.json").write_text(json.dumps(info))
    return info


def register_with_sandbox(tmp_path: Path, registration: dict[str, Any],
                          env: dict[str, str]) -> None:
    reg_file = tmp_path / f"registration-{secrets.token_hex(4)}.json"
    reg_file.write_text(json.dumps(registration))
    r = subprocess.run([*CLI, "sandbox", "register", "--data-dir", str(tmp_path / "sbx"),
                        "--from-json", str(reg_file)], env=env, capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr


def serve_args(tmp_path: Path, common: Sequence[str], public_base: str, browser_base: str,
               port: int) -> list[str]:
    """The arguments of a `serve` process of the sandbox federation (after the program)."""
    return ["serve", "--public-base", public_base, "--browser-base", browser_base,
            *common, "--federation", "sandbox", "--sandbox-info",
            str(tmp_path / "sandbox.json"), "--port", str(port),
            "--tls-cert", str(tmp_path / "tls.pem"), "--tls-key", str(tmp_path / "tls.key")]


def start_serve_nodes(procs: list[subprocess.Popen[str]], tmp_path: Path, ca_file: str,
                      common: Sequence[str], public_base: str, browser_base: str,
                      ports: Sequence[int], env: dict[str, str], redis_prefix: str) -> None:
    """One `serve` process per port, one after the other, on https with a certificate from
    the sandbox's CA, sharing Redis under ``redis_prefix``; returns once each listens."""
    from healthid_broker.crypto.keys import LocalCA

    sb_dir = Path(ca_file).parent
    ca = LocalCA.load(sb_dir / "ca.pem", sb_dir / "keys" / "ca.key")
    ca.issue_server_cert(["127.0.0.1"]).write(tmp_path / "tls.pem", tmp_path / "tls.key")
    senv = {**env, "HEALTHID_REDIS_URL": "redis://127.0.0.1:6379/0",
            "HEALTHID_REDIS_PREFIX": redis_prefix}
    for port in ports:
        p = subprocess.Popen(
            [*CLI, *serve_args(tmp_path, common, public_base, browser_base, port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=senv)
        procs.append(p)
        wait_json_line(p)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge
