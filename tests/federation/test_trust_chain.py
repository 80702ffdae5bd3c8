"""Trust-chain resolution (OpenID Federation 1.0 §10) against an in-memory federation."""

from __future__ import annotations

import pytest

from healthid_broker.crypto.jose import JWK
from healthid_broker.federation.errors import (
    ConstraintViolation,
    FetchError,
    PolicyError,
    StatementError,
    StatementExpired,
    TrustChainError,
    UnknownKey,
)
from healthid_broker.federation.statements import EntityConfiguration, SubordinateStatement
from healthid_broker.federation.trust_chain import (
    ChainResolver,
    TrustAnchor,
    fetch_entity_configuration,
    fetch_subordinate_statement,
)

from .builder import RP_METADATA, Clock, Federation, new_key, three_hop, two_hop

pytestmark = pytest.mark.anyio

TA = "https://ta.example.org"
INT = "https://int.example.org"
RP = "https://rp.example.com"


def resolver(fed: Federation, *anchors: str, **kw: object) -> ChainResolver:
    return ChainResolver(
        fed.http, [fed.anchor(a) for a in (anchors or (TA,))], clock=fed.clock, **kw  # type: ignore[arg-type]
    )


def reasons(exc: TrustChainError) -> str:
    return str(exc) + " | " + " | ".join(str(e) for e in exc.errors)


# --------------------------------------------------------------------------- valid chains


async def test_two_hop_chain() -> None:
    fed = two_hop()
    fed.link(TA, RP, metadata={"openid_relying_party": {
        "client_registration_types": ["automatic"]}})
    chain = await resolver(fed).resolve(RP, "openid_relying_party")
    assert chain.subject == RP and chain.anchor == TA
    kinds = [type(s) for s in chain.statements]
    assert kinds == [EntityConfiguration, SubordinateStatement, EntityConfiguration]
    assert [(s.iss, s.sub) for s in chain.statements] == [(RP, RP), (TA, RP), (TA, TA)]
    assert chain.path_length == 0
    md = chain.metadata("openid_relying_party")
    assert md["client_registration_types"] == ["automatic"]  # superior's metadata applied
    assert md["redirect_uris"] == ["https://rp.example.com/cb"]
    # the fetch endpoint was called with both iss and sub (gematik's master wants both)
    fetches = [c for c in fed.http.calls if c.url.startswith(f"{TA}/fetch")]
    assert fetches and fetches[0].query == {"iss": TA, "sub": RP}
    assert [k.kid for k in chain.federation_keys()] == [fed[RP].key.kid]


async def test_three_hop_chain_with_intermediate_and_merged_policy() -> None:
    fed = three_hop()
    fed[TA].subordinates[INT].claims["metadata_policy"] = {"openid_relying_party": {
        "grant_types": {"subset_of": ["authorization_code", "refresh_token"]},
        "contacts": {"add": ["ta@example.org"]},
    }}
    fed[INT].subordinates[RP].claims["metadata_policy"] = {"openid_relying_party": {
        "contacts": {"add": ["int@example.org"]},
        "scope": {"subset_of": ["openid", "urn:telematik:email"]},
    }}
    chain = await resolver(fed).resolve(RP)
    assert [(s.iss, s.sub) for s in chain.statements] == [
        (RP, RP), (INT, RP), (TA, INT), (TA, TA)]
    assert chain.path_length == 1
    md = chain.metadata("openid_relying_party")
    assert md["contacts"] == ["ta@example.org", "int@example.org"]
    assert md["scope"] == "openid urn:telematik:email"
    assert md["grant_types"] == ["authorization_code"]


async def test_chain_expiry_is_minimum_including_anchor_configuration() -> None:
    fed = three_hop()
    fed[RP].lifetime = 7200
    fed[INT].subordinates[RP].lifetime = 5000
    fed[TA].lifetime = 3000  # anchor's own configuration expires first
    chain = await resolver(fed).resolve(RP)
    assert chain.exp == int(fed.clock()) + 3000
    fed[TA].lifetime = 86400
    fed[TA].subordinates[INT].lifetime = 4000
    chain = await resolver(fed).resolve(RP)
    assert chain.exp == int(fed.clock()) + 4000
    assert chain.is_valid(fed.clock() + 3999) and not chain.is_valid(fed.clock() + 4000)


