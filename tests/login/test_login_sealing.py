"""AES-256-GCM sealing: purpose/key binding, tampering, rotation, unknown key ids."""

from __future__ import annotations

import hmac
import os
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker.crypto.jose import b64u_encode
from healthid_broker.login import Sealer, SealError
from healthid_broker.login.sealing import PURPOSE_RE

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


# --------------------------------------------------------------------------- wire format


def _lp(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def test_format_fixtures_are_unchanged() -> None:
    """Entries and indexes as written before; in-flight logins must survive an upgrade."""
    s = Sealer({7: bytes(range(32)), 9: bytes(range(32, 64))}, 9, bytes(range(64, 96)),
               random=lambda n: bytes(range(100, 100 + n)))
    assert s.seal("login.code", "the-code-ä", b'{"v":1}').hex() == (
        "096465666768696a6b6c6d6e6fce4ff8f1e58089ac87cf1baec7f6ebf67c5f851736b32b")
    assert s.index("login.code", "the-code-ä") == "LX-Pj78N1Mv2kTi6aM1dOZfuD2I_n38zTnxaZcUA1ww"
    older = bytes.fromhex(
        "0700000000000000000000000067d295b8d945e4d57ca9421709f33c390f4972ff972cd05bd4")
    assert s.open("login.upstream", "k", older) == b"in flight"


@settings(deadline=None)
@given(st.from_regex(PURPOSE_RE), st.text(min_size=1, max_size=512), st.binary(max_size=300),
       st.integers(0, 255), st.binary(min_size=12, max_size=12))
def test_seal_and_index_follow_the_documented_format(
    purpose: str, key: str, plaintext: bytes, kid: int, nonce: bytes
) -> None:
    s = Sealer({kid: K1, (kid + 1) % 256: K2}, kid, IDX, random=lambda n: nonce)
    fields = _lp(purpose.encode("ascii")) + _lp(key.encode("utf-8"))
    aad = b"hidb-seal-v1" + bytes([kid]) + fields
    sealed = s.seal(purpose, key, plaintext)
    assert sealed == bytes([kid]) + nonce + AESGCM(K1).encrypt(nonce, plaintext, aad)
    assert s.open(purpose, key, sealed) == plaintext
    assert s.index(purpose, key) == b64u_encode(hmac.digest(IDX, fields, "sha256"))


def test_bad_purpose_or_key_is_refused_by_every_method() -> None:
    s = Sealer({1: K1}, 1, IDX)
    blob = s.seal("p", "k", b"x")
    bad: list[tuple[Any, Any, str]] = [
        ("Bad", "k", "purpose"), (1, "k", "purpose"), ("Bad", "", "purpose"),  # purpose first
        ("p", "", "store key"), ("p", "k" * 513, "store key"), ("p", None, "store key"),
    ]
    for purpose, key, what in bad:
        with pytest.raises(SealError, match=what):
            s.seal(purpose, key, b"")
        with pytest.raises(SealError, match=what):
            s.open(purpose, key, blob)
        with pytest.raises(SealError, match=what):
            s.index(purpose, key)
    assert s.open("p", "k" * 512, s.seal("p", "k" * 512, b"y")) == b"y"
