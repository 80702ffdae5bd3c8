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
    expire,
    fail,
    issue_code,
    redeem,
    send_upstream,
    start,
)
from healthid_broker.login.transaction import TRANSITIONS, decode, encode

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


def _pending(now: float = 0.0) -> UpstreamPending:
    s = choose_idp(start(APP, txn_id="t1", now=now), IDP, now=now + 1)
    return send_upstream(
        s, upstream_state="us", upstream_nonce="un", upstream_code_verifier="v" * 43,
        upstream_redirect_uri="https://broker.example/app1/cb", now=now + 2,
    )


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
        "started", "upstream_pending", "code_issued", "redeemed", "failed", "expired",
    ]


def test_upstream_needs_an_idp_and_own_values() -> None:
    s = start(APP, txn_id="t1", now=0)
    with pytest.raises(IllegalTransition, match="no IdP"):
        send_upstream(s, upstream_state="us", upstream_nonce="un", upstream_code_verifier="v",
                      upstream_redirect_uri="x", now=1)
    with pytest.raises(IllegalTransition, match="reuse"):
        send_upstream(s, upstream_state="app-state", upstream_nonce="un",
                      upstream_code_verifier="v", upstream_redirect_uri="x", now=1, idp=IDP)
    with pytest.raises(IllegalTransition, match="reuse"):
        send_upstream(s, upstream_state="us", upstream_nonce="app-nonce",
                      upstream_code_verifier="v", upstream_redirect_uri="x", now=1, idp=IDP)


def test_deadline_enforced() -> None:
    s = start(APP, txn_id="t1", now=0)
    with pytest.raises(TransactionExpired):
        choose_idp(s, IDP, now=600)
    with pytest.raises(TransactionExpired):
        redeem(_code(), now=63)
    with pytest.raises(IllegalTransition):
        expire(s, now=599)
    assert expire(s, now=600).state is LoginState.EXPIRED
    with pytest.raises(IllegalTransition):
        start(APP, txn_id="t", now=0, lifetime=601)


def test_secrets_not_in_repr() -> None:
    text = repr(_code()) + repr(_pending())
    for secret in ("X123456789", "pairwise", "app-nonce", "app-state", "v" * 43, "'us'"):
        assert secret not in text


# --------------------------------------------------------------------------- sequences

EVENTS = ["choose_idp", "send_upstream", "issue_code", "redeem", "fail", "expire"]
TARGET = {
    "choose_idp": LoginState.STARTED,
    "send_upstream": LoginState.UPSTREAM_PENDING,
    "issue_code": LoginState.CODE_ISSUED,
    "redeem": LoginState.REDEEMED,
    "fail": LoginState.FAILED,
    "expire": LoginState.EXPIRED,
}


def _apply(txn: Any, event: str, now: float) -> Any:
    if event == "choose_idp":
        return choose_idp(txn, IDP, now=now)
    if event == "send_upstream":
        return send_upstream(txn, upstream_state="us", upstream_nonce="un",
                             upstream_code_verifier="v" * 43, upstream_redirect_uri="r",
                             now=now)
    if event == "issue_code":
        return issue_code(txn, subject="s", claims={}, acr=None, amr=[], auth_time=None,
                          now=now)
    if event == "redeem":
        return redeem(txn, now=now)
    if event == "fail":
        return fail(txn, "access_denied")
    return expire(txn, now=now + 10_000)


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