async def test_resolving_the_anchor_itself() -> None:
    fed = two_hop()
    chain = await resolver(fed).resolve(TA, "federation_entity")
    assert chain.statements[0].sub == TA and len(chain.statements) == 1
    assert chain.metadata("federation_entity")["federation_fetch_endpoint"] == f"{TA}/fetch"


async def test_first_configured_anchor_wins_and_unknown_hints_are_ignored() -> None:
    fed = Federation(Clock())
    fed.add(TA, superior=True)
    fed.add("https://ta2.example.org", superior=True)
    fed.add(RP, hints=["https://unknown.example.net", "https://ta2.example.org", TA],
            metadata=RP_METADATA)
    fed.link(TA, RP)
    fed.link("https://ta2.example.org", RP)
    c1 = await resolver(fed, TA, "https://ta2.example.org").resolve(RP)
    assert c1.anchor == TA
    c2 = await resolver(fed, "https://ta2.example.org", TA).resolve(RP)
    assert c2.anchor == "https://ta2.example.org"


# --------------------------------------------------------------------------- rejected chains


async def test_expired_leaf_configuration_rejected() -> None:
    fed = two_hop()
    fed[RP].lifetime = -3600
    with pytest.raises(TrustChainError) as ei:
        await resolver(fed).resolve(RP)
    assert isinstance(ei.value.errors[0], StatementExpired)
    assert f"entity configuration of {RP} expired at" in str(ei.value)


async def test_expired_subordinate_statement_rejected() -> None:
    fed = three_hop()
    fed[TA].subordinates[INT].lifetime = -120
    with pytest.raises(TrustChainError) as ei:
        await resolver(fed).resolve(RP)
    assert any(isinstance(e, StatementExpired) for e in ei.value.errors)
    assert f"statement by {TA} about {INT} expired" in reasons(ei.value)


async def test_wrongly_signed_subordinate_statement_rejected() -> None:
    fed = two_hop()
    impostor = JWK.generate(kid=fed[TA].key.kid)  # same kid, other key material
    fed[TA].subordinates[RP].sign_with = impostor
    with pytest.raises(TrustChainError) as ei:
        await resolver(fed).resolve(RP)
    err = ei.value.errors[0]
    assert isinstance(err, StatementError) and "does not verify" in str(err)


async def test_leaf_signed_with_key_the_superior_does_not_list() -> None:
    fed = two_hop()
    fed[TA].subordinates[RP].keys = [new_key()]  # superior vouches for another key
    with pytest.raises(TrustChainError) as ei:
        await resolver(fed).resolve(RP)
    err = ei.value.errors[0]
    assert isinstance(err, UnknownKey)
    assert f"no key {fed[RP].key.kid!r} in the keys {TA} lists for {RP}" in str(err)


async def test_unknown_kid_in_subordinate_statement() -> None:
    fed = two_hop()
    fed[TA].subordinates[RP].sign_with = new_key()  # kid not in TA's jwks
    with pytest.raises(TrustChainError) as ei:
        await resolver(fed).resolve(RP)
    assert isinstance(ei.value.errors[0], UnknownKey)
    assert f"superior {TA}" in str(ei.value.errors[0])


async def test_wrong_typ_rejected() -> None:
    fed = two_hop()
    fed[RP].typ = "JWT"
    with pytest.raises(TrustChainError) as ei:
        await resolver(fed).resolve(RP)
    assert isinstance(ei.value.errors[0], StatementError)
    assert "typ is 'JWT'" in str(ei.value)


async def test_anchor_configuration_must_verify_with_pinned_key() -> None:
    fed = two_hop()
    pinned = TrustAnchor(TA, [new_key()])  # not the key the anchor uses
    res = ChainResolver(fed.http, [pinned], clock=fed.clock)
    with pytest.raises(TrustChainError) as ei:
        await res.resolve(RP)
    assert isinstance(ei.value.errors[0], UnknownKey)
    assert "not pinned for this trust anchor (A_23046)" in str(ei.value.errors[0])


