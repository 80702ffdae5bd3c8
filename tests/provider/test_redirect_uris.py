"""Redirect URI matching at /authorize (RFC 9700 §4.1.3, RFC 8252 §7.1/§7.3) and the CORS
origins derived from the registrations (web/cors.py)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from healthid_broker.provider.directory import ClientConfig
from healthid_broker.provider.redirect_uris import redirect_uri_registered
from healthid_broker.web.cors import _match, origin_of


def _client(method: str, *uris: str) -> ClientConfig:
    return ClientConfig(client_id="c", auth_method=method, redirect_uris=frozenset(uris),
                        allowed_scopes=frozenset({"openid"}))


PUBLIC = _client("none", "http://127.0.0.1:8000/cb", "http://[::1]/cb", "com.example.app:/cb",
                 "http://localhost:9000/cb", "https://app.example/cb")
CONFIDENTIAL = _client("client_secret_basic", "http://127.0.0.1:8000/cb",
                       "com.example.app:/cb")  # the scheme: stored before the rule existed


@given(st.integers(1, 65535))
def test_public_loopback_ip_any_port(port: int) -> None:
    assert redirect_uri_registered(PUBLIC, f"http://127.0.0.1:{port}/cb")
    assert redirect_uri_registered(PUBLIC, f"http://[::1]:{port}/cb")
    assert not redirect_uri_registered(PUBLIC, f"http://127.0.0.1:{port}/cb2")
    assert not redirect_uri_registered(PUBLIC, f"http://127.0.0.1:{port}/cb?x=1")
    assert not redirect_uri_registered(PUBLIC, f"http://localhost:{port}/cb") or port == 9000
    assert not redirect_uri_registered(PUBLIC, f"https://app.example:{port}/cb")


@given(st.integers(1, 65535).filter(lambda p: p != 8000))
def test_confidential_exact_only(port: int) -> None:
    assert redirect_uri_registered(CONFIDENTIAL, "http://127.0.0.1:8000/cb")
    assert not redirect_uri_registered(CONFIDENTIAL, f"http://127.0.0.1:{port}/cb")
    assert not redirect_uri_registered(CONFIDENTIAL, "com.example.app:/cb")


def test_public_private_use_exact() -> None:
    assert redirect_uri_registered(PUBLIC, "com.example.app:/cb")
    assert not redirect_uri_registered(PUBLIC, "com.example.app:/cb/")
    assert not redirect_uri_registered(PUBLIC, "com.example.app://cb")


@given(st.text(max_size=80))
def test_hostile_redirect_uris_never_crash(uri: str) -> None:
    registered = redirect_uri_registered(PUBLIC, uri)
    assert not registered or uri in PUBLIC.redirect_uris or uri.startswith("http://")


def test_origin_of() -> None:
    assert origin_of("https://App.Example:443/cb?x") == "https://app.example"
    assert origin_of("https://app.example:8443/cb") == "https://app.example:8443"
    assert origin_of("http://127.0.0.1:80/cb") == "http://127.0.0.1"
    assert origin_of("http://[::1]:7000/cb") == "http://[::1]:7000"
    assert origin_of("com.example.app:/cb") is None
    assert origin_of("https://x.example:99999/cb") is None


def test_cors_paths() -> None:
    assert _match("/demo/token") == ("demo", ("POST",))
    assert _match("/demo/jwks") == ("demo", ("GET", "HEAD"))
    assert _match("/.well-known/oauth-authorization-server/demo") == ("demo", ("GET", "HEAD"))
    for path in ("/demo/authorize", "/demo/callback", "/demo/idps", "/demo/token/x",
                 "/static/x", "/demo/.well-known/openid-federation", "/Demo/token"):
        assert _match(path) is None
