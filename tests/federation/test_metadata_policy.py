"""Metadata policy operators, merges and errors (OpenID Federation 1.0 §6.1).

The table cases follow the operator definitions of §6.1.3.1.1–7 (action, permitted
combinations, merge rule) and Table 1 of §6.1.3.1.8; the end-to-end case is the spec's
own example of §6.1.5 (Figures 12–16)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from healthid_broker.federation.errors import PolicyError
from healthid_broker.federation.metadata_policy import (
    ABSENT,
    apply_parameter_policy,
    apply_policy,
    check_parameter_policy,
    merge_parameter_policies,
    merge_policies,
    resolve_metadata,
)

W = "openid_relying_party.grant_types"


def ap(policy: dict[str, Any], value: Any = ABSENT, where: str = W) -> Any:
    return apply_parameter_policy(policy, value, where=where)


# --------------------------------------------------------------------------- application table

APPLY_CASES: list[tuple[str, dict[str, Any], Any, Any]] = [
    # (name, policy, input, expected output; ABSENT = parameter absent)
    ("value sets", {"value": ["a"]}, ["b"], ["a"]),
    ("value sets when absent", {"value": ["a"]}, ABSENT, ["a"]),
    ("value null removes", {"value": None}, ["b"], ABSENT),
    ("value scalar", {"value": "ES256"}, "RS256", "ES256"),
    ("add appends missing", {"add": ["b", "c"]}, ["a", "b"], ["a", "b", "c"]),
    ("add initialises", {"add": ["b"]}, ABSENT, ["b"]),
    ("default when absent", {"default": ["a"]}, ABSENT, ["a"]),
    ("default ignored when present", {"default": ["a"]}, ["b"], ["b"]),
    ("one_of accepts", {"one_of": ["a", "b"]}, "a", "a"),
    ("one_of absent ok", {"one_of": ["a"]}, ABSENT, ABSENT),
    ("subset_of intersects", {"subset_of": ["a", "b", "c"]}, ["a", "e"], ["a"]),
    ("subset_of may give []", {"subset_of": ["a", "b", "c"]}, ["d", "e"], []),
    ("subset_of absent stays absent", {"subset_of": ["a"]}, ABSENT, ABSENT),
    ("superset_of accepts equal", {"superset_of": ["a", "b"]}, ["b", "a"], ["b", "a"]),
    ("superset_of absent ok", {"superset_of": ["a"]}, ABSENT, ABSENT),
    ("essential present", {"essential": True}, "x", "x"),
    ("essential false absent", {"essential": False}, ABSENT, ABSENT),
    # Table 1 of §6.1.3.1.8
    ("T1 r1", {"essential": True, "subset_of": ["a", "b", "c"]}, ["a", "e"], ["a"]),
    ("T1 r2", {"essential": False, "subset_of": ["a", "b", "c"]}, ["a", "e"], ["a"]),
    ("T1 r3", {"essential": True, "subset_of": ["a", "b", "c"]}, ["d", "e"], []),
    ("T1 r4", {"essential": False, "subset_of": ["a", "b", "c"]}, ["d", "e"], []),
    ("T1 r6", {"essential": False, "subset_of": ["a", "b", "c"]}, ABSENT, ABSENT),
    # order of application: value, add, default, one_of, subset_of, superset_of, essential
    ("default then subset_of", {"default": ["a", "x"], "subset_of": ["a"]}, ABSENT, ["a"]),
    ("add then superset_of", {"add": ["a"], "superset_of": ["a"]}, ["b"], ["b", "a"]),
    ("value then essential", {"value": "x", "essential": True}, ABSENT, "x"),
    ("value then one_of", {"value": "a", "one_of": ["a", "b"]}, "b", "a"),
]


@pytest.mark.parametrize(("name", "policy", "given_value", "expected"), APPLY_CASES,
                         ids=[c[0] for c in APPLY_CASES])
def test_apply_table(name: str, policy: dict[str, Any], given_value: Any, expected: Any) -> None:
    check_parameter_policy(policy, where=W)
    assert ap(policy, given_value) == expected


APPLY_ERRORS: list[tuple[str, dict[str, Any], Any, str]] = [
    ("one_of rejects", {"one_of": ["a", "b"]}, "c", "not one of the permitted"),
    ("superset_of rejects", {"superset_of": ["a", "b"]}, ["a"], "required values are missing"),
    ("essential absent", {"essential": True}, ABSENT, "essential but absent"),
    ("T1 r5", {"essential": True, "subset_of": ["a", "b", "c"]}, ABSENT, "essential"),
    ("subset_of on string", {"subset_of": ["a"]}, "a", "needs an array"),
    ("add on string", {"add": ["a"]}, "a", "needs an array"),
    ("superset_of on string", {"superset_of": ["a"]}, "a", "needs an array"),
]


@pytest.mark.parametrize(("name", "policy", "given_value", "msg"), APPLY_ERRORS,
                         ids=[c[0] for c in APPLY_ERRORS])
def test_apply_errors(name: str, policy: dict[str, Any], given_value: Any, msg: str) -> None:
    with pytest.raises(PolicyError, match=msg) as ei:
        ap(policy, given_value)
    assert W in str(ei.value)


# --------------------------------------------------------------------------- combinations

COMBINATION_ERRORS: list[tuple[str, dict[str, Any]]] = [
    ("add not subset of value", {"value": ["a"], "add": ["b"]}),
    ("value null with add", {"value": None, "add": ["b"]}),
    ("value null with default", {"value": None, "default": ["b"]}),
    ("value not among one_of", {"value": "c", "one_of": ["a", "b"]}),
    ("value not subset of subset_of", {"value": ["a", "c"], "subset_of": ["a", "b"]}),
    ("value not superset of superset_of", {"value": ["a"], "superset_of": ["a", "b"]}),
    ("value null with essential true", {"value": None, "essential": True}),
    ("one_of with add", {"one_of": ["a"], "add": ["a"]}),
    ("one_of with subset_of", {"one_of": ["a"], "subset_of": ["a"]}),
    ("one_of with superset_of", {"one_of": ["a"], "superset_of": ["a"]}),
    ("add not subset of subset_of", {"add": ["c"], "subset_of": ["a", "b"]}),
    ("subset_of not superset of superset_of", {"subset_of": ["a"], "superset_of": ["a", "b"]}),
    ("essential not boolean", {"essential": "yes"}),
    ("subset_of not array", {"subset_of": "a"}),
    ("default null", {"default": None}),
]


@pytest.mark.parametrize(("name", "policy"), COMBINATION_ERRORS,
                         ids=[c[0] for c in COMBINATION_ERRORS])
def test_forbidden_combinations(name: str, policy: dict[str, Any]) -> None:
    with pytest.raises(PolicyError):
        check_parameter_policy(policy, where=W)


ALLOWED_COMBINATIONS: list[dict[str, Any]] = [
    {"value": ["a", "b"], "add": ["a"]},
    {"value": ["a"], "default": ["b"]},
    {"value": "a", "one_of": ["a", "b"]},
    {"value": ["a"], "subset_of": ["a", "b"], "superset_of": ["a"]},
    {"value": None, "essential": False},
    {"value": ["a"], "essential": True},
    {"add": ["a"], "default": ["b"], "subset_of": ["a", "b"], "superset_of": ["a"]},
    {"one_of": ["a"], "default": "a", "essential": True},
    {"subset_of": ["a", "b"], "superset_of": ["a", "b"]},  # "set equals"
]


@pytest.mark.parametrize("policy", ALLOWED_COMBINATIONS)
def test_allowed_combinations(policy: dict[str, Any]) -> None:
    check_parameter_policy(policy, where=W)


# --------------------------------------------------------------------------- merges


MERGE_CASES: list[tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    ("value equal", {"value": "a"}, {"value": "a"}, {"value": "a"}),
    ("value equal arrays any order", {"value": ["a", "b"]}, {"value": ["b", "a"]},
     {"value": ["a", "b"]}),
    ("add union", {"add": ["a"]}, {"add": ["b", "a"]}, {"add": ["a", "b"]}),
    ("default equal", {"default": 1}, {"default": 1}, {"default": 1}),
    ("one_of intersection", {"one_of": ["a", "b"]}, {"one_of": ["b", "c"]}, {"one_of": ["b"]}),
    ("subset_of intersection", {"subset_of": ["a", "b"]}, {"subset_of": ["b", "c"]},
     {"subset_of": ["b"]}),
    ("subset_of may merge to []", {"subset_of": ["a"]}, {"subset_of": ["b"]},
     {"subset_of": []}),
    ("superset_of union", {"superset_of": ["a"]}, {"superset_of": ["b"]},
     {"superset_of": ["a", "b"]}),
    ("essential or 1", {"essential": False}, {"essential": True}, {"essential": True}),
    ("essential or 2", {"essential": True}, {"essential": False}, {"essential": True}),
    ("copied operators", {"subset_of": ["a", "b"]}, {"superset_of": ["a"]},
     {"subset_of": ["a", "b"], "superset_of": ["a"]}),
]


@pytest.mark.parametrize(("name", "sup", "sub", "expected"), MERGE_CASES,
                         ids=[c[0] for c in MERGE_CASES])
def test_merge_table(name: str, sup: dict[str, Any], sub: dict[str, Any],
                     expected: dict[str, Any]) -> None:
    assert merge_parameter_policies(sup, sub, where=W) == expected


MERGE_ERRORS: list[tuple[str, dict[str, Any], dict[str, Any], str]] = [
    ("value conflict", {"value": "a"}, {"value": "b"}, "conflicting 'value'"),
    ("value null vs value", {"value": None}, {"value": "a"}, "conflicting 'value'"),
    ("default conflict", {"default": "a"}, {"default": "b"}, "conflicting 'default'"),
    ("one_of empty", {"one_of": ["a"]}, {"one_of": ["b"]}, "no permitted value"),
    ("merged combination invalid", {"subset_of": ["a", "b"]}, {"superset_of": ["c"]},
     "superset of 'superset_of'"),
    ("merged value vs one_of", {"value": "c"}, {"one_of": ["a"]}, "among the 'one_of'"),
    ("merged one_of vs add", {"one_of": ["a"]}, {"add": ["a"]}, "cannot be combined"),
]


@pytest.mark.parametrize(("name", "sup", "sub", "msg"), MERGE_ERRORS,
                         ids=[c[0] for c in MERGE_ERRORS])
def test_merge_errors(name: str, sup: dict[str, Any], sub: dict[str, Any], msg: str) -> None:
    with pytest.raises(PolicyError, match=msg):
        merge_parameter_policies(sup, sub, where=W)


def test_merge_policies_levels_and_validation() -> None:
    ta = {"openid_relying_party": {"grant_types": {"subset_of": ["a", "b"]}}}
    ia = {"openid_relying_party": {"grant_types": {"subset_of": ["b"]},
                                   "contacts": {"add": ["x"]}},
          "openid_provider": {"issuer": {"essential": True}}}
    merged = merge_policies([ta, ia])
    assert merged == {
        "openid_relying_party": {"grant_types": {"subset_of": ["b"]}, "contacts": {"add": ["x"]}},
        "openid_provider": {"issuer": {"essential": True}},
    }
    assert ta["openid_relying_party"]["grant_types"] == {"subset_of": ["a", "b"]}  # unchanged
    with pytest.raises(PolicyError, match="must be an object"):
        merge_policies([{"openid_relying_party": ["nope"]}])
    with pytest.raises(PolicyError, match="metadata_policy_crit"):
        merge_policies([{"openid_relying_party": {"x": {"regexp": "a"}}}], crit=["regexp"])


# --------------------------------------------------------------------------- scope


def test_scope_is_a_space_separated_list() -> None:
    where = "openid_relying_party.scope"
    assert apply_parameter_policy({"subset_of": ["openid", "b"]}, "openid a b",
                                  where=where) == "openid b"
    assert apply_parameter_policy({"add": ["c"]}, "openid", where=where) == "openid c"
    assert apply_parameter_policy({"default": "openid a"}, ABSENT, where=where) == "openid a"
    assert apply_parameter_policy({"value": "openid"}, "x", where=where) == "openid"
    with pytest.raises(PolicyError, match="missing"):
        apply_parameter_policy({"superset_of": ["openid"]}, "a b", where=where)
    check_parameter_policy({"value": "openid a", "subset_of": ["openid", "a", "b"]},
                           where=where)
    with pytest.raises(PolicyError):
        check_parameter_policy({"value": "openid c", "subset_of": ["openid", "a"]},
                               where=where)


# --------------------------------------------------------------------------- the spec example


def test_spec_example_figures_12_to_16() -> None:
    ta_policy = {"openid_relying_party": {
        "grant_types": {"default": ["authorization_code"],
                        "subset_of": ["authorization_code", "refresh_token"],
                        "superset_of": ["authorization_code"]},
        "token_endpoint_auth_method": {"one_of": ["private_key_jwt",
                                                  "self_signed_tls_client_auth"],
                                       "essential": True},
        "token_endpoint_auth_signing_alg": {"one_of": ["PS256", "ES256"]},
        "subject_type": {"value": "pairwise"},
        "contacts": {"add": ["helpdesk@federation.example.org"]},
    }}
    int_policy = {"openid_relying_party": {
        "grant_types": {"subset_of": ["authorization_code"]},
        "token_endpoint_auth_method": {"one_of": ["self_signed_tls_client_auth"]},
        "contacts": {"add": ["helpdesk@org.example.org"]},
    }}
    int_metadata = {"openid_relying_party": {
        "sector_identifier_uri": "https://org.example.org/sector-ids.json",
        "policy_uri": "https://org.example.org/policy.html"}}
    merged = merge_policies([ta_policy, int_policy])["openid_relying_party"]
    assert merged == {  # Figure 14
        "grant_types": {"default": ["authorization_code"],
                        "superset_of": ["authorization_code"],
                        "subset_of": ["authorization_code"]},
        "token_endpoint_auth_method": {"one_of": ["self_signed_tls_client_auth"],
                                       "essential": True},
        "token_endpoint_auth_signing_alg": {"one_of": ["PS256", "ES256"]},
        "subject_type": {"value": "pairwise"},
        "contacts": {"add": ["helpdesk@federation.example.org", "helpdesk@org.example.org"]},
    }
    leaf = {"openid_relying_party": {  # Figure 15
        "redirect_uris": ["https://rp.example.org/callback"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "self_signed_tls_client_auth",
        "contacts": ["rp_admins@rp.example.org"]}}
    out = resolve_metadata(leaf, superior_metadata=int_metadata,
                           policies=[ta_policy, int_policy])
    assert out["openid_relying_party"] == {  # Figure 16
        "redirect_uris": ["https://rp.example.org/callback"],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "self_signed_tls_client_auth",
        "subject_type": "pairwise",
        "sector_identifier_uri": "https://org.example.org/sector-ids.json",
        "policy_uri": "https://org.example.org/policy.html",
        "contacts": ["rp_admins@rp.example.org", "helpdesk@federation.example.org",
                     "helpdesk@org.example.org"],
    }


def test_superior_metadata_overrides_then_policy_applies_once() -> None:
    leaf = {"openid_relying_party": {"client_name": "own", "grant_types": ["implicit"]}}
    sup = {"openid_relying_party": {"grant_types": ["authorization_code"]}}
    pol = [{"openid_relying_party": {"grant_types": {"subset_of": ["authorization_code"]}}}]
    out = resolve_metadata(leaf, superior_metadata=sup, policies=pol)
    assert out["openid_relying_party"] == {"client_name": "own",
                                           "grant_types": ["authorization_code"]}
    out = resolve_metadata(leaf, superior_metadata=sup, policies=pol,
                           allowed_entity_types=[["openid_provider"]])
    assert "openid_relying_party" not in out


def test_policy_for_type_missing_from_metadata_is_not_applied() -> None:
    # the type is present (even if empty): the policy applies
    with pytest.raises(PolicyError, match=r"openid_provider\.x: the parameter is essential"):
        apply_policy({"x": {"essential": True}}, {}, entity_type="openid_provider")
    # the type is absent from the subject's metadata: nothing to apply (§6.1.4.2)
    out = resolve_metadata({}, policies=[{"openid_provider": {"x": {"essential": True}}}])
    assert out == {}


# --------------------------------------------------------------------------- properties

names = st.sampled_from(["a", "b", "c", "d", "e", "f"])
name_lists = st.lists(names, unique=True, max_size=6)
maybe_list = st.one_of(st.just(ABSENT), name_lists)


@given(op=name_lists, md=maybe_list)
def test_prop_subset_of_result_is_within_both(op: list[str], md: Any) -> None:
    out = ap({"subset_of": op}, md)
    if md is ABSENT:
        assert out is ABSENT
    else:
        assert set(out) == set(op) & set(md)
        assert [x for x in md if x in out] == out  # metadata order kept
        assert ap({"subset_of": op}, out) == out  # idempotent


@given(op=name_lists, md=maybe_list)
def test_prop_add_result_contains_both_without_duplicates(op: list[str], md: Any) -> None:
    out = ap({"add": op}, md)
    base = [] if md is ABSENT else md
    assert set(out) == set(op) | set(base)
    assert len(out) == len(set(out))
    assert out[: len(base)] == base


@given(op=name_lists, md=maybe_list)
def test_prop_superset_of_accepts_exactly_supersets(op: list[str], md: Any) -> None:
    if md is ABSENT or set(op) <= set(md):
        assert ap({"superset_of": op}, md) == md
    else:
        with pytest.raises(PolicyError):
            ap({"superset_of": op}, md)


@given(op=st.lists(names, unique=True, min_size=1), v=names)
def test_prop_one_of(op: list[str], v: str) -> None:
    if v in op:
        assert ap({"one_of": op}, v) == v
    else:
        with pytest.raises(PolicyError):
            ap({"one_of": op}, v)


@given(v=st.one_of(st.none(), names, name_lists, st.booleans(), st.integers()),
       md=st.one_of(st.just(ABSENT), names, name_lists))
def test_prop_value_always_wins(v: Any, md: Any) -> None:
    out = ap({"value": v}, md)
    assert out == (ABSENT if v is None else v)


@given(d=st.one_of(names, name_lists), md=st.one_of(st.just(ABSENT), names, name_lists))
def test_prop_default_only_fills_gaps(d: Any, md: Any) -> None:
    assert ap({"default": d}, md) == (d if md is ABSENT else md)


@given(a=name_lists, b=name_lists, md=maybe_list)
def test_prop_merged_subset_of_equals_sequential_application(
    a: list[str], b: list[str], md: Any
) -> None:
    merged = merge_parameter_policies({"subset_of": a}, {"subset_of": b}, where=W)
    assert set(merged["subset_of"]) == set(a) & set(b)
    once = ap(merged, md)
    twice = ap({"subset_of": b}, ap({"subset_of": a}, md))
    assert once == twice


@given(a=name_lists, b=name_lists, md=maybe_list)
def test_prop_merged_superset_of_is_conjunction(a: list[str], b: list[str], md: Any) -> None:
    merged = merge_parameter_policies({"superset_of": a}, {"superset_of": b}, where=W)

    def ok(p: dict[str, Any]) -> bool:
        try:
            ap(p, md)
        except PolicyError:
            return False
        return True

    assert ok(merged) == (ok({"superset_of": a}) and ok({"superset_of": b}))


@given(a=name_lists, b=name_lists, md=maybe_list)
def test_prop_merged_add_is_union(a: list[str], b: list[str], md: Any) -> None:
    merged = merge_parameter_policies({"add": a}, {"add": b}, where=W)
    assert set(ap(merged, md)) == set(ap({"add": b}, ap({"add": a}, md)))


@given(a=st.lists(names, unique=True, min_size=1), b=st.lists(names, unique=True, min_size=1))
def test_prop_merged_one_of_is_intersection_or_error(a: list[str], b: list[str]) -> None:
    if set(a) & set(b):
        merged = merge_parameter_policies({"one_of": a}, {"one_of": b}, where=W)
        assert set(merged["one_of"]) == set(a) & set(b)
    else:
        with pytest.raises(PolicyError):
            merge_parameter_policies({"one_of": a}, {"one_of": b}, where=W)


@given(a=st.booleans(), b=st.booleans())
def test_prop_merged_essential_is_or(a: bool, b: bool) -> None:
    merged = merge_parameter_policies({"essential": a}, {"essential": b}, where=W)
    assert merged == {"essential": a or b}


@given(a=st.one_of(names, name_lists), b=st.one_of(names, name_lists),
       op=st.sampled_from(["value", "default"]))
def test_prop_value_and_default_merge_only_when_equal(a: Any, b: Any, op: str) -> None:
    same = (set(a) == set(b)) if isinstance(a, list) and isinstance(b, list) else a == b
    if same:
        assert merge_parameter_policies({op: a}, {op: b}, where=W) == {op: a}
    else:
        with pytest.raises(PolicyError):
            merge_parameter_policies({op: a}, {op: b}, where=W)


@given(sub=name_lists, sup=name_lists, add=name_lists)
def test_prop_check_is_consistent_with_set_relations(
    sub: list[str], sup: list[str], add: list[str]
) -> None:
    policy = {"subset_of": sub, "superset_of": sup, "add": add}
    consistent = set(sup) <= set(sub) and set(add) <= set(sub)
    if consistent:
        check_parameter_policy(policy, where=W)
    else:
        with pytest.raises(PolicyError):
            check_parameter_policy(policy, where=W)