async def test_loop_rejected() -> None:
    fed = Federation(Clock())
    fed.add(TA, superior=True)
    fed.add("https://a.example.org", hints=["https://b.example.org"], superior=True)
    fed.add("https://b.example.org", hints=["https://a.example.org"], superior=True)
    fed.add(RP, hints=["https://a.example.org"], metadata=RP_METADATA)
    fed.link("https://a.example.org", RP)
    fed.link("https://b.example.org", "https://a.example.org")
    fed.link("https://a.example.org", "https://b.example.org")
    with pytest.raises(TrustChainError) as ei:
        await resolver(fed).resolve(RP)
    assert "loop: https://b.example.org names https://a.example.org" in str(ei.value)


async def test_over_long_chain_rejected() -> None:
    fed = Federation(Clock())
    fed.add(TA, superior=True)
    ids = [f"https://i{n}.example.org" for n in range(3)]
    prev = TA
    for i in ids:
        fed.add(i, hints=[prev], superior=True)
        fed.link(prev, i)
        prev = i
    fed.add(RP, hints=[prev], metadata=RP_METADATA)
    fed.link(prev, RP)
    assert (await resolver(fed, max_path_length=3).resolve(RP)).path_length == 3
    with pytest.raises(TrustChainError) as ei:
        await resolver(fed, max_path_length=2).resolve(RP)
    assert "longer than 2 intermediates" in str(ei.value)


async def test_dead_end_at_unknown_anchor() -> None:
    fed = Federation(Clock())
    fed.add(TA, superior=True)
    fed.add("https://other-ta.example.net", superior=True)
    fed.add(RP, hints=["https://other-ta.example.net"], metadata=RP_METADATA)
    fed.link("https://other-ta.example.net", RP)
    with pytest.raises(TrustChainError) as ei:
        await resolver(fed).resolve(RP)
    assert "https://other-ta.example.net is not a configured trust anchor" in str(ei.value)


async def test_fetch_error_answer_is_reported() -> None:
    fed = two_hop()
    del fed[TA].subordinates[RP]  # master answers 400 / 6011 unknown sub
    with pytest.raises(TrustChainError) as ei:
        await resolver(fed).resolve(RP)
    err = ei.value.errors[0]
    assert isinstance(err, FetchError)
    assert "HTTP 400: invalid_request / unknown sub / 6011" in str(err)


async def test_unreachable_leaf() -> None:
    fed = two_hop()
    with pytest.raises(TrustChainError) as ei:
        await resolver(fed).resolve("https://nowhere.example.com")
    assert isinstance(ei.value.errors[0], FetchError)


async def test_statement_served_with_wrong_content_type() -> None:
    fed = two_hop()
    from healthid_broker.http.testing import jwt_response

    fed.http.add(f"{RP}/.well-known/openid-federation",
                 lambda _r: jwt_response(fed[RP].configuration(), "application/jwt"))
    with pytest.raises(TrustChainError, match="served as 'application/jwt'"):
        await resolver(fed).resolve(RP)


async def test_configuration_with_foreign_sub_rejected() -> None:
    fed = two_hop()
    fed[RP].ec_hook = lambda c: c.update(sub="https://evil.example.com",
                                         iss="https://evil.example.com")
    with pytest.raises(TrustChainError, match="both must be"):
        await resolver(fed).resolve(RP)


# --------------------------------------------------------------------------- constraints


async def test_max_path_length_constraint() -> None:
    fed = three_hop()
    fed[TA].subordinates[INT].claims["constraints"] = {"max_path_length": 1}
    assert (await resolver(fed).resolve(RP)).path_length == 1
    fed[TA].subordinates[INT].claims["constraints"] = {"max_path_length": 0}
    with pytest.raises(TrustChainError) as ei:
        await resolver(fed).resolve(RP)
    assert isinstance(ei.value.errors[0], ConstraintViolation)
    assert "max_path_length 0 exceeded" in str(ei.value)


