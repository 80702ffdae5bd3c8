"""PAR (RFC 9126, A_23030, A_23500), front channel, and the token request over mTLS."""

from __future__ import annotations

import hashlib
import os
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthid_broker.crypto.jose import b64u_encode
from healthid_broker.crypto.keys import (
    cert_pem,
    new_ec_key,
    private_key_pem,
    self_signed_client_cert,
)
from healthid_broker.http import ClientIdentity, HttpResponse
from healthid_broker.http.testing import Request, RoutingClient, json_response
from healthid_broker.upstream.errors import ParError, TokenError
from healthid_broker.upstream.par import (
    ACR_HIGH,
    AuthSecrets,
    ParRequest,
    authorization_redirect_url,
    new_auth_secrets,
    pkce_challenge,
    push_authorization_request,
)
from healthid_broker.upstream.token import redeem_code

from .helpers import RP

PAR_URL = "https://mtls.idp.example/PAR_Auth"
TOKEN_URL = "https://mtls.idp.example/token"
REDIRECT = f"{RP}/callback"
SCOPE = "openid urn:telematik:versicherter urn:telematik:geburtsdatum"


def _identity() -> ClientIdentity:
    key = new_ec_key()
    return ClientIdentity(cert_pem(self_signed_client_cert(key, RP)), private_key_pem(key))


RP_IDENTITY = _identity()


def counter_random() -> Any:
    n = 0

    def rnd(k: int) -> bytes:
        nonlocal n
        n += 1
        return bytes([n]) * k

    return rnd


def secrets_() -> AuthSecrets:
    return new_auth_secrets(counter_random())


def par_request(**over: Any) -> ParRequest:
    kw: dict[str, Any] = {
        "endpoint": PAR_URL, "client_id": RP, "redirect_uri": REDIRECT, "scope": SCOPE,
        "acr_values": ACR_HIGH, "auth": secrets_(),
    }
    kw.update(over)
    return ParRequest.build(**kw)


def created(req: Request) -> HttpResponse:
    return json_response(
        {"request_uri": f"urn:{RP}:{'ab' * 16}", "expires_in": 90}, status=201)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


# ------------------------------------------------------------------ secrets / PKCE


def test_auth_secrets_from_injected_randomness() -> None:
    s = secrets_()
    assert s.state == b64u_encode(b"\x01" * 32)
    assert s.nonce == b64u_encode(b"\x02" * 32)
    assert s.code_verifier == b64u_encode(b"\x03" * 32)
    assert len(s.code_challenge) == 43
    assert s.code_challenge == b64u_encode(hashlib.sha256(s.code_verifier.encode()).digest())
    assert s.state not in repr(s)


def test_auth_secrets_default_randomness_differs() -> None:
    a, b = new_auth_secrets(), new_auth_secrets()
    assert len({a.state, a.nonce, a.code_verifier, b.state}) == 4


