"""The fast form codec agrees with the standard library on every input (hypothesis)."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthid_broker.http import forms

texts = st.text(max_size=40)
pairs = st.lists(st.tuples(texts, texts), max_size=8)


@given(texts)
def test_quote_plus_matches_stdlib(value: str) -> None:
    assert forms.quote_plus(value) == urllib.parse.quote_plus(value, safe="")


@given(pairs)
def test_urlencode_matches_stdlib_and_round_trips(items: list[tuple[str, str]]) -> None:
    encoded = forms.urlencode(items)
    assert encoded == urllib.parse.urlencode(items)
    assert forms.parse_qsl(encoded) == urllib.parse.parse_qsl(encoded, keep_blank_values=True)
    assert forms.parse_qsl(encoded) == items  # a round trip loses nothing


@given(st.text(alphabet="ab=&%+2Fé ;x0", max_size=60))
def test_parse_qsl_matches_stdlib_on_arbitrary_input(query: str) -> None:
    assert forms.parse_qsl(query) == urllib.parse.parse_qsl(query, keep_blank_values=True)


def test_strict_decoding_and_field_limit() -> None:
    with pytest.raises(UnicodeDecodeError):
        forms.parse_qsl("code=%ff%fe", errors="strict")
    with pytest.raises(ValueError):
        forms.parse_qsl("&".join(["a=1"] * 5), max_fields=4)
    assert forms.parse_qsl("a=1&a=2&b") == [("a", "1"), ("a", "2"), ("b", "")]


def test_urlencode_accepts_a_mapping() -> None:
    assert forms.urlencode({"redirect_uri": "https://a.example/cb?x=1", "scope": "openid x"}) \
        == "redirect_uri=https%3A%2F%2Fa.example%2Fcb%3Fx%3D1&scope=openid+x"


def test_quote_cache_stays_bounded_and_right() -> None:
    values = [f"urn:x:{i}/é" for i in range(3 * forms._QUOTED_MAX)]  # each one seen once
    for _ in range(2):
        for v in values:
            assert forms.quote_plus(v) == urllib.parse.quote_plus(v, safe="")
        assert forms.urlencode([(v, v) for v in values]) == urllib.parse.urlencode(
            [(v, v) for v in values])
    assert len(forms._QUOTED) <= forms._QUOTED_MAX
