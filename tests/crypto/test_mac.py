"""crypto.mac.HmacSha256 equals the standard library's HMAC (RFC 4231 vectors, hypothesis)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthid_broker.crypto import mac as mac_module
from healthid_broker.crypto.mac import HmacSha256


def test_rfc4231_test_case_2() -> None:
    mac = HmacSha256(b"Jefe")
    assert mac.digest(b"what do ya want for nothing?").hex() == (
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")


@given(st.binary(min_size=1, max_size=100), st.lists(st.binary(max_size=200), max_size=4))
def test_same_as_hmac_and_reusable(key: bytes, messages: list[bytes]) -> None:
    mac = HmacSha256(key)
    for m in messages:  # the keyed state is copied, never consumed
        assert mac.digest(m) == hmac.new(key, m, hashlib.sha256).digest()


# keys up to and beyond SHA-256's 64-byte block (longer keys are hashed first), empty included
@given(st.binary(max_size=200), st.lists(st.binary(max_size=300), max_size=4), st.booleans())
def test_same_as_hmac_digest_on_both_paths(key: bytes, messages: list[bytes],
                                           as_bytearray: bool) -> None:
    k: bytes = bytearray(key) if as_bytearray else key
    fast = HmacSha256(k)
    with pytest.MonkeyPatch.context() as mp:  # the fallback without _hashlib
        mp.setattr(mac_module, "_openssl_hmac_new", None)
        pure = HmacSha256(k)
    for m in messages:
        expected = hmac.digest(key, m, "sha256")
        assert fast.digest(m) == expected
        assert pure.digest(m) == expected


def test_keys_of_other_types_are_refused_as_before() -> None:
    for bad in ("secret", memoryview(b"secret"), None):
        with pytest.raises(TypeError):
            hmac.new(bad, digestmod=hashlib.sha256)  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            HmacSha256(bad)  # type: ignore[arg-type]


def test_repr_hides_the_key() -> None:
    assert "secret" not in repr(HmacSha256(b"secret"))


def test_uses_openssls_hmac_object_when_available() -> None:
    pytest.importorskip("_hashlib")
    assert type(HmacSha256(b"k")._keyed).__module__ == "_hashlib"
