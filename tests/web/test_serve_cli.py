"""`healthid-broker serve` refuses bad configuration with a clear message, before it binds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from healthid_broker.cli import main

GOOD_KEY = {"kty": "EC", "crv": "P-256", "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
            "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}


def _serve(tmp_path: Path, *extra: str) -> list[str]:
    return ["serve", "--data-dir", str(tmp_path / "data"), "--port", "0", *extra]


@pytest.mark.parametrize(("jwks", "message"), [
    ({"keys": []}, "at least one key"),
    ({"nokeys": 1}, "at least one key"),
    ({"keys": [{"kty": "RSA", "n": "x", "e": "AQAB"}]}, "key #0 is unusable"),
    ("not json", "cannot read a JWKS"),
])
def test_unusable_pinned_master_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     jwks: object, message: str) -> None:
    f = tmp_path / "master.jwks"
    f.write_text(jwks if isinstance(jwks, str) else json.dumps(jwks))
    code = main(_serve(tmp_path, "--public-base", "https://broker.example",
                       "--federation", "tu", "--master-jwks", str(f)))
    assert code == 2
    assert message in capsys.readouterr().err


def test_pinned_keys_are_required_for_gematik_federations(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--master-jwks is required"):
        main(_serve(tmp_path, "--public-base", "https://broker.example", "--federation", "ru"))


def test_http_public_base_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "master.jwks"
    f.write_text(json.dumps({"keys": [GOOD_KEY]}))
    code = main(_serve(tmp_path, "--public-base", "http://broker.example",
                       "--federation", "pu", "--master-jwks", str(f)))
    assert code == 2
    assert "public base must be https" in capsys.readouterr().err
