from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthid_broker.tenancy.errors import InvalidInput
from healthid_broker.tenancy.validation import (
    validate_base_url,
    validate_redirect_uri,
    validate_scopes,
    validate_short_key,
)

SHORT_KEY = re.compile(r"[a-z0-9-]{3,32}")
alphabet = st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-")


@given(st.text(alphabet, min_size=3, max_size=32))
def test_valid_short_keys_accepted(key: str) -> None:
    assert validate_short_key(key) == key


@given(st.text(max_size=40))
def test_short_key_accepted_iff_rule(key: str) -> None:
    ok = SHORT_KEY.fullmatch(key) is not None
    if ok:
        assert validate_short_key(key) == key
    else:
        with pytest.raises(InvalidInput):
            validate_short_key(key)


@pytest.mark.parametrize("key", ["ab", "a" * 33, "Acme", "a_b", "a b", "äbc", "abc/", ""])
def test_short_key_examples_rejected(key: str) -> None:
    with pytest.raises(InvalidInput):
        validate_short_key(key)


host = st.from_regex(r"[a-z][a-z0-9-]{0,20}(\.[a-z][a-z0-9-]{0,10}){1,3}", fullmatch=True)
path = st.from_regex(r"(/[A-Za-z0-9._~-]{0,12}){0,4}", fullmatch=True)
query = st.one_of(st.just(""), st.from_regex(r"\?[a-z]{1,8}=[a-z0-9]{0,8}", fullmatch=True))
port = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
loopback = st.sampled_from(["127.0.0.1", "localhost", "[::1]"])


@given(host, port, path, query)
def test_https_redirect_uris_accepted(h: str, p: str, pa: str, q: str) -> None:
    uri = f"https://{h}{p}{pa}{q}"
    assert validate_redirect_uri(uri) == uri


@given(loopback, port, path)
def test_http_loopback_accepted(h: str, p: str, pa: str) -> None:
    uri = f"http://{h}{p}{pa}"
    assert validate_redirect_uri(uri) == uri


@given(host, path)
def test_http_non_loopback_rejected(h: str, pa: str) -> None:
    with pytest.raises(InvalidInput, match="loopback"):
        validate_redirect_uri(f"http://{h}{pa}")


@given(host, path, st.text(max_size=10))
def test_fragment_rejected(h: str, pa: str, frag: str) -> None:
    with pytest.raises(InvalidInput):
        validate_redirect_uri(f"https://{h}{pa}#{frag}")


@given(st.text(max_size=60))
def test_arbitrary_text_never_crashes(text: str) -> None:
    try:
        out = validate_redirect_uri(text)
    except InvalidInput:
        return
    assert out == text
    assert out.startswith(("https://", "http://"))
    assert "#" not in out and " " not in out


@pytest.mark.parametrize(
    "uri",
    [
        "https://user@app.example/cb",
        "https:///cb",
        "ftp://app.example/cb",
        "com.example.app:/cb",
        "/relative/cb",
        "https://app.example/cb#",
        "https://app.example:99999/cb",
        "HTTPS://app.example/cb",
        "http://127.0.0.2/cb",
        "http://localhost.evil.example/cb",
    ],
)
def test_redirect_uri_examples_rejected(uri: str) -> None:
    with pytest.raises(InvalidInput):
        validate_redirect_uri(uri)


def test_scopes() -> None:
    assert validate_scopes(["openid", "urn:telematik:alter", "openid"]) == (
        "openid", "urn:telematik:alter",
    )
    with pytest.raises(InvalidInput, match="openid"):
        validate_scopes(["urn:telematik:alter"])
    with pytest.raises(InvalidInput, match="unknown scope"):
        validate_scopes(["openid", "profile"])
    with pytest.raises(InvalidInput, match="application's scopes"):
        validate_scopes(["openid", "urn:telematik:email"], ["openid"])


def test_base_url() -> None:
    assert validate_base_url("https://broker.example/") == "https://broker.example"
    assert validate_base_url("http://127.0.0.1:8443") == "http://127.0.0.1:8443"
    with pytest.raises(InvalidInput):
        validate_base_url("http://broker.example")
