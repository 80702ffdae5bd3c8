"""The login state machine: legal paths, illegal transitions, expiry, encoding."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker.login import (
    AppRequest,
    CodeIssued,
    CorruptTransaction,
    Finished,
    IllegalTransition,
    LoginState,
    Started,
    TransactionExpired,
    UpstreamPending,
    choose_idp,
    fail,
    issue_code,
    redeem,
    send_upstream,
    start,
)
from healthid_broker.login.transaction import FORMAT_VERSIONS, TRANSITIONS, decode, encode

IDP = "https://idp.example/kk"
APP = AppRequest(
    application="https://broker.example/app1",
    client_id="client-1",
    redirect_uri="https://app.example/cb",
    scopes=("openid", "urn:telematik:versicherter"),
    state="app-state",
    nonce="app-nonce",
    code_challenge="E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    code_challenge_method="S256",
    acr_values=("gematik-ehealth-loa-high",),
)


UPSTREAM = b'{"v":1,"opaque":"\x00\xff upstream value"}\x00\xff'


def _pending(now: float = 0.0) -> UpstreamPending:
    s = choose_idp(start(APP, txn_id="t1", now=now), IDP, now=now + 1)
    return send_upstream(s, upstream=UPSTREAM, now=now + 2)


def _code(now: float = 0.0) -> CodeIssued:
    return issue_code(
        _pending(now), subject="pairwise", claims={"urn:telematik:claims:id": "X123456789"},
        acr="gematik-ehealth-loa-high", amr=["urn:telematik:auth:eGK"], auth_time=3,
        now=now + 3,
    )


def test_happy_path_states_and_values() -> None:
    s = start(APP, txn_id="t1", now=0)
    assert s.state is LoginState.STARTED and s.state.value == "started"
    p = _pending()
    assert p.state.value == "upstream_pending" and p.idp == IDP
    assert p.upstream == UPSTREAM  # kept exactly as the upstream room gave it
    c = _code()
    assert c.state.value == "code_issued"
    assert c.deadline == 63  # code lives ≤ 60 s from issue
    assert c.client_id == APP.client_id and c.nonce == APP.nonce
    done = redeem(c, now=10)
    assert done == Finished("t1", LoginState.REDEEMED)
    assert done.state.terminal


def test_stable_state_values() -> None:
    # These strings are inside sealed entries in flight; changing them breaks logins.
    assert [s.value for s in LoginState] == [
        "started", "upstream_pending", "code_issued", "redeemed", "failed",
    ]


def test_upstream_needs_an_idp_and_the_upstream_value() -> None:
    s = start(APP, txn_id="t1", now=0)
    with pytest.raises(IllegalTransition, match="no IdP"):
        send_upstream(s, upstream=UPSTREAM, now=1)
    with pytest.raises(IllegalTransition, match="pending value"):
        send_upstream(start(APP, txn_id="t1", now=0, idp=IDP), upstream=b"", now=1)
    with pytest.raises(IllegalTransition, match="an IdP entity id"):
        choose_idp(s, "", now=1)
    # the IdP comes from the chooser or from idp_hint at start
    assert send_upstream(start(APP, txn_id="t1", now=0, idp=IDP), upstream=UPSTREAM,
                         now=1).idp == IDP


def test_deadline_enforced() -> None:
    s = start(APP, txn_id="t1", now=0)
    with pytest.raises(TransactionExpired):
        choose_idp(s, IDP, now=600)
    with pytest.raises(TransactionExpired):
        redeem(_code(), now=63)
    with pytest.raises(TransactionExpired):
        send_upstream(choose_idp(s, IDP, now=1), upstream=UPSTREAM, now=600)
    with pytest.raises(TransactionExpired):
        issue_code(_pending(), subject="s", claims={}, acr=None, amr=[], auth_time=None,
                   now=600)
    with pytest.raises(IllegalTransition):
        start(APP, txn_id="t", now=0, lifetime=601)


def test_secrets_not_in_repr() -> None:
    text = repr(_code()) + repr(_pending())
    for secret in ("X123456789", "pairwise", "app-nonce", "app-state", "opaque"):
        assert secret not in text


# --------------------------------------------------------------------------- sequences

EVENTS = ["choose_idp", "send_upstream", "issue_code", "redeem", "fail"]
TARGET = {
    "choose_idp": LoginState.STARTED,
    "send_upstream": LoginState.UPSTREAM_PENDING,
    "issue_code": LoginState.CODE_ISSUED,
    "redeem": LoginState.REDEEMED,
    "fail": LoginState.FAILED,
}


def _apply(txn: Any, event: str, now: float) -> Any:
    if event == "choose_idp":
        return choose_idp(txn, IDP, now=now)
    if event == "send_upstream":
        return send_upstream(txn, upstream=UPSTREAM, now=now)
    if event == "issue_code":
        return issue_code(txn, subject="s", claims={}, acr=None, amr=[], auth_time=None,
                          now=now)
    if event == "redeem":
        return redeem(txn, now=now)
    assert event == "fail"
    return fail(txn, "access_denied")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(EVENTS), min_size=1, max_size=8))
def test_any_event_sequence_follows_the_table(events: list[str]) -> None:
    """Each event either succeeds exactly when the table allows it, or raises."""
    txn: Any = start(APP, txn_id="t1", now=0, idp=IDP)
    for i, event in enumerate(events):
        src: LoginState = txn.state
        legal = TARGET[event] in TRANSITIONS[src]
        if legal:
            txn = _apply(txn, event, now=i)
            assert txn.state is TARGET[event]
        else:
            with pytest.raises(IllegalTransition):
                _apply(txn, event, now=i)
        if txn.state.terminal:
            # nothing leaves a terminal state
            for other in EVENTS:
                with pytest.raises(IllegalTransition):
                    _apply(txn, other, now=i)
            break


def test_terminal_states_have_no_exits() -> None:
    for s in LoginState:
        assert (not TRANSITIONS[s]) == s.terminal


# --------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("make", [lambda: start(APP, txn_id="t1", now=0), _pending, _code])
def test_encode_decode_round_trip(make: Any) -> None:
    txn = make()
    assert decode(encode(txn), type(txn)) == txn


def test_decode_refuses_other_state_and_garbage() -> None:
    data = encode(_pending())
    with pytest.raises(CorruptTransaction, match="expected 'code_issued'"):
        decode(data, CodeIssued)
    for bad in (b"not json", b"[]", b'{"v":2,"s":"started"}', b'{"v":1,"s":"started"}',
                b'{"v":1,"s":"started","id":1,"t0":0,"dl":1,"app":{}}'):
        with pytest.raises(CorruptTransaction):
            decode(bad, Started)
    extra = encode(start(APP, txn_id="t1", now=0))[:-1] + b',"zz":1}'
    with pytest.raises(CorruptTransaction, match="unknown members"):
        decode(extra, Started)


def test_upgrade_fixture_v1_started_still_decodes() -> None:
    """A STARTED entry as written by format v1; a future change must keep it readable."""
    fixture = (
        b'{"id":"t1","t0":0,"dl":600.0,"app":{"a":"https://b/x","c":"cid",'
        b'"r":"https://app/cb","sc":["openid"],"st":"s","n":"n","cc":"' + b"c" * 43
        + b'","cm":"S256"},"v":1,"s":"started"}'
    )
    txn = decode(fixture, Started)
    assert txn.app.client_id == "cid" and txn.app.scopes == ("openid",) and txn.idp is None


def test_upgrade_fixture_v1_code_issued_still_decodes() -> None:
    """A CODE_ISSUED entry as written by format v1 (unchanged): an app redeeming its code
    across an upgrade still gets its ID token."""
    fixture = (
        b'{"id":"t1","t0":0,"dl":60.0,"a":"https://b/x","c":"cid","r":"https://app/cb",'
        b'"n":"n","sc":["openid"],"idp":"https://idp.example/kk","sub":"pairwise",'
        b'"cl":{"urn:telematik:claims:id":"X123456789"},"acr":"gematik-ehealth-loa-high",'
        b'"amr":["urn:telematik:auth:eGK"],"at":3,"v":1,"s":"code_issued"}'
    )
    txn = decode(fixture, CodeIssued)
    assert txn.subject == "pairwise" and txn.claims == {"urn:telematik:claims:id": "X123456789"}
    assert txn.code_challenge is None and txn.auth_time == 3


V1_UPSTREAM_PENDING = (
    b'{"id":"t1","t0":0,"dl":600.0,"app":{"a":"https://b/x","c":"cid","r":"https://app/cb",'
    b'"sc":["openid"]},"idp":"https://idp.example/kk","us":"state","un":"nonce",'
    b'"uv":"' + b"v" * 43 + b'","ur":"https://b/x/callback","v":1,"s":"upstream_pending"}'
)
"""An UPSTREAM_PENDING entry of format v1, which held the upstream values one by one."""


def test_upgrade_fixture_v1_upstream_pending_is_refused_clearly() -> None:
    """A login at the IdP during an upgrade: its v1 entry is refused as corrupt with a
    message an operator understands (the store reads it as absent; the person is asked to
    start again — tests/provider/test_provider_callback.py)."""
    with pytest.raises(CorruptTransaction, match="format version 1, this release reads 2"):
        decode(V1_UPSTREAM_PENDING, UpstreamPending)


def test_format_versions_are_written() -> None:
    for txn in (start(APP, txn_id="t1", now=0), _pending(), _code()):
        assert f'"v":{FORMAT_VERSIONS[type(txn)]}'.encode() in encode(txn)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=600))
def test_opaque_upstream_value_round_trips_exactly(value: bytes) -> None:
    p = send_upstream(start(APP, txn_id="t1", now=0, idp=IDP), upstream=value, now=1)
    assert decode(encode(p), UpstreamPending).upstream == value


def test_decode_refuses_a_broken_upstream_value() -> None:
    good = encode(_pending())
    for bad in (b'"up":1', b'"up":"***"'):
        data = good.replace(b'"up":"', bad + b',"zz":"', 1)
        with pytest.raises(CorruptTransaction):
            decode(data, UpstreamPending)
    data = good.replace(b'"up":"', b'"up":"!', 1)
    with pytest.raises(CorruptTransaction, match="base64url"):
        decode(data, UpstreamPending)
