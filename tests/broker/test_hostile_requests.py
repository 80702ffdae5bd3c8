"""No input makes the broker answer 5xx (T-27): hostile paths, queries, headers and bodies
at every public endpoint of the running demo broker, sent over a raw socket (hypothesis);
and the cases that did — empty or over-long ``state``/``tx``/``code`` values, deeply
nested JSON in a ``client_assertion`` — each with its OAuth error or a 400 page."""

from __future__ import annotations

import base64
import json
import socket
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from e2e.harness import DemoThread

from .broker_checks import assert_clean, token

pytestmark = pytest.mark.slow

ENDPOINTS = ("authorize", "authorize/choose", "callback", "token",
             ".well-known/openid-federation", ".well-known/openid-configuration", "jwks", "idps")
NAMES = ("client_id", "redirect_uri", "response_type", "scope", "state", "nonce",
         "code_challenge", "code_challenge_method", "prompt", "acr_values", "response_mode",
         "request", "request_uri", "ui_locales", "lang", "tx", "idp", "code", "error", "iss",
         "grant_type", "code_verifier", "client_assertion", "client_assertion_type")
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _nested(depth: int) -> bytes:
    """A JSON object with ``depth`` nested arrays inside (two bytes a level)."""
    return b'{"a":' + b"[" * depth + b"]" * depth + b"}"


def _assertion(header: bytes, payload: bytes) -> str:
    return f"{_b64(header)}.{_b64(payload)}.{_b64(b'sig')}"


def _address(demo: DemoThread) -> tuple[str, int]:
    u = urlsplit(demo.info["broker_browser_base"])
    assert u.hostname is not None and u.port is not None
    return u.hostname, u.port


def _send(demo: DemoThread, raw: bytes) -> bytes:
    """One request on its own connection; the answer's head and (some of) its body."""
    with socket.create_connection(_address(demo), timeout=10) as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < 4096:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:60]
    return int(answer[9:12])


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_value = st.one_of(
    _text, st.just(""), st.text("a", min_size=513, max_size=3000),
    st.sampled_from(["openid", "code", "S256", "none", "de", "en", "%ff", "\x00", "a" * 1025]),
)


@st.composite
def _params(draw: Any, demo: DemoThread) -> list[tuple[str, str]]:
    info = demo.info
    names = st.one_of(st.sampled_from(NAMES), _text)
    pairs = draw(st.lists(st.tuples(names, _value), max_size=8))
    if draw(st.booleans()):  # a known client, to get past the first checks
        pairs += [("client_id", info["client_id"]), ("redirect_uri", info["redirect_uri"]),
                  ("response_type", "code"), ("scope", "openid urn:telematik:versicherter")]
    if draw(st.booleans()):
        depth = draw(st.integers(1, 3000))
        pairs += [("client_assertion_type", JWT_BEARER),
                  ("client_assertion", _assertion(_nested(depth), _nested(depth)))]
    return pairs


def _encode(pairs: list[tuple[str, str]], raw: bool) -> bytes:
    if raw:  # unencoded UTF-8 where a client would have escaped it
        return "&".join(f"{k}={v}" for k, v in pairs).encode("utf-8", "surrogatepass")
    return "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs).encode()


_CTYPES = st.sampled_from([
    b"application/x-www-form-urlencoded", b"application/x-www-form-urlencoded; charset=utf-8",
    b"multipart/form-data; boundary=x", b"application/json", b"text/plain", b"", b"\x01",
    b"application/x-www-form-urlencoded; charset=latin-1", b"*/*"])
_HEADER_VALUE = st.binary(max_size=60).map(
    lambda b: bytes(c for c in b if c not in b"\r\n\x00").strip())


