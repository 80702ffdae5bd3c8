from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthid_broker.tenancy.errors import InvalidInput
from healthid_broker.tenancy.validation import (
    loopback_any_port,
    validate_base_url,
    validate_redirect_uri,
    validate_redirect_uris,
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


# ---------------------------------------------------------------- native apps (RFC 8252)

reverse_domain = st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){1,3}",
                               fullmatch=True)


@given(reverse_domain, path.filter(lambda p: p.startswith("/") and not p.startswith("//")))
def test_private_use_scheme_accepted_for_public_clients(scheme: str, pa: str) -> None:
    uri = f"{scheme}:{pa}"
    assert validate_redirect_uri(uri, public=True) == uri
    with pytest.raises(InvalidInput, match="public clients"):
        validate_redirect_uri(uri)  # confidential
    with pytest.raises(InvalidInput, match="public clients"):
        validate_redirect_uris(["https://app.example/cb", uri])


@pytest.mark.parametrize("uri", [
    "myapp:/cb",  # not reverse-domain
    "com.example.app:cb",  # no path (RFC 8252 §7.1 form is scheme:/path)
    "com.example.app:",
    "com.example.app:///cb",
    "com.example.app://user@host/cb",
    "Com.Example.App:/cb",
    "com.example.app:/cb#frag",
    "javascript:/alert(1)",
    "data:/text",
    ".example.app:/cb",
    "com..app:/cb",
])
def test_private_use_scheme_rules(uri: str) -> None:
    with pytest.raises(InvalidInput):
        validate_redirect_uri(uri, public=True)


def test_private_use_refusal_says_why() -> None:
    with pytest.raises(InvalidInput) as exc:
        validate_redirect_uri("com.example.app:/callback")
    assert "native apps" in str(exc.value) and "https" in str(exc.value)


@given(st.sampled_from(["127.0.0.1", "[::1]"]), port, path, query)
def test_loopback_any_port_form(h: str, p: str, pa: str, q: str) -> None:
    uri = f"http://{h}{p}{pa}{q}"
    assert loopback_any_port(uri) == f"http://{h}{pa}{q}"


@pytest.mark.parametrize("uri", [
    "https://127.0.0.1:8443/cb",  # https: matched exactly
    "http://localhost:8080/cb",  # RFC 8252 §8.3: not the any-port rule
    "http://127.0.0.2:8080/cb",
    "http://user@127.0.0.1:8080/cb",
    "com.example.app:/cb",
    "http://127.0.0.1:99999/cb",
])
def test_loopback_any_port_only_for_loopback_ips(uri: str) -> None:
    assert loopback_any_port(uri) is None


@given(st.text(max_size=60))
def test_arbitrary_text_public_never_crashes(text: str) -> None:
    try:
        out = validate_redirect_uri(text, public=True)
    except InvalidInput:
        return
    assert out == text
    assert "#" not in out and " " not in out
    assert loopback_any_port(out) is None or out.startswith("http://")
