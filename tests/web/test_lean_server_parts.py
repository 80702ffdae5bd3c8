"""Two shortcuts of the lean server checked against what they replace (hypothesis): the
request-target split against ``httptools.parse_url``, and the response-header check and
formatting against the regular expressions and per-header formatting it stands for."""

from __future__ import annotations

import re

import httptools
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker.web.lean_server import (
    _FRAMING,
    _fields,
    _Refused,
    _ResponseError,
    _split_target,
)

# plain target characters, the ones with a meaning, and some that parse_url refuses
_TARGET_BYTES = st.sampled_from(
    b"aZ09-._~!$&'()*+,;=:@/?%#[]\"<>\\^`{|} \t\x0c\x00\x7f\x80\xc3\xa4\xff")


def _parse_url(target: bytes) -> tuple[bytes, bytes] | None:
    try:
        url = httptools.parse_url(target)
    except httptools.HttpParserInvalidURLError:
        return None
    return url.path or b"/", url.query or b""


def _split(target: bytes) -> tuple[bytes, bytes] | None:
    try:
        return _split_target(target)
    except _Refused as refused:
        assert refused.status == 400
        return None


@settings(max_examples=2000)
@given(st.sampled_from([b"/", b"", b"*", b"http://h", b"https://u@h:8/", b"//", b"/a?"]),
       st.lists(_TARGET_BYTES, max_size=40).map(bytes))
def test_target_split_is_parse_url(prefix: bytes, rest: bytes) -> None:
    target = prefix + rest
    assert _split(target) == _parse_url(target), target


@pytest.mark.parametrize("target", [
    b"/" + bytes(range(0x21, 0x7F)), b"/?" + bytes(range(0x21, 0x7F)), b"/" + b"a?" * 4000])
def test_target_split_plain_and_long(target: bytes) -> None:
    assert _split(target) == _parse_url(target)


_BAD_NAME = re.compile(rb"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")  # RFC 9110 §5.6.2 token
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # no CR, LF, NUL or other controls
_NAMES = st.one_of(
    st.sampled_from([b"Content-Length", b"connection", b"DATE", b"transfer-encoding",
                     b"X-A", b"location", b""]),
    st.binary(max_size=6))
_VALUES = st.one_of(st.sampled_from([b"0", b"close", b"a b\tc", b"\xe4"]), st.binary(max_size=6))


@settings(max_examples=2000)
@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=5))
def test_header_fields_check_and_format(raw: list[tuple[bytes, bytes]]) -> None:
    valid = all(n for n, _ in raw) and not any(
        _BAD_NAME.search(n) or _BAD_VALUE.search(v) for n, v in raw)
    if not valid:
        with pytest.raises(_ResponseError):
            _fields(raw)
        return
    lines, framing = _fields(raw)
    lowered = [(n.lower(), v) for n, v in raw]
    assert lines == b"".join(b"%s: %s\r\n" % (n, v) for n, v in lowered if n not in _FRAMING)
    assert framing == [(n, v) for n, v in lowered if n in _FRAMING]
