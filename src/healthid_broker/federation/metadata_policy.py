"""Metadata policy (OpenID Federation 1.0, §6.1): operators, merge, application.

Spec map (section numbers of OpenID Federation 1.0 final):

* §6.1.2  structure: entity type → parameter → operators.
* §6.1.3  operator rules: each operator declares its value types, the operators it may be
  combined with (also after a merge), its order of application and its merge rule.
* §6.1.3.1.1–7  the standard operators ``value``, ``add``, ``default``, ``one_of``,
  ``subset_of``, ``superset_of``, ``essential``; applied in exactly that order.
* §6.1.3.1.8  notes: ``scope`` is a space-separated string that list operators treat as
  a list; the result is written back as one space-separated string.
* §6.1.3.2  additional operators: ignored unless named in ``metadata_policy_crit``.
* §6.1.4.1  resolution: merge the ``metadata_policy`` of every subordinate statement from
  the most superior one down to the one issued by the subject's immediate superior.
* §6.1.4.2  application: first the immediate superior's ``metadata`` overrides the
  subject's parameters, then the resolved policy is applied once.

Every failure is a :class:`PolicyError` naming ``<entity type>.<parameter>`` and the
operator, never the metadata values of a person (there are none in entity metadata).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import PolicyError

__all__ = [
    "ABSENT",
    "OPERATOR_ORDER",
    "STANDARD_OPERATORS",
    "apply_metadata_override",
    "apply_parameter_policy",
    "apply_policy",
    "check_parameter_policy",
    "merge_parameter_policies",
    "merge_policies",
    "resolve_metadata",
]

#: The standard operators in their order of application (§6.1.3.1).
OPERATOR_ORDER: tuple[str, ...] = (
    "value", "add", "default", "one_of", "subset_of", "superset_of", "essential",
)
STANDARD_OPERATORS = frozenset(OPERATOR_ORDER)

#: Parameters that are a space-separated string but processed as a list (§6.1.3.1.8).
SPACE_SEPARATED = frozenset({"scope"})

_LIST_OPS = ("add", "one_of", "subset_of", "superset_of")

#: Marker for an absent metadata parameter in :func:`apply_parameter_policy`.
ABSENT: Any = object()


# --------------------------------------------------------------------------- helpers


def _key(v: Any) -> str:
    """Canonical JSON of a value, so lists of objects can be compared (§6.1.3.1.8 note)."""
    return json.dumps(v, sort_keys=True, separators=(",", ":"))


def _union(a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
    seen = {_key(x) for x in a}
    out = list(a)
    for x in b:
        if _key(x) not in seen:
            seen.add(_key(x))
            out.append(x)
    return out


def _intersection(a: Sequence[Any], b: Sequence[Any]) -> list[Any]:
    keep = {_key(x) for x in b}
    out: list[Any] = []
    seen: set[str] = set()
    for x in a:
        k = _key(x)
        if k in keep and k not in seen:
            seen.add(k)
            out.append(x)
    return out


def _is_subset(a: Iterable[Any], b: Iterable[Any]) -> bool:
    return {_key(x) for x in a} <= {_key(x) for x in b}


def _same(a: Any, b: Any) -> bool:
    """Equality of operator values; arrays compare as sets (merge order is undefined)."""
    if isinstance(a, list) and isinstance(b, list):
        return {_key(x) for x in a} == {_key(x) for x in b}
    return _key(a) == _key(b)


def _as_list(value: Any, param: str) -> Any:
    """``scope`` strings become lists for list operators (§6.1.3.1.8)."""
    if param in SPACE_SEPARATED and isinstance(value, str):
        return value.split()
    return value


# --------------------------------------------------------------------------- validation


def _check_operator_value(op: str, v: Any, where: str) -> None:
    if op == "essential":
        if not isinstance(v, bool):
            raise PolicyError(f"{where}: 'essential' must be true or false")
    elif op in _LIST_OPS:
        if not isinstance(v, list):
            raise PolicyError(f"{where}: '{op}' must be an array")
    elif op == "default" and v is None:
        raise PolicyError(f"{where}: 'default' must not be null")
    # 'value' accepts any JSON value, null included (null removes the parameter).


def check_parameter_policy(
    policy: Mapping[str, Any],
    *,
    where: str,
    crit: Iterable[str] = (),
) -> None:
    """Validate one metadata parameter policy: operator value types and the permitted
    operator combinations of §6.1.3.1.1–7 (used both for a single statement's policy and
    for a merged one, §6.1.4.1).  ``where`` is ``<entity type>.<parameter>``."""
    if not isinstance(policy, Mapping):
        raise PolicyError(f"{where}: a parameter policy must be an object of operators")
    crit = set(crit)
    for op, v in policy.items():
        if op in STANDARD_OPERATORS:
            _check_operator_value(op, v, where)
        elif op in crit:
            raise PolicyError(
                f"{where}: operator '{op}' is listed in metadata_policy_crit but not "
                "supported by this implementation (§6.1.3.2)"
            )
    param = where.rsplit(".", 1)[-1]
    has = policy.__contains__
    if has("value"):
        val = _as_list(policy["value"], param)
        if val is None:
            if has("default"):
                raise PolicyError(f"{where}: 'value' null cannot be combined with 'default'")
            if policy.get("essential") is True:
                raise PolicyError(
                    f"{where}: 'value' null cannot be combined with 'essential' true"
                )
        if has("add") and (not isinstance(val, list) or not _is_subset(policy["add"], val)):
            raise PolicyError(f"{where}: the values of 'add' must be a subset of 'value'")
        if has("one_of") and not any(_same(policy["value"], x) for x in policy["one_of"]):
            raise PolicyError(f"{where}: 'value' must be among the 'one_of' values")
        if has("subset_of") and (
            not isinstance(val, list) or not _is_subset(val, policy["subset_of"])
        ):
            raise PolicyError(f"{where}: 'value' must be a subset of 'subset_of'")
        if has("superset_of") and (
            not isinstance(val, list) or not _is_subset(policy["superset_of"], val)
        ):
            raise PolicyError(f"{where}: 'value' must be a superset of 'superset_of'")
    if has("one_of"):
        for other in ("add", "subset_of", "superset_of"):
            if has(other):
                raise PolicyError(f"{where}: 'one_of' cannot be combined with '{other}'")
    if has("add") and has("subset_of") and not _is_subset(policy["add"], policy["subset_of"]):
        raise PolicyError(f"{where}: the values of 'add' must be a subset of 'subset_of'")
    if (
        has("subset_of")
        and has("superset_of")
        and not _is_subset(policy["superset_of"], policy["subset_of"])
    ):
        raise PolicyError(f"{where}: 'subset_of' must be a superset of 'superset_of'")


def _check_policy(policy: Any, who: str, crit: Iterable[str]) -> dict[str, dict[str, Any]]:
    if not isinstance(policy, Mapping):
        raise PolicyError(f"metadata_policy {who} must be an object")
    out: dict[str, dict[str, Any]] = {}
    for etype, params in policy.items():
        if not isinstance(params, Mapping):
            raise PolicyError(f"metadata_policy.{etype} {who} must be an object")
        out[etype] = {}
        for param, ops in params.items():
            check_parameter_policy(ops, where=f"{etype}.{param}", crit=crit)
            out[etype][param] = dict(ops)
    return out


# --------------------------------------------------------------------------- merge


def _merge_operator(op: str, sup: Any, sub: Any, where: str) -> Any:
    """Operator value merge rules of §6.1.3.1.1–7."""
    if op in ("value", "default"):
        if not _same(sup, sub):
            raise PolicyError(
                f"{where}: conflicting '{op}' values from a superior and a subordinate "
                "policy (they must be equal)"
            )
        return sup
    if op in ("add", "superset_of"):
        return _union(sup, sub)
    if op == "one_of":
        merged = _intersection(sup, sub)
        if not merged:
            raise PolicyError(f"{where}: merging two 'one_of' leaves no permitted value")
        return merged
    if op == "subset_of":
        return _intersection(sup, sub)  # may be [] (§6.1.3.1.5)
    if op == "essential":
        return bool(sup) or bool(sub)
    return sub  # an additional, non-critical operator: ignored later anyway


def merge_parameter_policies(
    superior: Mapping[str, Any], subordinate: Mapping[str, Any], *, where: str
) -> dict[str, Any]:
    """Merge two parameter policies (§6.1.4.1, operator level) and re-check the result's
    operator combinations."""
    out = dict(superior)
    for op, v in subordinate.items():
        out[op] = _merge_operator(op, out[op], v, where) if op in out else v
    check_parameter_policy(out, where=where)
    return out


def merge_policies(
    policies: Sequence[Mapping[str, Any]], *, crit: Iterable[str] = ()
) -> dict[str, dict[str, dict[str, Any]]]:
    """Resolve a chain's metadata policy (§6.1.4.1).

    ``policies`` are the ``metadata_policy`` claims in order from the statement issued by
    the most superior entity (the trust anchor) down to the one issued by the subject's
    immediate superior.  ``crit`` is the union of all ``metadata_policy_crit`` values.
    """
    crit = set(crit)
    current: dict[str, dict[str, dict[str, Any]]] = {}
    for i, raw in enumerate(policies):
        policy = _check_policy(raw, f"#{i} (counted from the trust anchor)", crit)
        for etype, params in policy.items():
            target = current.setdefault(etype, {})
            for param, ops in params.items():
                where = f"{etype}.{param}"
                target[param] = (
                    merge_parameter_policies(target[param], ops, where=where)
                    if param in target
                    else dict(ops)
                )
    return current


# --------------------------------------------------------------------------- application


def apply_parameter_policy(
    policy: Mapping[str, Any], value: Any, *, where: str
) -> Any:
    """Apply one parameter policy to ``value``; pass :data:`ABSENT` for a missing
    parameter; :data:`ABSENT` is returned when the parameter is to be removed.

    Order of application per §6.1.3.1: value, add, default, one_of, subset_of,
    superset_of, essential.  Unknown non-critical operators are ignored (§6.1.3.2).
    """
    param = where.rsplit(".", 1)[-1]
    spaced = param in SPACE_SEPARATED
    present = value is not ABSENT
    cur: Any = _as_list(value, param) if present else None

    if "value" in policy:
        v = _as_list(policy["value"], param)
        if v is None:
            present, cur = False, None
        else:
            present, cur = True, v
    if "add" in policy:
        if not present:
            present, cur = True, list(policy["add"])
        else:
            if not isinstance(cur, list):
                raise PolicyError(f"{where}: 'add' needs an array parameter")
            cur = _union(cur, policy["add"])
    if "default" in policy and not present:
        present, cur = True, _as_list(policy["default"], param)
    if "one_of" in policy and present:
        probe = " ".join(map(str, cur)) if spaced and isinstance(cur, list) else cur
        if not any(_same(probe, x) for x in policy["one_of"]):
            raise PolicyError(f"{where}: the value is not one of the permitted values")
    if "subset_of" in policy and present:
        if not isinstance(cur, list):
            raise PolicyError(f"{where}: 'subset_of' needs an array parameter")
        cur = _intersection(cur, policy["subset_of"])
    if "superset_of" in policy and present:
        if not isinstance(cur, list):
            raise PolicyError(f"{where}: 'superset_of' needs an array parameter")
        missing = [x for x in policy["superset_of"] if not _is_subset([x], cur)]
        if missing:
            raise PolicyError(
                f"{where}: required values are missing ('superset_of'): {missing}"
            )
    if policy.get("essential") is True and not present:
        raise PolicyError(f"{where}: the parameter is essential but absent")
    if not present:
        return ABSENT
    if spaced and isinstance(cur, list):
        return " ".join(str(x) for x in cur)
    return cur


def apply_policy(
    policy: Mapping[str, Mapping[str, Any]], metadata: Mapping[str, Any], *, entity_type: str
) -> dict[str, Any]:
    """Apply a resolved policy for one entity type to that type's metadata (§6.1.4.2)."""
    out = dict(metadata)
    for param, ops in policy.items():
        where = f"{entity_type}.{param}"
        result = apply_parameter_policy(ops, out.get(param, ABSENT), where=where)
        if result is ABSENT:
            out.pop(param, None)
        else:
            out[param] = result
    return out


