"""RSA ID-token keys (RS256/PS256 clients): created with the first client that needs one,
published, rotated like the EC keys (next key published 24 h ahead, A_24607); RS256
reported as a BSI TR-02102-1 deviation; id_token_signed_response_alg validated."""

from __future__ import annotations

from pathlib import Path

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from keyset_helpers import DAY, T0, key_states, setup_app

from healthid_broker.crypto.app_signing import MIN_RSA_BITS, sign_jws_rsa
from healthid_broker.tenancy import TenancyService
from healthid_broker.tenancy.apply import apply_config
from healthid_broker.tenancy.errors import InvalidInput

REDIRECT = ["https://app.example/cb"]


def test_no_rsa_key_until_a_client_needs_one(service: TenancyService) -> None:
    setup_app(service)
    service.create_client("acme-app", auth_method="client_secret_basic",
                          redirect_uris=REDIRECT, now=T0)
    assert key_states(service, "id_token_sig_rsa") == []
    keys = service.application_keys("acme-app", T0)
    assert keys.id_token_rsa_key is None
    assert all(k["kty"] == "EC" for k in keys.provider_jwks()["keys"])
    assert service.rotate_keys("acme-app", T0 + 60) == ()  # none created by rotation either


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_rsa_client_gets_a_published_key(service: TenancyService, alg: str) -> None:
    setup_app(service)
    created = service.create_client("acme-app", auth_method="client_secret_basic",
                                    redirect_uris=REDIRECT, now=T0, id_token_alg=alg)
    assert created.client.id_token_alg == alg
    assert created.client.summary()["id_token_signed_response_alg"] == alg
    assert bool(created.client.summary()["deviations"]) == (alg == "RS256")
    [(kid, state)] = key_states(service, "id_token_sig_rsa")
    assert state == "current"
    keys = service.application_keys("acme-app", T0)
    assert keys.id_token_rsa_key is not None and keys.id_token_rsa_key.kid == kid
    assert keys.id_token_rsa_key.public_key.key_size >= MIN_RSA_BITS
    published = keys.provider_jwks()["keys"]
    rsa = [k for k in published if k["kty"] == "RSA"]
    assert [k["kid"] for k in rsa] == [kid] and "d" not in rsa[0] and rsa[0]["use"] == "sig"
    # a second RSA client shares the key
    service.create_client("acme-app", auth_method="none", redirect_uris=REDIRECT, now=T0,
                          id_token_alg="PS256")
    assert len(key_states(service, "id_token_sig_rsa")) == 1
    # the unsealed private key signs what the published key verifies
    token = sign_jws_rsa({"sub": "x"}, keys.id_token_rsa_key, alg, typ="JWT")
    assert jwt.decode(token, KeySet.import_key_set({"keys": published}),
                      algorithms=[alg]).claims == {"sub": "x"}


def test_update_to_rsa_creates_the_key(service: TenancyService) -> None:
    setup_app(service)
    c = service.create_client("acme-app", auth_method="client_secret_basic",
                              redirect_uris=REDIRECT, now=T0).client
    assert c.id_token_alg == "ES256" and c.deviations == ()
    v = service.update_client("acme-app", c.client_id, now=T0 + 1, id_token_alg="RS256")
    assert v.id_token_alg == "RS256" and "TR-02102-1" in v.deviations[0]
    assert [s for _k, s in key_states(service, "id_token_sig_rsa")] == ["current"]
    with pytest.raises(InvalidInput, match="id_token_signed_response_alg"):
        service.update_client("acme-app", c.client_id, now=T0 + 2, id_token_alg="HS256")
    with pytest.raises(InvalidInput, match="id_token_signed_response_alg"):
        service.create_client("acme-app", auth_method="none", redirect_uris=REDIRECT,
                              now=T0, id_token_alg="none")


def test_rsa_key_rotates_like_the_ec_key(service: TenancyService) -> None:
    """The next RSA key is published 24 h before it signs (A_24607); the retired one stays
    published for 24 h (A_28209)."""
    setup_app(service)
    service.create_client("acme-app", auth_method="client_secret_basic",
                          redirect_uris=REDIRECT, now=T0, id_token_alg="PS256")
    [(old, _)] = key_states(service, "id_token_sig_rsa")
    lifetime = service.policy.id_token_sig_lifetime
    assert lifetime is not None
    due = T0 + lifetime - DAY
    changes = service.rotate_keys("acme-app", due)
    nxt = next(c.kid for c in changes if c.purpose == "id_token_sig_rsa")
    assert ("id_token_sig_rsa", "published-next") in {(c.purpose, c.change) for c in changes}
    keys = service.application_keys("acme-app", due)
    assert keys.id_token_rsa_key is not None and keys.id_token_rsa_key.kid == old
    assert [k["kid"] for k in keys.provider_jwks()["keys"] if k["kty"] == "RSA"] == [old, nxt]
    service.rotate_keys("acme-app", due + DAY)
    keys = service.application_keys("acme-app", due + DAY)
    assert keys.id_token_rsa_key is not None and keys.id_token_rsa_key.kid == nxt
    assert [k["kid"] for k in keys.provider_jwks()["keys"] if k["kty"] == "RSA"] == [nxt, old]
    service.rotate_keys("acme-app", due + 2 * DAY)
    assert key_states(service, "id_token_sig_rsa") == [(nxt, "current")]


def test_apply_sets_the_algorithm(service: TenancyService, tmp_path: Path) -> None:
    cfg = {"tenants": [{"name": "acme", "applications": [{
        "short_key": "acme-app", "display_name": "Acme", "organization_name": "Acme GmbH",
        "scopes": ["openid"], "required_acr": "gematik-ehealth-loa-substantial",
        "clients": [{"name": "web", "auth_method": "client_secret_basic",
                     "redirect_uris": REDIRECT, "id_token_signed_response_alg": "RS256"}],
    }]}]}
    apply_config(service, cfg, now=T0)
    [c] = service.list_clients("acme-app")
    assert c.id_token_alg == "RS256" and c.deviations
    assert len(key_states(service, "id_token_sig_rsa")) == 1
    cfg["tenants"][0]["applications"][0]["clients"][0][  # type: ignore[index]
        "id_token_signed_response_alg"] = "PS256"
    result = apply_config(service, cfg, now=T0 + 1)
    assert any("id_token_signed_response_alg: RS256 -> PS256" in line
               for line in result.changes)
    assert apply_config(service, cfg, now=T0 + 2).changes == []
    cfg["tenants"][0]["applications"][0]["clients"][0][  # type: ignore[index]
        "id_token_signed_response_alg"] = "ES512"
    with pytest.raises(InvalidInput):
        apply_config(service, cfg, now=T0 + 3)
