"""`serve` in the shared shape runs only as a database role that row-level security binds
(T-15, T-28): a superuser or the tables' owner is refused before anything is served."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from healthid_broker.runtime.secrets import init_secrets

from .helpers import CLI

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

# any well-formed P-256 key: serve refuses before it would ever use the master's keys
MASTER_KEY = {"kty": "EC", "crv": "P-256", "kid": "m",
              "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
              "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}


def _serve(tmp_path: Path, database_url: str) -> subprocess.CompletedProcess[str]:
    data = tmp_path / "data"
    if not data.exists():
        init_secrets(data)
    jwks = tmp_path / "master.jwks"
    jwks.write_text(json.dumps({"keys": [MASTER_KEY]}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEALTHID_")}
    return subprocess.run(
        [*CLI, "serve", "--data-dir", str(data), "--port", "0", "--database-url", database_url,
         "--public-base", "https://broker.example", "--federation", "tu",
         "--master-jwks", str(jwks), "--rotate-every", "0"],
        capture_output=True, text=True, timeout=60, check=False, env=env)


@pytest.mark.parametrize("who", ["superuser", "owner"])
def test_serve_refuses_a_role_that_escapes_row_level_security(tmp_path: Path, pg_roles: Any,
                                                              who: str) -> None:
    url = pg_roles.admin_url if who == "superuser" else pg_roles.owner_url
    r = _serve(tmp_path, url)
    assert r.returncode == 2, r.stderr
    assert "not fit to run the service" in r.stderr and "db roles" in r.stderr
    reason = "superuser" if who == "superuser" else "owns the schema's tables"
    assert reason in r.stderr
    assert "Traceback" not in r.stderr


def test_serve_as_runtime_role_on_a_schema_behind_says_to_upgrade(tmp_path: Path,
                                                                  pg_role_pair: Any) -> None:
    r = _serve(tmp_path, pg_role_pair.runtime_url)  # nothing migrated yet
    assert r.returncode == 2, r.stderr
    assert "db upgrade" in r.stderr and "Traceback" not in r.stderr
