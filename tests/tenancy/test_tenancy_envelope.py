from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthid_broker.crypto.envelope import (
    DataKey,
    EnvelopeError,
    WrongKeyError,
    unwrap_data_key,
    wrap_data_key,
)
from healthid_broker.crypto.key_provider import (
    EnvKeyProvider,
    KeyProviderError,
    LocalFileKeyProvider,
    StaticKeyProvider,
    encode_kek,
    load_key_provider,
)

PROVIDER = StaticKeyProvider.generate()


@given(st.binary(max_size=2048), st.binary(max_size=64))
def test_seal_open_round_trip(data: bytes, aad: bytes) -> None:
    dek = DataKey.generate()
    blob = dek.seal(data, aad)
    assert data == dek.open(blob, aad)
    assert len(data) < 16 or data not in blob


@given(st.binary(min_size=1, max_size=256), st.data())
def test_any_bit_flip_is_detected(data: bytes, draw: st.DataObject) -> None:
    dek = DataKey.generate()
    blob = bytearray(dek.seal(data, b"ctx"))
    i = draw.draw(st.integers(0, len(blob) - 1))
    bit = draw.draw(st.integers(0, 7))
    blob[i] ^= 1 << bit
    with pytest.raises(EnvelopeError):
        dek.open(bytes(blob), b"ctx")


def test_wrong_aad_and_wrong_data_key_fail() -> None:
    dek = DataKey.generate()
    blob = dek.seal(b"secret", b"app-key|a")
    with pytest.raises(EnvelopeError):
        dek.open(blob, b"app-key|b")
    with pytest.raises(EnvelopeError):
        DataKey.generate().open(blob, b"app-key|a")
    with pytest.raises(EnvelopeError):
        dek.open(blob[:10], b"app-key|a")


def test_wrap_unwrap_round_trip_and_wrong_kek() -> None:
    dek = DataKey.generate()
    wrapped = wrap_data_key(PROVIDER, dek, "tenant|1")
    assert dek.raw() not in wrapped.blob
    again = unwrap_data_key(PROVIDER, wrapped, "tenant|1")
    assert again.open(dek.seal(b"x", b""), b"") == b"x"
    with pytest.raises(WrongKeyError, match="wrong key file"):
        unwrap_data_key(StaticKeyProvider.generate(), wrapped, "tenant|1")
    with pytest.raises(EnvelopeError):  # bound to its tenant
        unwrap_data_key(PROVIDER, wrapped, "tenant|2")
    tampered = type(wrapped)(wrapped.kek_id, wrapped.blob[:-1] + bytes([wrapped.blob[-1] ^ 1]))
    with pytest.raises(EnvelopeError):
        unwrap_data_key(PROVIDER, tampered, "tenant|1")


def test_repr_hides_key_material() -> None:
    dek = DataKey.generate()
    assert dek.raw().hex() not in repr(dek)
    assert "secret" in repr(dek)


def test_local_file_provider_generates_0600_and_reloads(tmp_path: Path) -> None:
    p1 = LocalFileKeyProvider.in_data_dir(tmp_path / "data")
    path = tmp_path / "data" / "kek.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    p2 = LocalFileKeyProvider.in_data_dir(tmp_path / "data")
    assert p1.kek_id == p2.kek_id
    wrapped = wrap_data_key(p1, DataKey.generate(), "t")
    unwrap_data_key(p2, wrapped, "t")
    os.chmod(path, 0o644)
    with pytest.raises(KeyProviderError, match="chmod 600"):
        LocalFileKeyProvider.in_data_dir(tmp_path / "data")


def test_local_file_provider_rejects_garbage(tmp_path: Path) -> None:
    path = tmp_path / "kek.key"
    path.write_text("dG9vc2hvcnQ\n")
    path.chmod(0o600)
    with pytest.raises(KeyProviderError, match="32 bytes"):
        LocalFileKeyProvider(path)
    with pytest.raises(KeyProviderError, match="does not exist"):
        LocalFileKeyProvider(tmp_path / "missing", create=False)


def test_env_provider() -> None:
    kek = os.urandom(32)
    p = EnvKeyProvider(environ={"HEALTHID_BROKER_KEK": encode_kek(kek)})
    assert p.kek_id == StaticKeyProvider(kek).kek_id
    with pytest.raises(KeyProviderError, match="not set"):
        EnvKeyProvider(environ={})
    q = load_key_provider("env:MY_KEK", "/nonexistent", environ={"MY_KEK": encode_kek(kek)})
    assert q.kek_id == p.kek_id
    with pytest.raises(KeyProviderError, match="PKCS#11"):
        load_key_provider("pkcs11:slot=0", "/nonexistent")
    with pytest.raises(KeyProviderError, match="unknown key provider"):
        load_key_provider("vault", "/nonexistent")