def test_default_secrets_are_one_urandom_call_sliced(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def urandom(n: int) -> bytes:
        calls.append(n)
        return bytes(range(n))

    monkeypatch.setattr(os, "urandom", urandom)
    s = new_auth_secrets()
    assert calls == [96]
    assert (s.state, s.nonce, s.code_verifier) == tuple(
        b64u_encode(bytes(range(i, i + 32))) for i in (0, 32, 64))


def test_random_source_length_checked() -> None:
    with pytest.raises(ValueError):
        new_auth_secrets(lambda n: b"x")


def test_pkce_rfc7636_appendix_b_vector() -> None:
    assert pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == \
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@given(st.binary(min_size=32, max_size=32))
def test_pkce_challenge_always_43(raw: bytes) -> None:
    assert len(pkce_challenge(b64u_encode(raw))) == 43


def test_pkce_rejects_short_verifier() -> None:
    with pytest.raises(ValueError):
        pkce_challenge("short")


# ------------------------------------------------------------------ PAR


@pytest.mark.anyio
async def test_par_fields_exactly_and_mtls_identity() -> None:
    http = RoutingClient()
    http.add(PAR_URL, created)
    req = par_request()
    resp = await push_authorization_request(http, req, RP_IDENTITY)
    assert resp.request_uri.startswith(f"urn:{RP}:") and resp.expires_in == 90
    (call,) = http.calls
    assert call.method == "POST" and call.identity is RP_IDENTITY
    s = secrets_()
    assert call.form == {
        "client_id": RP,
        "response_type": "code",
        "state": s.state,
        "nonce": s.nonce,
        "redirect_uri": REDIRECT,
        "code_challenge": s.code_challenge,
        "code_challenge_method": "S256",
        "scope": SCOPE,
        "acr_values": ACR_HIGH,
    }


@pytest.mark.anyio
async def test_par_forced_reauthentication_adds_prompt_max_age() -> None:
    http = RoutingClient()
    http.add(PAR_URL, created)
    await push_authorization_request(http, par_request(prompt="login", max_age=0), RP_IDENTITY)
    assert http.calls[0].form["prompt"] == "login" and http.calls[0].form["max_age"] == "0"


@pytest.mark.anyio
async def test_par_401_retried_once_on_first_par() -> None:
    answers = [json_response({"error": "invalid_client"}, 401), None]

    def handler(req: Request) -> HttpResponse:
        a = answers.pop(0)
        return a if a is not None else created(req)

    http = RoutingClient()
    http.add(PAR_URL, handler)
    sleeps = Sleeps()
    resp = await push_authorization_request(http, par_request(), RP_IDENTITY,
                                            retry_pause=0.25, sleep=sleeps)
    assert resp.expires_in == 90
    assert http.count(PAR_URL) == 2 and sleeps.calls == [0.25]
    assert http.calls[0].form == http.calls[1].form


@pytest.mark.anyio
async def test_par_401_retried_only_once() -> None:
    http = RoutingClient()
    http.add(PAR_URL, json_response({"error": "unauthorized_client"}, 401))
    sleeps = Sleeps()
    with pytest.raises(ParError) as ei:
        await push_authorization_request(http, par_request(), RP_IDENTITY, sleep=sleeps)
    assert http.count(PAR_URL) == 2 and len(sleeps.calls) == 1
    assert ei.value.status == 401 and ei.value.oauth_error == "unauthorized_client"


@pytest.mark.anyio
async def test_par_401_not_retried_when_not_first() -> None:
    http = RoutingClient()
    http.add(PAR_URL, json_response({"error": "invalid_client"}, 401))
    sleeps = Sleeps()
    with pytest.raises(ParError):
        await push_authorization_request(http, par_request(), RP_IDENTITY,
                                         first_par=False, sleep=sleeps)
    assert http.count(PAR_URL) == 1 and sleeps.calls == []


@pytest.mark.anyio
async def test_par_400_mapped_and_sanitised() -> None:
    http = RoutingClient()
    http.add(PAR_URL, json_response(
        {"error": "invalid_scope", "error_description": "bad\nscope " + "x" * 5000}, 400))
    sleeps = Sleeps()
    with pytest.raises(ParError) as ei:
        await push_authorization_request(http, par_request(), RP_IDENTITY, sleep=sleeps)
    err = ei.value
    assert err.oauth_error == "invalid_scope" and err.status == 400
    assert "\n" not in str(err) and len(str(err)) < 400
    assert http.count(PAR_URL) == 1 and sleeps.calls == []


@pytest.mark.anyio
async def test_par_error_with_garbage_code() -> None:
    http = RoutingClient()
    http.add(PAR_URL, json_response({"error": "bad code with spaces\u2028"}, 400))
    with pytest.raises(ParError) as ei:
        await push_authorization_request(http, par_request(), RP_IDENTITY)
    assert ei.value.oauth_error is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    "response",
    [
        HttpResponse(201, {}, b"not json"),
        json_response([], 201),
        json_response({"expires_in": 90}, 201),
        json_response({"request_uri": "", "expires_in": 90}, 201),
        json_response({"request_uri": "urn:a b", "expires_in": 90}, 201),
        json_response({"request_uri": "urn:x", "expires_in": "90"}, 201),
        json_response({"request_uri": "urn:x", "expires_in": True}, 201),
        json_response({"request_uri": "urn:x", "expires_in": 0}, 201),
        json_response({"request_uri": "urn:x"}, 201),
        json_response({"request_uri": "urn:x", "expires_in": 90}, 200),
        json_response({"request_uri": 7, "expires_in": 90}, 201),
    ],
)
async def test_par_malformed_201_rejected(response: HttpResponse) -> None:
    http = RoutingClient()
    http.add(PAR_URL, response)
    with pytest.raises(ParError):
        await push_authorization_request(http, par_request(), RP_IDENTITY)


@pytest.mark.anyio
async def test_par_transport_error() -> None:
    with pytest.raises(ParError, match="unreachable"):
        await push_authorization_request(RoutingClient(), par_request(), RP_IDENTITY)


@pytest.mark.parametrize(
    "over",
    [
        {"scope": "urn:telematik:versicherter"},
        {"acr_values": "gematik-ehealth-loa-low"},
        {"endpoint": "http://idp.example/par"},
    ],
)
def test_par_request_refuses_bad_input(over: dict[str, Any]) -> None:
    with pytest.raises(ParError):
        par_request(**over)


