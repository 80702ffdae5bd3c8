from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthid_broker.cli import main

TOML = """
[[tenants]]
name = "acme"

[[tenants.applications]]
short_key = "acme-app"
display_name = "Acme App"
organization_name = "Acme GmbH"
scopes = ["openid", "urn:telematik:alter"]
required_acr = "gematik-ehealth-loa-high"

[[tenants.applications.clients]]
name = "web"
auth_method = "client_secret_basic"
redirect_uris = ["https://app.example/cb"]

[[tenants.applications.clients]]
name = "mobile"
auth_method = "none"
redirect_uris = ["http://127.0.0.1/cb"]
scopes = ["openid"]
"""


def run(capsys: pytest.CaptureFixture[str], data: Path, *argv: str) -> tuple[int, str, str]:
    code = main([*argv, "--data-dir", str(data)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "data"
    assert run(capsys, d, "db", "upgrade")[0] == 0
    assert (d / "broker.db").exists()
    code, out, _ = run(capsys, d, "tenant", "create", "acme", "--json")
    assert code == 0 and json.loads(out)["name"] == "acme"
    code, out, _ = run(
        capsys, d, "app", "create", "acme-app", "--tenant", "acme", "--organization",
        "Acme GmbH", "--scope", "openid", "--scope", "urn:telematik:alter",
    )
    assert code == 0 and "acme-app" in out
    code, out, _ = run(
        capsys, d, "client", "create", "acme-app", "--name", "web",
        "--redirect-uri", "https://app.example/cb", "--json",
    )
    assert code == 0
    created = json.loads(out)
    assert created["client_secret"] and created["type"] == "confidential"
    code, out, _ = run(capsys, d, "client", "show", "acme-app", "web", "--json")
    shown = json.loads(out)
    assert shown["client_id"] == created["client_id"] and "client_secret" not in shown
    assert created["client_secret"] not in out
    code, out, _ = run(capsys, d, "app", "show", "acme-app", "--json")
    app = json.loads(out)
    assert {k["purpose"] for k in app["keys"]} == {
        "federation_sig", "mtls", "id_token_enc", "id_token_sig"}
    assert "PRIVATE" not in out
    code, out, _ = run(
        capsys, d, "app", "registration", "acme-app", "--base", "https://broker.example",
        "--environment", "sandbox", "--json",
    )
    reg = json.loads(out)
    assert reg["entity_id"] == "https://broker.example/acme-app"
    assert reg["environment"] == "sandbox" and len(reg["keys"]) == 1
    assert "PRIVATE" not in out
    code, out, _ = run(capsys, d, "app", "rotate-keys", "acme-app", "--force", "--json")
    assert code == 0 and {c["change"] for c in json.loads(out)} == {"published-next"}
    code, out, _ = run(capsys, d, "keys", "rotate-due", "--json")
    assert code == 0 and json.loads(out) == {}
    code, out, _ = run(capsys, d, "tenant", "list")
    assert "acme" in out
    code, out, _ = run(capsys, d, "client", "delete", "acme-app", "web")
    assert code == 0
    code, out, _ = run(capsys, d, "client", "list", "acme-app")
    assert "no clients" in out
    # a clear error, no traceback
    code, _, err = run(capsys, d, "app", "create", "Bad_Key", "--tenant", "acme",
                       "--organization", "x")
    assert code == 1 and err.startswith("error: application short key")
    code, _, err = run(capsys, d, "client", "create", "acme-app",
                       "--redirect-uri", "http://app.example/cb")
    assert code == 1 and "loopback" in err


def test_wrong_kek_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "data"
    run(capsys, d, "tenant", "create", "acme")
    run(capsys, d, "app", "create", "acme-app", "--tenant", "acme", "--organization", "A")
    (d / "kek.key").unlink()
    code, _, err = run(capsys, d, "app", "registration", "acme-app", "--base",
                       "https://b.example")
    assert code == 1 and "KEK" in err


@pytest.mark.parametrize("fmt", ["toml", "yaml"])
def test_apply_is_idempotent_and_prints_diff(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    import tomllib

    import yaml

    d = tmp_path / "data"
    f = tmp_path / f"tenancy.{fmt}"
    doc = tomllib.loads(TOML)
    f.write_text(TOML if fmt == "toml" else yaml.safe_dump(doc))

    code, out, _ = run(capsys, d, "apply", str(f), "--dry-run")
    assert code == 0 and "+ tenant acme" in out and "dry run" in out
    code, out, _ = run(capsys, d, "tenant", "list")
    assert "no tenants" in out  # the dry run wrote nothing

    code, out, _ = run(capsys, d, "apply", str(f), "--json")
    first = json.loads(out)
    assert first["changes"][:2] == ["+ tenant acme",
                                    "+ application acme-app (tenant acme, new key set)"]
    assert any(c.startswith("+ client acme-app/web") for c in first["changes"])
    assert set(first["client_secrets"]) == {"acme-app/web"}

    code, out, _ = run(capsys, d, "apply", str(f))
    assert code == 0 and out.strip() == "no changes"

    doc["tenants"][0]["applications"][0]["display_name"] = "Acme App 2"
    doc["tenants"][0]["applications"][0]["scopes"] = ["openid"]
    doc["tenants"][0]["applications"][0]["clients"][0]["redirect_uris"] = [
        "https://app.example/cb", "https://app.example/cb2"]
    doc["tenants"][0]["applications"][0]["clients"][0]["scopes"] = ["openid"]
    f.write_text(yaml.safe_dump(doc) if fmt == "yaml" else _to_toml(doc))
    code, out, _ = run(capsys, d, "apply", str(f))
    lines = out.strip().splitlines()
    assert "~ application acme-app: display_name: Acme App -> Acme App 2" in lines
    assert "~ application acme-app: scopes: [openid, urn:telematik:alter] -> [openid]" in lines
    assert ("~ client acme-app/web: redirect_uris: [https://app.example/cb] -> "
            "[https://app.example/cb, https://app.example/cb2]") in lines
    code, out, _ = run(capsys, d, "apply", str(f))
    assert out.strip() == "no changes"
    code, out, _ = run(capsys, d, "app", "show", "acme-app", "--json")
    assert json.loads(out)["scopes"] == ["openid"]


def test_apply_rejects_bad_file_atomically(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    d = tmp_path / "data"
    f = tmp_path / "bad.toml"
    f.write_text(TOML.replace('"http://127.0.0.1/cb"', '"http://evil.example/cb"'))
    code, _, err = run(capsys, d, "apply", str(f))
    assert code == 1 and "loopback" in err
    code, out, _ = run(capsys, d, "tenant", "list")
    assert "no tenants" in out  # nothing half-applied
    f.write_text(TOML + "\n[extra]\n")
    code, _, err = run(capsys, d, "apply", str(f))
    assert code == 1 and "unknown key" in err


def _to_toml(doc: dict[str, object]) -> str:
    out: list[str] = []

    def val(v: object) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list):
            return "[" + ", ".join(val(x) for x in v) + "]"
        return json.dumps(v)

    for t in doc["tenants"]:  # type: ignore[attr-defined]
        out.append("[[tenants]]")
        out += [f"{k} = {val(v)}" for k, v in t.items() if k != "applications"]
        for a in t.get("applications", []):
            out.append("[[tenants.applications]]")
            out += [f"{k} = {val(v)}" for k, v in a.items() if k != "clients"]
            for c in a.get("clients", []):
                out.append("[[tenants.applications.clients]]")
                out += [f"{k} = {val(v)}" for k, v in c.items()]
    return "\n".join(out) + "\n"


def test_db_roles_prints_the_role_sql(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["db", "roles", "--owner", "hb_owner", "--runtime", "hb_runtime",
                 "--database", "broker"]) == 0
    sql = capsys.readouterr().out
    assert 'CREATE ROLE "hb_runtime" LOGIN NOSUPERUSER' in sql
    assert 'ALTER ROLE "hb_runtime" LOGIN NOINHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE ' \
        "NOREPLICATION NOBYPASSRLS" in sql
    assert 'GRANT USAGE ON SCHEMA "public" TO "hb_runtime"' in sql
    assert 'REVOKE CREATE ON SCHEMA "public" FROM "hb_runtime"' in sql
    assert "PASSWORD" not in sql
    assert main(["db", "roles", "--owner", "x", "--runtime", "x", "--database", "b"]) == 2
    assert "must differ" in capsys.readouterr().err
    assert main(["db", "roles", "--owner", "Robert'); DROP", "--runtime", "r",
                 "--database", "b"]) == 2
    assert "lower-case" in capsys.readouterr().err
    assert main(["db", "roles", "--owner", "o", "--runtime", "r", "--apply",
                 "--database", "b"]) == 2
    assert "--apply needs --database-url" in capsys.readouterr().err


def test_cli_id_token_alg_and_deviation(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """``--id-token-alg`` on create and update; RS256 is shown as a BSI TR-02102-1
    deviation in ``client show`` and ``app show``, in text and ``--json``."""
    d = tmp_path / "data"
    assert run(capsys, d, "db", "upgrade")[0] == 0
    assert run(capsys, d, "tenant", "create", "acme")[0] == 0
    assert run(capsys, d, "app", "create", "acme-app", "--tenant", "acme",
               "--organization", "Acme GmbH", "--scope", "openid")[0] == 0
    code, out, _ = run(capsys, d, "client", "create", "acme-app", "--name", "web",
                       "--redirect-uri", "https://app.example/cb", "--id-token-alg", "RS256")
    assert code == 0 and "DEVIATION" in out and "TR-02102-1" in out
    code, out, _ = run(capsys, d, "client", "show", "acme-app", "web", "--json")
    shown = json.loads(out)
    assert shown["id_token_signed_response_alg"] == "RS256"
    assert any("TR-02102-1" in x for x in shown["deviations"])
    code, out, _ = run(capsys, d, "client", "show", "acme-app", "web")
    assert "DEVIATION: RS256" in out
    code, out, _ = run(capsys, d, "app", "show", "acme-app")
    assert "ID token RS256" in out and "DEVIATION" in out and "id_token_sig_rsa" in out
    code, out, _ = run(capsys, d, "app", "show", "acme-app", "--json")
    [client] = json.loads(out)["clients"]
    assert client["deviations"] and "id_token_sig_rsa" in {
        k["purpose"] for k in json.loads(out)["keys"]}
    code, out, _ = run(capsys, d, "client", "update", "acme-app", "web",
                       "--id-token-alg", "PS256", "--json")
    assert code == 0 and json.loads(out)["deviations"] == []
    code, out, _ = run(capsys, d, "app", "show", "acme-app")
    assert "ID token PS256" in out and "DEVIATION" not in out
    with pytest.raises(SystemExit):
        run(capsys, d, "client", "update", "acme-app", "web", "--id-token-alg", "HS256")
