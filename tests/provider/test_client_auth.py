"""Client authentication: client_secret_basic (RFC 6749 §2.3.1), private_key_jwt
(RFC 7523 §3, OIDC Core §9), none; one method only, no repeated parameters."""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker.crypto.jose import sign_jws
from healthid_broker.crypto.keys import signing_jwk
from healthid_broker.login import Sealer, memory_store
from healthid_broker.provider.client_auth import (
    JWT_BEARER,
    AuthenticatedClient,
    ClientAuthMethod,
    RegisteredClient,
    authenticate_client,
    parse_client_secret_basic,
    verify_client_assertion,
)
from healthid_broker.provider.errors import OAuthError

pytestmark = pytest.mark.anyio

ISSUER = "https://broker.example/app1"
TOKEN_EP = ISSUER + "/token"
NOW = 1_700_000_000.0
KEY = signing_jwk()
OTHER_KEY = signing_jwk()


def _basic(cid: str, secret: str) -> str:
    raw = f"{quote_plus(cid)}:{quote_plus(secret)}".encode()
    return "Basic " + base64.b64encode(raw).decode()


# --------------------------------------------------------------------------- basic parsing

creds = st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40)


@settings(deadline=None)
@given(creds, creds)
def test_basic_round_trip(cid: str, secret: str) -> None:
    assert parse_client_secret_basic(_basic(cid, secret)) == (cid, secret)


@settings(deadline=None)
@given(st.text(max_size=60))
def test_basic_never_crashes(header: str) -> None:
    try:
        cid, secret = parse_client_secret_basic(header)
    except OAuthError as e:
        assert e.error == "invalid_client" and e.status == 401
        assert "WWW-Authenticate" in e.headers()
    else:
        assert cid and secret


@pytest.mark.parametrize("header", [
    "Bearer abc",
    "Basic",
    "Basic !!!",
    "Basic " + base64.b64encode(b"no-colon").decode(),
    "Basic " + base64.b64encode(b"a:b:c").decode(),  # ambiguous: ':' must be %3A
    "Basic " + base64.b64encode(b":secret").decode(),
    "Basic " + base64.b64encode(b"id:").decode(),
    "Basic " + base64.b64encode(b"id:%ZZ%ff").decode(),
    "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
    "Basic " + base64.b64encode(b"id%0A:x").decode(),
    "Basic " + base64.b64encode(b"id:x").decode() + "\n",
])
def test_basic_refusals(header: str) -> None:
    with pytest.raises(OAuthError) as e:
        parse_client_secret_basic(header)
    assert e.value.error == "invalid_client"


def test_basic_scheme_case_insensitive_and_plus_is_space() -> None:
    raw = base64.b64encode(b"my+client:s%3Acret").decode()
    assert parse_client_secret_basic("bAsIc " + raw) == ("my client", "s:cret")


# --------------------------------------------------------------------------- fixtures

CLIENTS = {
    "basic-client": RegisteredClient("basic-client", ClientAuthMethod.CLIENT_SECRET_BASIC),
    "jwt-client": RegisteredClient("jwt-client", ClientAuthMethod.PRIVATE_KEY_JWT,
                                   (KEY.public(),)),
    "public-client": RegisteredClient("public-client", ClientAuthMethod.NONE),
}


async def lookup(cid: str) -> RegisteredClient | None:
    return CLIENTS.get(cid)


async def verify_secret(client: RegisteredClient, secret: str) -> bool:
    return client.client_id == "basic-client" and secret == "s3cr3t:with+specials"


def _assertion(key: Any = KEY, **over: Any) -> str:
    claims: dict[str, Any] = {
        "iss": "jwt-client", "sub": "jwt-client", "aud": TOKEN_EP, "exp": NOW + 60,
        "iat": NOW, "jti": str(uuid.uuid4()),
    }
    claims.update(over)
    return sign_jws({k: v for k, v in claims.items() if v is not None}, key)


def _store() -> Any:
    return memory_store(Sealer.generate())


async def _auth(authorization: list[str] | None = None, form: list[tuple[str, str]] | None = None,
                store: Any = None, now: float = NOW) -> AuthenticatedClient:
    return await authenticate_client(
        authorization=authorization or [], form=form or [], lookup=lookup,
        verify_secret=verify_secret, token_endpoint=TOKEN_EP, issuer=ISSUER, now=now,
        replay=store or _store(),
    )


async def _fails(match: str, **kw: Any) -> OAuthError:
    with pytest.raises(OAuthError, match=match) as e:
        await _auth(**kw)
    return e.value


def _jwt_form(assertion: str) -> list[tuple[str, str]]:
    return [("grant_type", "authorization_code"), ("client_assertion_type", JWT_BEARER),
            ("client_assertion", assertion)]


# --------------------------------------------------------------------------- methods


async def test_client_secret_basic() -> None:
    ok = await _auth([_basic("basic-client", "s3cr3t:with+specials")],
                     [("client_id", "basic-client")])
    assert ok.method is ClientAuthMethod.CLIENT_SECRET_BASIC and not ok.public
    e = await _fails("authentication failed", authorization=[_basic("basic-client", "wrong")])
    assert e.status == 401 and e.www_authenticate
    await _fails("authentication failed", authorization=[_basic("nobody", "x")])
    # a client registered for another method cannot use Basic
    await _fails("authentication failed", authorization=[_basic("jwt-client", "x")])
    await _fails("differs", authorization=[_basic("basic-client", "s3cr3t:with+specials")],
                 form=[("client_id", "public-client")])


