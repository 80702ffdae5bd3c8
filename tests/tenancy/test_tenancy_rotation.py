from __future__ import annotations

import pytest
from keyset_helpers import DAY, T0, key_states, setup_app

from healthid_broker.tenancy import RotationPolicy, TenancyService


def test_nothing_due_right_after_creation(service: TenancyService) -> None:
    setup_app(service)
    assert service.rotate_keys("acme-app", T0 + 60) == ()
    assert service.rotate_due(T0 + 60) == {}


def test_forced_signing_rotation_waits_24h(service: TenancyService) -> None:
    """A_24607: a new signing key is published as next and used only >= 24 h later."""
    setup_app(service)
    old = service.application_keys("acme-app", T0).federation_signing_key
    changes = service.rotate_keys("acme-app", T0 + 10, force=True, purposes=["federation_sig"])
    assert [(c.purpose, c.change) for c in changes] == [("federation_sig", "published-next")]
    nxt = changes[0].kid
    keys = service.application_keys("acme-app", T0 + 10)
    assert keys.federation_signing_key.kid == old.kid
    assert [k.kid for k in keys.federation_keys] == [old.kid, nxt]
    # not yet: 1 s short of 24 h
    pending = service.rotate_keys("acme-app", T0 + 10 + DAY - 1)
    assert [c.change for c in pending] == ["pending"]
    assert service.application_keys("acme-app", T0 + DAY).federation_signing_key.kid == old.kid
    # forcing again does not shortcut the 24 h
    service.rotate_keys("acme-app", T0 + 20, force=True, purposes=["federation_sig"])
    assert key_states(service, "federation_sig") == [(old.kid, "current"), (nxt, "next")]
    done = service.rotate_keys("acme-app", T0 + 10 + DAY)
    assert {(c.kid, c.change) for c in done} == {(old.kid, "retired"), (nxt, "activated")}
    keys = service.application_keys("acme-app", T0 + 10 + DAY)
    assert keys.federation_signing_key.kid == nxt
    assert [k.kid for k in keys.federation_keys] == [nxt, old.kid]  # retired still published
    # retired key leaves after its window and is removed
    later = T0 + 10 + 2 * DAY
    assert [k.kid for k in service.application_keys("acme-app", later).federation_keys] == [nxt]
    removed = service.rotate_keys("acme-app", later)
    assert [(c.kid, c.change) for c in removed] == [(old.kid, "removed")]
    assert key_states(service, "federation_sig") == [(nxt, "current")]


def test_federation_keys_never_rotate_automatically(service: TenancyService) -> None:
    setup_app(service)
    changes = service.rotate_keys("acme-app", T0 + 200 * DAY)
    assert "federation_sig" not in {c.purpose for c in changes}


def test_encryption_key_stays_decryptable_after_retirement(service: TenancyService) -> None:
    """A_28209: retired enc keys stay published and usable until statements expired."""
    setup_app(service)
    policy = service.policy
    assert policy.id_token_enc_lifetime is not None
    enc0 = service.application_keys("acme-app", T0).id_token_encryption_keys[0].kid
    due = T0 + policy.id_token_enc_lifetime - policy.publish_ahead
    assert service.rotate_keys("acme-app", due - 1) == ()
    ch = service.rotate_keys("acme-app", due)
    enc1 = next(c.kid for c in ch if c.purpose == "id_token_enc")
    assert {c.purpose for c in ch} == {"id_token_enc", "id_token_sig"}
    service.rotate_keys("acme-app", due + DAY)
    t_retire = due + DAY
    for t in (t_retire, t_retire + DAY - 1):
        kids = [k.kid for k in service.application_keys("acme-app", t).id_token_encryption_keys]
        assert kids == [enc1, enc0]
    kids = [k.kid for k in service.application_keys("acme-app", t_retire + DAY)
            .id_token_encryption_keys]
    assert kids == [enc1]


def test_mtls_renewed_before_expiry_with_next_published(service: TenancyService) -> None:
    setup_app(service)
    keys = service.application_keys("acme-app", T0)
    not_after = keys.mtls.not_after
    renew = not_after - service.policy.mtls_renew_before
    assert not [c for c in service.rotate_keys("acme-app", renew - 1) if c.purpose == "mtls"]
    ch = [c for c in service.rotate_keys("acme-app", renew) if c.purpose == "mtls"]
    assert [c.change for c in ch] == ["published-next"]
    ahead = service.application_keys("acme-app", renew + 1)
    assert ahead.mtls.kid == keys.mtls.kid
    assert [m.kid for m in ahead.mtls_published] == [keys.mtls.kid, ch[0].kid]
    x5cs = [k.get("x5c") for k in ahead.relying_party_jwks()["keys"] if k["use"] == "sig"]
    assert len(x5cs) == 2 and all(len(x) == 1 for x in x5cs)
    service.rotate_keys("acme-app", renew + DAY)
    after = service.application_keys("acme-app", renew + DAY)
    assert after.mtls.kid == ch[0].kid and after.mtls.not_after > not_after


def test_expired_mtls_cert_is_replaced_at_once(service: TenancyService) -> None:
    setup_app(service)
    not_after = service.application_keys("acme-app", T0).mtls.not_after
    first = service.rotate_keys("acme-app", not_after + 10)
    nxt = next(c.kid for c in first if c.purpose == "mtls")
    second = service.rotate_keys("acme-app", not_after + 20)
    assert any(c.kid == nxt and c.change == "activated" for c in second)


def test_policy_refuses_short_windows() -> None:
    with pytest.raises(ValueError, match="A_24607"):
        RotationPolicy(publish_ahead=3600)
    with pytest.raises(ValueError, match="A_28209"):
        RotationPolicy(retired_publication=3600)
    with pytest.raises(ValueError, match="398"):
        RotationPolicy(mtls_cert_days=400)
