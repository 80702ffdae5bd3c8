"""crypto.mac.HmacSha256 equals the standard library's HMAC (RFC 4231 vectors, hypothesis)."""

from __future__ import annotations

import hashlib
import hmac

from hypothesis import given
from hypothesis import strategies as st

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


def test_repr_hides_the_key() -> None:
    assert "secret" not in repr(HmacSha256(b"secret"))
