"""The rooms of docs/design.md §4, enforced: protocol code imports no web framework and no ORM, and
production code never imports the sandbox or the demo."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "healthid_broker"

PURE_ROOMS = ("federation", "upstream", "login", "provider", "crypto", "http")
WEB_OR_ORM = ("starlette", "uvicorn", "fastapi", "sqlalchemy", "alembic", "jinja2")
NON_PRODUCTION = ("sandbox", "demo")


def _imports(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = path.relative_to(SRC.parent).with_suffix("").parts[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(pkg[: len(pkg) - node.level + 1])
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def _files(room: str) -> list[Path]:
    return sorted((SRC / room).rglob("*.py"))


@pytest.mark.parametrize("room", PURE_ROOMS)
def test_protocol_rooms_import_no_web_framework_or_orm(room: str) -> None:
    offenders = {
        f"{p.relative_to(SRC)} imports {m}"
        for p in _files(room)
        for m in _imports(p)
        if m.split(".")[0] in WEB_OR_ORM
    }
    assert not offenders, sorted(offenders)


def test_production_code_never_imports_sandbox_or_demo() -> None:
    offenders = set()
    for p in SRC.rglob("*.py"):
        rel = p.relative_to(SRC)
        room = rel.parts[0]
        if room in NON_PRODUCTION or room == "cli":
            continue  # the CLI imports them lazily, inside the command
        for m in _imports(p):
            parts = m.split(".")
            if parts[:1] == ["healthid_broker"] and len(parts) > 1 and parts[1] in NON_PRODUCTION:
                offenders.add(f"{rel} imports {m}")
    assert not offenders, sorted(offenders)


def test_import_scanner_sees_relative_imports() -> None:
    # The checks above are only as good as the scanner: it must resolve `from ..x import y`.
    found = _imports(SRC / "demo" / "run.py")
    assert "healthid_broker.runtime.compose" in found


@pytest.mark.slow
def test_serving_the_broker_loads_no_sandbox_module() -> None:
    # Only the sandbox's argument-registration module (cheap, imports nothing of the
    # sandbox's servers) is loaded by the CLI; the broker itself loads nothing of it.
    code = (
        "import sys, healthid_broker.cli as c; c.build_parser();"
        "import healthid_broker.runtime.compose, healthid_broker.web.broker_app;"
        "bad=[m for m in sys.modules if m.startswith(('healthid_broker.sandbox.', "
        "'healthid_broker.demo')) and m != 'healthid_broker.cli.sandbox'];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
