"""The upstream room's opaque pending value: round trip, refusal of anything else, and an
upgrade fixture (a login started by this release must finish after the next one)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker.upstream.errors import AuthorizationResponseError
from healthid_broker.upstream.par import new_auth_secrets
from healthid_broker.upstream.pending import PendingLogin

IDP = "https://idp.example/kk"
REDIRECT = "https://broker.example/app1/callback"


def test_round_trip_and_secrets_hidden() -> None:
    s = new_auth_secrets()
    p = PendingLogin(IDP, s.nonce, s.code_verifier, REDIRECT)
    assert PendingLogin.decode(p.encode()) == p
    assert s.nonce not in repr(p) and s.code_verifier not in repr(p)
    assert s.state.encode() not in p.encode()  # the state is the store key, not inside


def test_upgrade_fixture_v1() -> None:
    """Format v1 as written by this release; a later release must still read it."""
    fixture = (b'{"v":1,"i":"https://idp.example/kk","n":"nonce-1","cv":"' + b"v" * 43
               + b'","r":"https://broker.example/app1/callback"}')
    assert PendingLogin.decode(fixture) == PendingLogin(IDP, "nonce-1", "v" * 43, REDIRECT)


@pytest.mark.parametrize("data", [
    b"", b"not json", b"[]", b'{"v":2,"i":"a","n":"b","cv":"' + b"v" * 43 + b'","r":"c"}',
    b'{"v":1,"i":"a","n":"b","cv":"' + b"v" * 43 + b'"}',
    b'{"v":1,"i":"a","n":"b","cv":"' + b"v" * 43 + b'","r":"c","x":1}',
    b'{"v":1,"i":"","n":"b","cv":"' + b"v" * 43 + b'","r":"c"}',
    b'{"v":1,"i":"a","n":1,"cv":"' + b"v" * 43 + b'","r":"c"}',
    b'{"v":1,"i":"a","n":"b","cv":"short","r":"c"}',
    b'{"v":1,"i":"a","n":"b","cv":"' + b"v" * 43 + b'","r":"c"}' + b" " * 5000,
])
def test_anything_else_is_refused(data: bytes) -> None:
    with pytest.raises(AuthorizationResponseError):
        PendingLogin.decode(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    try:
        PendingLogin.decode(data)
    except AuthorizationResponseError:
        pass