def apply_metadata_override(
    metadata: Mapping[str, Any], override: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    """Apply the immediate superior's ``metadata`` claim (§3, §6.1.4.2): its parameters
    replace the subject's own, per entity type; types only the superior names are added."""
    out: dict[str, dict[str, Any]] = {}
    for etype, params in metadata.items():
        if not isinstance(params, Mapping):
            raise PolicyError(f"metadata.{etype} must be an object")
        out[etype] = dict(params)
    for etype, params in override.items():
        if not isinstance(params, Mapping):
            raise PolicyError(f"metadata.{etype} set by the superior must be an object")
        out.setdefault(etype, {}).update(params)
    return out


def resolve_metadata(
    leaf_metadata: Mapping[str, Any],
    *,
    superior_metadata: Mapping[str, Any] | None = None,
    policies: Sequence[Mapping[str, Any]] = (),
    crit: Iterable[str] = (),
    allowed_entity_types: Sequence[Sequence[str]] = (),
) -> dict[str, dict[str, Any]]:
    """The full §6.1.4 pipeline for a chain's subject.

    1. the immediate superior's ``metadata`` overrides the subject's parameters;
    2. each ``allowed_entity_types`` constraint removes other entity types
       (``federation_entity`` always stays, §6.2.3);
    3. the policies (trust anchor first) are merged and applied once.
    """
    md = apply_metadata_override(leaf_metadata, superior_metadata or {})
    for allowed in allowed_entity_types:
        keep = set(allowed) | {"federation_entity"}
        md = {t: v for t, v in md.items() if t in keep}
    merged = merge_policies(policies, crit=crit)
    return {
        etype: apply_policy(merged.get(etype, {}), params, entity_type=etype)
        for etype, params in md.items()
    }
