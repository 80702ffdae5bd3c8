"""Fixtures for the interoperability tests: a separate virtualenv holding an independent
OpenID Federation implementation (ofcli, see docs/interop.md).

The virtualenv lives in ``<repo>/.cache/interop-venv`` and is (re)built from the hashed lock
``ofcli-requirements.txt`` (generated from ``ofcli-requirements.in``) whenever it is missing or
the lock changed, so a clean CI machine needs nothing but PyPI.  Every file is checked against
the lock's hashes (``uv pip sync --require-hashes``), and exactly the locked set is installed.
It is never the project's ``.venv``.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

HERE = Path(__file__).parent
REPO = HERE.parents[1]
REQUIREMENTS = HERE / "ofcli-requirements.txt"  # hashed lock
VENV = Path(os.environ.get("HIDB_INTEROP_VENV", REPO / ".cache" / "interop-venv"))
INSTALL_TIMEOUT = 900  # seconds; a cold install downloads about 50 wheels


class InteropSetupError(RuntimeError):
    """The interop virtualenv could not be built (no PyPI, a pin no longer served, …)."""


def _run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                          check=False)
    if proc.returncode != 0:
        raise InteropSetupError(
            f"{' '.join(cmd[:4])} … failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
        )


def ensure_interop_venv(venv: Path = VENV, requirements: Path = REQUIREMENTS) -> Path:
    """Return the interop virtualenv's python, building the venv first when needed."""
    python = venv / "bin" / "python"
    stamp = venv / ".requirements-stamp"
    wanted = requirements.read_text("utf-8")
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f".{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel pytest workers build it once
        if python.exists() and stamp.exists() and stamp.read_text("utf-8") == wanted:
            return python
        if venv.exists():
            shutil.rmtree(venv)
        uv = [sys.executable, "-m", "uv"]  # uv comes with the project's .venv (./dev install)
        _run([*uv, "venv", "--quiet", "--python", sys.executable, str(venv)])
        # The lock doubles as build constraints: ofcli is an sdist, built with the locked,
        # hashed setuptools and wheel.
        _run([*uv, "pip", "sync", "--quiet", "--require-hashes", "--build-constraints",
              str(requirements), "--python", str(python), str(requirements)])
        _run([*uv, "pip", "check", "--python", str(python)])
        stamp.write_text(wanted, "utf-8")
        return python


@pytest.fixture(scope="session")
def interop_python() -> Iterator[Path]:
    yield ensure_interop_venv()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
