"""AES-256-GCM sealing: purpose/key binding, tampering, rotation, unknown key ids."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker.login import Sealer, SealError

K1, K2, IDX = os.urandom(32), os.urandom(32), os.urandom(32)


def test_round_trip_and_format() -> None:
    s = Sealer({1: K1}, 1, IDX)
    blob = s.seal("login.code", "abc", b"payload")
    assert blob[0] == 1 and len(blob) == 1 + 12 + len(b"payload") + 16
    assert b"payload" not in blob
    assert s.open("login.code", "abc", blob) == b"payload"


def test_purpose_and_key_are_bound() -> None:
    s = Sealer({1: K1}, 1, IDX)
    blob = s.seal("login.code", "abc", b"x")
    with pytest.raises(SealError, match="another purpose or key"):
        s.open("login.upstream", "abc", blob)
    with pytest.raises(SealError):
        s.open("login.code", "abd", blob)


@settings(deadline=None)
@given(st.binary(max_size=200), st.data())
def test_any_bit_flip_is_detected(plaintext: bytes, data: st.DataObject) -> None:
    s = Sealer({1: K1, 2: K2}, 1, IDX)
    blob = bytearray(s.seal("p", "k", plaintext))
    i = data.draw(st.integers(0, len(blob) - 1))
    bit = data.draw(st.integers(0, 7))
    blob[i] ^= 1 << bit
    with pytest.raises(SealError):
        s.open("p", "k", bytes(blob))


def test_rotation_keeps_old_entries_readable() -> None:
    old = Sealer({1: K1}, 1, IDX)
    blob = old.seal("p", "k", b"in flight")
    rotated = Sealer({1: K1, 2: K2}, 2, IDX)
    assert rotated.open("p", "k", blob) == b"in flight"
    new_blob = rotated.seal("p", "k", b"new")
    assert new_blob[0] == 2
    # the old key id alone cannot read entries sealed under the new key
    with pytest.raises(SealError, match="key id 2"):
        old.open("p", "k", new_blob)


def test_unknown_key_id_and_short_entries() -> None:
    s = Sealer({1: K1}, 1, IDX)
    blob = s.seal("p", "k", b"x")
    with pytest.raises(SealError, match="does not hold"):
        s.open("p", "k", bytes([9]) + blob[1:])
    with pytest.raises(SealError, match="too short"):
        s.open("p", "k", blob[:10])


def test_same_key_id_different_key_material_fails() -> None:
    blob = Sealer({1: K1}, 1, IDX).seal("p", "k", b"x")
    with pytest.raises(SealError):
        Sealer({1: K2}, 1, IDX).open("p", "k", blob)


def test_index_is_keyed_and_purpose_bound() -> None:
    s = Sealer({1: K1}, 1, IDX)
    idx = s.index("login.code", "the-code")
    assert len(idx) == 43 and "the-code" not in idx
    assert idx == s.index("login.code", "the-code")
    assert idx != s.index("login.started", "the-code")
    assert idx != Sealer({1: K1}, 1, os.urandom(32)).index("login.code", "the-code")


def test_configuration_errors() -> None:
    with pytest.raises(SealError, match="current"):
        Sealer({1: K1}, 2, IDX)
    with pytest.raises(SealError, match="32 bytes"):
        Sealer({1: b"short"}, 1, IDX)
    with pytest.raises(SealError, match=r"0\.\.255"):
        Sealer({256: K1}, 256, IDX)
    with pytest.raises(SealError, match="index key"):
        Sealer({1: K1}, 1, b"x")
    s = Sealer({1: K1}, 1, IDX)
    with pytest.raises(SealError, match="purpose"):
        s.seal("Bad Purpose", "k", b"")
    with pytest.raises(SealError, match="store key"):
        s.seal("p", "", b"")
