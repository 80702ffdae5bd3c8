"""Sealing keys in the data directory: generated once, 0600, rotation keeps entries readable."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from healthid_broker.cli import main
from healthid_broker.login.errors import SealError
from healthid_broker.login.sealing_keys import FILE_NAME, KEEP_OLD_KEYS, load_sealer, rotate


def test_generated_once_and_private(tmp_path: Path) -> None:
    a = load_sealer(tmp_path, now=0)
    b = load_sealer(tmp_path, now=10)
    mode = stat.S_IMODE(os.stat(tmp_path / FILE_NAME).st_mode)
    assert mode == 0o600
    sealed = a.seal("login.code", "k", b"v")
    assert b.open("login.code", "k", sealed) == b"v"  # same keys for every process


def test_rotation_keeps_in_flight_entries_readable(tmp_path: Path) -> None:
    old = load_sealer(tmp_path, now=0)
    sealed = old.seal("login.upstream", "state", b"in flight")
    new_kid = rotate(tmp_path, now=100)
    new = load_sealer(tmp_path)
    assert new.current_kid == new_kid != old.current_kid
    assert new.open("login.upstream", "state", sealed) == b"in flight"


def test_keys_retired_long_ago_are_dropped(tmp_path: Path) -> None:
    first = load_sealer(tmp_path, now=0)
    sealed = first.seal("login.code", "c", b"x")
    rotate(tmp_path, now=10)
    rotate(tmp_path, now=10 + KEEP_OLD_KEYS + 1)
    latest = load_sealer(tmp_path)
    assert first.current_kid not in latest.key_ids
    with pytest.raises(SealError):
        latest.open("login.code", "c", sealed)


def test_cli_rotates(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = load_sealer(tmp_path).current_kid
    assert main(["sealing-keys", "rotate", "--data-dir", str(tmp_path)]) == 0
    assert load_sealer(tmp_path).current_kid != before
    assert "current sealing key" in capsys.readouterr().out