async def test_private_key_jwt_good() -> None:
    ok = await _auth(form=_jwt_form(_assertion()))
    assert ok.method is ClientAuthMethod.PRIVATE_KEY_JWT and ok.client_id == "jwt-client"
    # aud may be the issuer, or a list containing one of them
    await _auth(form=_jwt_form(_assertion(aud=ISSUER)))
    await _auth(form=_jwt_form(_assertion(aud=["https://other", TOKEN_EP])))


@pytest.mark.parametrize(("over", "match"), [
    ({"aud": "https://other.example/token"}, "aud must contain"),
    ({"aud": ["https://a", "https://b"]}, "aud must contain"),
    ({"aud": None}, "aud must contain"),
    ({"exp": NOW - 31}, "expired"),
    ({"exp": None}, "needs exp"),
    ({"exp": "tomorrow"}, "exp must be a number"),
    ({"exp": NOW + 301, "iat": None}, "in the future and it has no iat"),
    ({"exp": NOW + 3600, "iat": NOW - 400}, "older than 300 s"),
    ({"nbf": NOW + 60}, "not valid yet"),
    ({"iat": NOW + 60}, "iat is in the future"),
    ({"jti": None}, "needs a jti"),
    ({"jti": ""}, "needs a jti"),
    ({"iss": "someone-else"}, "iss and sub"),
])
async def test_private_key_jwt_claim_refusals(over: dict[str, Any], match: str) -> None:
    e = await _fails(match, form=_jwt_form(_assertion(**over)))
    assert e.error == "invalid_client" and e.status == 401


async def test_private_key_jwt_long_exp_accepted_while_fresh() -> None:
    # Authlib's default: exp = iat + 3600. Usable for 300 s after iat, jti kept that long.
    store = _store()
    assertion = _assertion(exp=NOW + 3600, iat=NOW)
    await _auth(form=_jwt_form(assertion), store=store)
    await _fails("already used", form=_jwt_form(assertion), store=store, now=NOW + 200)
    await _fails("older than", form=_jwt_form(assertion), store=_store(), now=NOW + 400)


async def test_private_key_jwt_wrong_key() -> None:
    await _fails("does not verify", form=_jwt_form(_assertion(key=OTHER_KEY)))


async def test_private_key_jwt_replayed_jti() -> None:
    store = _store()
    assertion = _assertion()
    await _auth(form=_jwt_form(assertion), store=store)
    await _fails("already used", form=_jwt_form(assertion), store=store)
    # same jti in a fresh assertion is also a replay
    jti = "fixed-jti"
    await _auth(form=_jwt_form(_assertion(jti=jti)), store=store)
    await _fails("already used", form=_jwt_form(_assertion(jti=jti)), store=store)


async def test_private_key_jwt_other_refusals() -> None:
    await _fails("client_assertion_type", form=[("client_assertion", _assertion())])
    await _fails("missing", form=[("client_assertion_type", JWT_BEARER)])
    await _fails("ES256", form=_jwt_form("not.a.jwt"))
    rs = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJqd3QtY2xpZW50In0.c2ln"
    await _fails("ES256", form=_jwt_form(rs))
    await _fails("authentication failed",
                 form=_jwt_form(_assertion(iss="basic-client", sub="basic-client")))
    await _fails("differs", form=[*_jwt_form(_assertion()), ("client_id", "other")])


async def test_verify_client_assertion_rs256_message() -> None:
    rs = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJqd3QtY2xpZW50In0.c2ln"
    with pytest.raises(OAuthError, match="RS256"):
        await verify_client_assertion(rs, CLIENTS["jwt-client"], audiences=[TOKEN_EP],
                                      now=NOW, replay=_store())


async def test_none_for_public_clients() -> None:
    ok = await _auth(form=[("client_id", "public-client")])
    assert ok.public and ok.method is ClientAuthMethod.NONE
    await _fails("authentication failed", form=[("client_id", "basic-client")])
    await _fails("no client authentication", form=[])


async def test_one_method_and_no_repeats() -> None:
    basic = _basic("basic-client", "s3cr3t:with+specials")
    await _fails("exactly one", authorization=[basic], form=_jwt_form(_assertion()))
    await _fails("only one Authorization", authorization=[basic, basic])
    await _fails("repeated", form=[("client_id", "public-client"), ("client_id", "x")])
    await _fails("repeated", form=[*_jwt_form(_assertion()), ("client_assertion", "x")])
    await _fails("HTTP Basic", form=[("client_id", "basic-client"),
                                     ("client_secret", "s3cr3t:with+specials")])


async def test_messages_never_echo_credentials() -> None:
    secret = "very-secret-" + os.urandom(4).hex()
    e = await _fails("authentication failed", authorization=[_basic("basic-client", secret)])
    assert secret not in str(e) and "basic-client" not in str(e)
