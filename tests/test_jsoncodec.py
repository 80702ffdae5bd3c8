"""healthid_broker.jsoncodec against the standard library's json (hypothesis)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker import jsoncodec

# JSON values as a login carries them (no floats: their spelling may differ)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text())
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)
objects = st.dictionaries(st.text(), values, max_size=6)


def _std(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


@settings(max_examples=300)
@given(objects)
def test_dumps_is_byte_for_byte_the_standard_library(obj: dict[str, Any]) -> None:
    try:
        expected = _std(obj)
    except UnicodeEncodeError:  # lone surrogates: neither can encode them as UTF-8
        with pytest.raises((UnicodeEncodeError, TypeError)):
            jsoncodec.dumps(obj)
        return
    assert jsoncodec.dumps(obj) == expected


@given(st.dictionaries(st.text(max_size=5), st.floats(allow_nan=False, allow_infinity=False)))
def test_dumps_floats_mean_the_same(obj: dict[str, float]) -> None:
    assert json.loads(jsoncodec.dumps(obj)) == obj


def test_big_integers_take_the_standard_library_path() -> None:
    obj = {"n": 2**70, "m": -(2**64) - 1}
    assert jsoncodec.dumps(obj) == _std(obj)
    assert jsoncodec.loads(_std(obj)) == obj


@settings(max_examples=300)
@given(objects)
def test_loads_inverts_dumps(obj: dict[str, Any]) -> None:
    try:
        data = _std(obj)
    except UnicodeEncodeError:
        return
    assert jsoncodec.loads(data) == json.loads(data) == obj


@given(st.dictionaries(st.text(max_size=5), st.floats(allow_nan=False, allow_infinity=False)))
def test_loads_floats_like_the_standard_library(obj: dict[str, float]) -> None:
    data = json.dumps(obj).encode()
    assert jsoncodec.loads(data) == json.loads(data)


@settings(max_examples=500)
@given(st.one_of(st.binary(max_size=40), st.text(max_size=40).map(str.encode),
                 objects.map(lambda o: json.dumps(o).encode()[:-1])))
def test_loads_accepts_and_refuses_what_the_standard_library_does(data: bytes) -> None:
    try:
        expected: Any = json.loads(data)
        std_ok = True
    except (ValueError, UnicodeDecodeError):
        std_ok = False
    if std_ok and _has_non_finite(expected):
        std_ok = False  # refused on purpose: NaN / Infinity are not JSON
    if std_ok:
        assert jsoncodec.loads(data) == expected
    else:
        with pytest.raises((ValueError, UnicodeDecodeError)):
            jsoncodec.loads(data)


@pytest.mark.parametrize("text", ["NaN", "[Infinity]", '{"a":-Infinity}'])
def test_non_json_literals_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        jsoncodec.loads(text.encode())


def test_utf16_input_like_the_standard_library() -> None:
    data = json.dumps({"a": "ä"}).encode("utf-16")
    assert jsoncodec.loads(data) == json.loads(data) == {"a": "ä"}


def _has_non_finite(v: Any) -> bool:
    if isinstance(v, float):
        return not math.isfinite(v)
    if isinstance(v, list):
        return any(_has_non_finite(x) for x in v)
    if isinstance(v, dict):
        return any(_has_non_finite(x) for x in v.values())
    return False


def test_big_integer_deep_inside_is_exact() -> None:
    data = b'{"a":[1.5,{"b":[123456789012345678901234]}],"c":"1234567890123456789"}'
    assert jsoncodec.loads(data) == json.loads(data)
    assert jsoncodec.loads(data)["a"][1]["b"][0] == 123456789012345678901234


def test_deep_nesting_needs_no_recursion() -> None:
    data = "[" * 900 + "1.5" + "]" * 900
    assert jsoncodec.loads(data) == json.loads(data)