def test_authorization_redirect_url() -> None:
    url = authorization_redirect_url("https://idp.example/auth", RP, "urn:x:1")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "idp.example", "/auth")
    assert parse_qs(parts.query) == {"client_id": [RP], "request_uri": ["urn:x:1"]}
    url2 = authorization_redirect_url("https://idp.example/auth?lang=de", RP, "urn:x:1")
    assert parse_qs(urlsplit(url2).query)["lang"] == ["de"]
    with pytest.raises(ParError):
        authorization_redirect_url("javascript:alert(1)", RP, "urn:x:1")


def test_authorization_redirect_url_loopback_http_only_when_allowed() -> None:
    for url in ("http://127.0.0.1:8443/auth", "http://localhost/auth", "http://[::1]:9/a"):
        with pytest.raises(ParError):
            authorization_redirect_url(url, RP, "urn:x:1")
        assert authorization_redirect_url(url, RP, "urn:x:1", allow_loopback_http=True)
    with pytest.raises(ParError):
        authorization_redirect_url("http://idp.example/auth", RP, "urn:x:1",
                                   allow_loopback_http=True)


# ------------------------------------------------------------------ token


async def _redeem(http: RoutingClient, **over: Any) -> Any:
    kw: dict[str, Any] = {
        "code": "code-1", "code_verifier": secrets_().code_verifier, "client_id": RP,
        "redirect_uri": REDIRECT, "identity": RP_IDENTITY,
    }
    kw.update(over)
    return await redeem_code(http, TOKEN_URL, **kw)


@pytest.mark.anyio
async def test_token_request_fields_and_mtls() -> None:
    http = RoutingClient()
    http.add(TOKEN_URL, json_response({"id_token": "a.b.c.d.e", "access_token": "at",
                                       "token_type": "Bearer", "expires_in": 300}))
    tr = await _redeem(http)
    assert tr.id_token == "a.b.c.d.e" and tr.expires_in == 300 and tr.token_type == "Bearer"
    assert "a.b.c.d.e" not in repr(tr)
    (call,) = http.calls
    assert call.identity is RP_IDENTITY
    assert call.form == {
        "grant_type": "authorization_code", "code": "code-1",
        "code_verifier": secrets_().code_verifier, "client_id": RP, "redirect_uri": REDIRECT,
    }


@pytest.mark.anyio
async def test_token_invalid_grant() -> None:
    http = RoutingClient()
    http.add(TOKEN_URL, json_response({"error": "invalid_grant",
                                       "error_description": "code reused"}, 400))
    with pytest.raises(TokenError) as ei:
        await _redeem(http)
    assert ei.value.oauth_error == "invalid_grant" and ei.value.status == 400


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        {"access_token": "at", "token_type": "Bearer"},
        {"id_token": "", "access_token": "at", "token_type": "Bearer"},
        {"id_token": "SECRET-IDT", "token_type": "Bearer"},
        {"id_token": "SECRET-IDT", "access_token": "at", "token_type": "mac"},
        {"id_token": "SECRET-IDT", "access_token": "at", "token_type": "Bearer",
         "expires_in": -1},
        ["not", "an", "object"],
    ],
)
async def test_token_malformed_200(body: Any) -> None:
    http = RoutingClient()
    http.add(TOKEN_URL, json_response(body))
    with pytest.raises(TokenError) as ei:
        await _redeem(http)
    assert "SECRET-IDT" not in str(ei.value)  # no token material echoed
    assert ei.value.status == 200


@pytest.mark.anyio
async def test_token_error_never_contains_id_token() -> None:
    secret = "eyJhbGciOiJFQ0RILUVTIn0.secret-id-token-material"
    http = RoutingClient()
    http.add(TOKEN_URL, json_response({"id_token": secret, "access_token": "at",
                                       "token_type": "weird"}))
    with pytest.raises(TokenError) as ei:
        await _redeem(http)
    assert "secret-id-token-material" not in str(ei.value)


@pytest.mark.anyio
async def test_token_non_json_and_transport() -> None:
    http = RoutingClient()
    http.add(TOKEN_URL, HttpResponse(200, {}, b"<html>"))
    with pytest.raises(TokenError, match="not JSON"):
        await _redeem(http)
    with pytest.raises(TokenError, match="unreachable"):
        await _redeem(RoutingClient())
    with pytest.raises(TokenError, match="no authorization code"):
        await _redeem(http, code="")
