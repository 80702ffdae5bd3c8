"""Sealing keys in the data directory: created once, 0600, never regenerated; rotation keeps
entries readable."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from healthid_broker.cli import main
from healthid_broker.crypto.key_provider import KeyProviderError, SecretMissingError
from healthid_broker.login.errors import SealError
from healthid_broker.login.sealing_keys import (
    FILE_NAME,
    KEEP_OLD_KEYS,
    create_sealing_keys,
    load_sealer,
    rotate,
)


def test_generated_once_and_private(tmp_path: Path) -> None:
    a = load_sealer(tmp_path, create=True, now=0)
    before = (tmp_path / FILE_NAME).read_bytes()
    b = load_sealer(tmp_path, create=True, now=10)
    assert (tmp_path / FILE_NAME).read_bytes() == before
    assert create_sealing_keys(tmp_path) is False
    mode = stat.S_IMODE(os.stat(tmp_path / FILE_NAME).st_mode)
    assert mode == 0o600
    sealed = a.seal("login.code", "k", b"v")
    assert b.open("login.code", "k", sealed) == b"v"  # same keys for every process


def test_missing_file_is_not_created_without_asking(tmp_path: Path) -> None:
    with pytest.raises(SecretMissingError):
        load_sealer(tmp_path)
    assert not (tmp_path / FILE_NAME).exists()


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty"),
    (b"\n", "is empty"),
    (b'{"current": 1, "index_key": "', "not a sealing-key document"),
    (b"{}", "holds no sealing keys"),
    (b'{"current": 1, "index_key": "AAAA", "keys": {"1": {"key": "AAAA", "created": 0}}}',
     "must be 32 bytes"),
])
def test_broken_file_is_a_hard_failure(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / FILE_NAME
    path.write_bytes(content)
    path.chmod(0o600)
    with pytest.raises(KeyProviderError, match=message):
        load_sealer(tmp_path, create=True)
    assert path.read_bytes() == content  # never regenerated
    with pytest.raises(KeyProviderError):
        rotate(tmp_path)
    assert path.read_bytes() == content


def test_rotation_keeps_in_flight_entries_readable(tmp_path: Path) -> None:
    old = load_sealer(tmp_path, create=True, now=0)
    sealed = old.seal("login.upstream", "state", b"in flight")
    new_kid = rotate(tmp_path, now=100)
    new = load_sealer(tmp_path)
    assert new.current_kid == new_kid != old.current_kid
    assert new.open("login.upstream", "state", sealed) == b"in flight"
    assert stat.S_IMODE(os.stat(tmp_path / FILE_NAME).st_mode) == 0o600
    assert json.loads((tmp_path / FILE_NAME).read_text())["current"] == new_kid


def test_keys_retired_long_ago_are_dropped(tmp_path: Path) -> None:
    first = load_sealer(tmp_path, create=True, now=0)
    sealed = first.seal("login.code", "c", b"x")
    rotate(tmp_path, now=10)
    rotate(tmp_path, now=10 + KEEP_OLD_KEYS + 1)
    latest = load_sealer(tmp_path)
    assert first.current_kid not in latest.key_ids
    with pytest.raises(SealError):
        latest.open("login.code", "c", sealed)


def test_cli_rotates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = load_sealer(tmp_path, create=True).current_kid
    assert main(["sealing-keys", "rotate", "--data-dir", str(tmp_path)]) == 0
    assert load_sealer(tmp_path).current_kid != before
    assert "current sealing key" in capsys.readouterr().out


def test_cli_rotate_refuses_a_missing_file(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sealing-keys", "rotate", "--data-dir", str(tmp_path)]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / FILE_NAME).exists()
    assert main(["sealing-keys", "rotate", "--data-dir", str(tmp_path / "nowhere")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "nowhere").exists()