async def test_naming_constraints() -> None:
    fed = three_hop()
    sub = fed[TA].subordinates[INT]
    sub.claims["constraints"] = {"naming_constraints": {
        "permitted": [".example.org", ".example.com"]}}
    await resolver(fed).resolve(RP)
    sub.claims["constraints"] = {"naming_constraints": {"permitted": [".example.org"]}}
    with pytest.raises(TrustChainError, match=f"entity {RP} is outside the permitted"):
        await resolver(fed).resolve(RP)
    sub.claims["constraints"] = {"naming_constraints": {
        "permitted": [".example.com", ".example.org"], "excluded": ["rp.example.com"]}}
    with pytest.raises(TrustChainError, match="in an excluded name space"):
        await resolver(fed).resolve(RP)
    # ".example.com" does not match the bare domain "example.com" (RFC 5280)
    sub.claims["constraints"] = {"naming_constraints": {"permitted": [".rp.example.com",
                                                                      ".example.org"]}}
    with pytest.raises(TrustChainError, match="outside the permitted"):
        await resolver(fed).resolve(RP)


async def test_allowed_entity_types_constraint() -> None:
    fed = two_hop()
    fed[RP].metadata["openid_provider"] = {"issuer": RP}
    fed[TA].subordinates[RP].claims["constraints"] = {
        "allowed_entity_types": ["openid_relying_party"]}
    chain = await resolver(fed).resolve(RP, "openid_relying_party")
    assert sorted(chain.entity_types) == ["federation_entity", "openid_relying_party"]
    with pytest.raises(TrustChainError, match="no 'openid_provider' metadata"):
        chain.metadata("openid_provider")
    with pytest.raises(TrustChainError, match="no 'openid_provider' metadata"):
        await resolver(fed).resolve(RP, "openid_provider")


async def test_invalid_constraint_value_rejected() -> None:
    fed = two_hop()
    fed[TA].subordinates[RP].claims["constraints"] = {"max_path_length": -1}
    with pytest.raises(TrustChainError, match="max_path_length must be an integer"):
        await resolver(fed).resolve(RP)


async def test_policy_violation_invalidates_chain() -> None:
    fed = two_hop()
    fed[TA].subordinates[RP].claims["metadata_policy"] = {"openid_relying_party": {
        "token_endpoint_auth_method": {"one_of": ["private_key_jwt"]}}}
    with pytest.raises(TrustChainError) as ei:
        await resolver(fed).resolve(RP)
    assert isinstance(ei.value.errors[0].errors[0], PolicyError)  # type: ignore[attr-defined]
    assert "openid_relying_party.token_endpoint_auth_method" in str(ei.value)


async def test_conflicting_policies_of_anchor_and_intermediate_invalidate_chain() -> None:
    fed = three_hop()
    fed[TA].subordinates[INT].claims["metadata_policy"] = {"openid_relying_party": {
        "id_token_signed_response_alg": {"value": "ES256"}}}
    fed[INT].subordinates[RP].claims["metadata_policy"] = {"openid_relying_party": {
        "id_token_signed_response_alg": {"value": "RS256"}}}
    with pytest.raises(TrustChainError, match="conflicting 'value' values"):
        await resolver(fed).resolve(RP)


async def test_unknown_critical_policy_operator_rejected_but_noncritical_ignored() -> None:
    fed = two_hop()
    fed[TA].subordinates[RP].claims["metadata_policy"] = {"openid_relying_party": {
        "client_name": {"regexp": "^Demo"}}}
    await resolver(fed).resolve(RP)
    fed[TA].subordinates[RP].claims["metadata_policy_crit"] = ["regexp"]
    with pytest.raises(TrustChainError, match="metadata_policy_crit"):
        await resolver(fed).resolve(RP)


# --------------------------------------------------------------------------- helpers


async def test_fetch_helpers() -> None:
    fed = two_hop()
    now = fed.clock()
    ta = await fetch_entity_configuration(fed.http, TA, now=now,
                                          pinned_keys=[fed[TA].key.public()])
    assert ta.fetch_endpoint == f"{TA}/fetch"
    ss = await fetch_subordinate_statement(fed.http, ta, RP, now=now)
    assert (ss.iss, ss.sub) == (TA, RP)
    rp = await fetch_entity_configuration(fed.http, RP, now=now)
    with pytest.raises(StatementError, match="federation_fetch_endpoint"):
        await fetch_subordinate_statement(fed.http, rp, TA, now=now)
