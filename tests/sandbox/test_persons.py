"""KVNR check digit (§ 290 SGB V, modified Luhn) and the synthetic persons."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from healthid_broker.sandbox.persons import (
    PERSONS,
    claims_for,
    is_valid_kvnr,
    kvnr_check_digit,
    make_kvnr,
)

prefixes = st.builds(
    lambda letter, digits: letter + digits,
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ"),
    st.text("0123456789", min_size=8, max_size=8),
)


def test_published_vector() -> None:
    # X110411675 is the test KVNR used throughout gematik's reference material.
    assert kvnr_check_digit("X11041167") == 5
    assert is_valid_kvnr("X110411675")
    assert not is_valid_kvnr("X110411676")


@given(prefixes)
def test_made_kvnr_is_valid(prefix: str) -> None:
    assert is_valid_kvnr(make_kvnr(prefix))


@given(prefixes, st.integers(1, 9))
def test_wrong_check_digit_is_rejected(prefix: str, delta: int) -> None:
    kvnr = make_kvnr(prefix)
    wrong = kvnr[:9] + str((int(kvnr[9]) + delta) % 10)
    assert not is_valid_kvnr(wrong)


@given(prefixes, st.integers(0, 7), st.integers(1, 9))
def test_single_digit_error_is_detected(prefix: str, pos: int, delta: int) -> None:
    kvnr = make_kvnr(prefix)
    i = 1 + pos
    mutated = kvnr[:i] + str((int(kvnr[i]) + delta) % 10) + kvnr[i + 1:]
    assert not is_valid_kvnr(mutated)


@given(st.text(max_size=12))
def test_garbage_is_not_a_kvnr(value: str) -> None:
    if is_valid_kvnr(value):
        assert value[0].isupper() and value[1:].isdigit() and len(value) == 10


def test_persons() -> None:
    assert len(PERSONS) >= 20
    assert len({p.kvnr for p in PERSONS}) == len(PERSONS)
    for p in PERSONS:
        assert is_valid_kvnr(p.kvnr)
        assert p.email.endswith("@example.org") and p.email.isascii()
        assert len(p.insurer_ik) == 9 and p.insurer_ik.isdigit()
        assert p.sex in {"M", "W", "D", "X"}


def test_claims_follow_scopes() -> None:
    p = next(p for p in PERSONS if p.kvnr == "X110411675")
    c = claims_for(p, ["openid", "urn:telematik:alter", "urn:telematik:geschlecht"],
                   now=1_767_225_600)  # 2026-01-01
    assert c == {"urn:telematik:claims:alter": "48", "urn:telematik:claims:geschlecht": "M"}
    assert claims_for(p, ["openid"], now=0) == {}