@st.composite
def _request(draw: Any, demo: DemoThread) -> bytes:
    method = draw(st.sampled_from([b"GET", b"POST", b"HEAD", b"PUT", b"OPTIONS", b"DELETE"]))
    key = draw(st.sampled_from(["demo", "demo", "nope", "static", "x" * 300, "%2e%2e", "d%00"]))
    endpoint = draw(st.sampled_from(ENDPOINTS))
    path = draw(st.sampled_from([f"/{key}/{endpoint}", f"/{key}/{endpoint}/",
                                 f"//{endpoint}", "/healthz", "/static/broker.css",
                                 "/static/%2e%2e/broker_app.py", f"/{key}/{endpoint}%00"]))
    raw_encoding = draw(st.booleans())
    query = _encode(draw(_params(demo)), raw_encoding and draw(st.booleans()))
    target = path.encode() + (b"?" + query if query else b"")
    headers = [b"Host: " + _address(demo)[0].encode()]
    body = b""
    if method in (b"POST", b"PUT") or draw(st.booleans()):
        body = _encode(draw(_params(demo)), raw_encoding)
        ctype = draw(_CTYPES)
        if ctype:
            headers.append(b"Content-Type: " + ctype)
        headers.append(b"Content-Length: %d" % len(body))
    if draw(st.booleans()):
        headers.append(b"Accept: " + draw(st.sampled_from(
            [b"application/json", b"text/html", b"*/*", b""])))
    if draw(st.booleans()):
        headers.append(b"Accept-Language: " + draw(_HEADER_VALUE))
    if draw(st.booleans()):
        creds = draw(st.one_of(_text.map(lambda t: base64.b64encode(t.encode()).decode()),
                               st.sampled_from(["!!!", "", "Og==", "YTpi"])))
        headers.append(b"Authorization: " + draw(st.sampled_from([b"Basic ", b"Bearer ", b""]))
                       + creds.encode())
    if draw(st.booleans()):
        headers.append(b"X-" + draw(st.sampled_from([b"A", b"Forwarded-For", b"Long"])) + b": "
                       + draw(_HEADER_VALUE))
    headers.append(b"Connection: close")
    return method + b" " + target + b" HTTP/1.1\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" \
        + body


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_property_no_5xx_at_any_public_endpoint(demo: DemoThread, data: st.DataObject) -> None:
    """Whatever arrives, the answer is below 500 and shows no stack trace or personal data.
    (``idp_hint``/``idp`` naming an IdP outside the federation is left out: the broker
    deliberately answers that with a 502 "insurer not reachable" page, see
    test_broker_authorize_errors.py.)"""
    raw = data.draw(_request(demo))
    answer = _send(demo, raw)
    status = _status(answer)
    assert status < 500, (status, raw[:300])
    assert_clean(answer.decode("latin-1"))


# ---------------------------------------------------------------- the cases that did 5xx


def test_deeply_nested_json_in_a_client_assertion_is_invalid_client(demo: DemoThread) -> None:
    for depth in (500, 3000):
        deep = _nested(depth)
        for header, payload in ((deep, b"{}"), (b'{"alg":"ES256"}', deep)):
            r = token(demo, {"grant_type": "authorization_code", "code": "c",
                             "redirect_uri": demo.info["redirect_uri"],
                             "client_id": demo.info["client_id"],
                             "client_assertion_type": JWT_BEARER,
                             "client_assertion": _assertion(header, payload)}, auth=False)
            assert r.status_code in (400, 401), r.text
            assert r.json()["error"] in ("invalid_client", "invalid_request")
            assert_clean(r.text)


@pytest.mark.parametrize("code", ["", "c" * 513, "c" * 5000, "\u00e4" * 600])
def test_empty_or_over_long_codes_are_invalid_grant_or_request(demo: DemoThread,
                                                                code: str) -> None:
    r = token(demo, {"grant_type": "authorization_code", "code": code,
                     "redirect_uri": demo.info["redirect_uri"]})
    assert r.status_code == 400, r.text
    assert r.json()["error"] in ("invalid_grant", "invalid_request")


@pytest.mark.parametrize("tx", ["", "t" * 513, "t" * 5000])
def test_empty_or_over_long_tx_at_the_chooser_is_a_400_page(demo: DemoThread, tx: str) -> None:
    r = httpx.post(f"{demo.info['broker_browser_base']}/demo/authorize/choose",
                   data={"tx": tx, "idp": demo.idp("nordkasse")})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/html")
    assert_clean(r.text)


@pytest.mark.parametrize("state", ["", "s" * 513, "s" * 5000])
def test_empty_or_over_long_state_at_the_callback_is_a_400_page(demo: DemoThread,
                                                                 state: str) -> None:
    r = httpx.get(f"{demo.info['broker_browser_base']}/demo/callback",
                  params={"state": state, "code": "c"})
    assert r.status_code == 400
    assert r.headers["content-type"].startswith("text/html")
    assert_clean(r.text)


@pytest.mark.parametrize("body", [
    json.dumps({"grant_type": "authorization_code"}).encode(), b"\xff\xfe", b"a=%zz&b",
])
@pytest.mark.parametrize("ctype", ["application/json", "text/plain; charset=x",
                                   "application/x-www-form-urlencoded"])
def test_odd_bodies_at_the_token_endpoint(demo: DemoThread, body: bytes, ctype: str) -> None:
    r = token(demo, content=body, headers={"content-type": ctype})
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"] in ("invalid_request", "invalid_client", "unsupported_grant_type")
