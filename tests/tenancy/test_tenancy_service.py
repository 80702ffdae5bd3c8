from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest
from cryptography import x509

from healthid_broker.crypto.jose import (
    JWK,
    decrypt_jwe,
    encrypt_jwe,
    parse_jws,
    sign_jws,
    verify_jws,
)
from healthid_broker.crypto.key_provider import StaticKeyProvider
from healthid_broker.storage import open_database
from healthid_broker.tenancy import Conflict, InvalidInput, NotFound, TenancyService

NOW = 1_800_000_000.0
SCOPES = ["openid", "urn:telematik:alter", "urn:telematik:display_name"]


def _app(svc: TenancyService, key: str = "acme-app") -> None:
    if svc.get_tenant("acme") is None:
        svc.create_tenant("acme", now=NOW)
    svc.create_application(
        "acme", key, display_name="Acme App", organization_name="Acme GmbH",
        scopes=SCOPES, required_acr="gematik-ehealth-loa-high", now=NOW,
    )


def test_tenant_and_application_views(service: TenancyService) -> None:
    t = service.create_tenant("acme", now=NOW)
    assert service.get_tenant("acme") == t
    assert service.get_tenant(t.id) == t
    with pytest.raises(Conflict):
        service.create_tenant("acme", now=NOW)
    _app(service)
    app = service.get_application("acme-app")
    assert app is not None
    assert app.tenant_name == "acme" and app.active
    assert app.scopes == tuple(SCOPES)
    assert app.entity_id("https://broker.example/") == "https://broker.example/acme-app"
    with pytest.raises(dataclasses.FrozenInstanceError):
        app.active = False  # type: ignore[misc]
    assert service.get_application("nope") is None
    with pytest.raises(Conflict):
        _app(service)
    with pytest.raises(NotFound):
        service.create_application(
            "ghost", "x-app", display_name="x", organization_name="x", scopes=["openid"],
            required_acr="gematik-ehealth-loa-high", now=NOW,
        )
    with pytest.raises(InvalidInput):
        service.create_application(
            "acme", "y-app", display_name="y", organization_name="y", scopes=["openid"],
            required_acr="loa-low", now=NOW,
        )
    assert [a.short_key for a in service.list_applications("acme")] == ["acme-app"]
    assert service.deactivate_application("acme-app", now=NOW + 1).active is False


def test_clients_and_secrets(service: TenancyService) -> None:
    _app(service)
    created = service.create_client(
        "acme-app", auth_method="client_secret_basic",
        redirect_uris=["https://app.example/cb"], now=NOW, name="web",
        scopes=["openid", "urn:telematik:alter"],
    )
    assert created.secret is not None and len(created.secret) >= 43
    assert created.secret not in repr(created)
    client = service.get_client("acme-app", created.client.client_id)
    assert client is not None and client.client_type == "confidential"
    assert client.secret_digest is not None and created.secret.encode() not in client.secret_digest
    assert service.verify_client_secret(client, created.secret)
    assert not service.verify_client_secret(client, created.secret + "x")
    assert not service.verify_client_secret(client, "")
    # a fresh service (cold cache) verifies too
    fresh = TenancyService(service.db.sessions, service.data_keys.provider)
    assert fresh.verify_client_secret(client, created.secret)
    # cost per verification: well below 3 ms
    t0 = time.process_time()
    for _ in range(200):
        service.verify_client_secret(client, created.secret)
    assert (time.process_time() - t0) / 200 < 0.003

    with pytest.raises(InvalidInput, match="application's scopes"):
        service.create_client(
            "acme-app", auth_method="none", redirect_uris=["https://a.example/cb"], now=NOW,
            scopes=["openid", "urn:telematik:email"],
        )
    with pytest.raises(InvalidInput, match="JWKS"):
        service.create_client(
            "acme-app", auth_method="private_key_jwt", redirect_uris=["https://a.example/cb"],
            now=NOW,
        )
    key = JWK.generate(kid="k1", use="sig", alg="ES256")
    with pytest.raises(InvalidInput, match="public keys only"):
        service.create_client(
            "acme-app", auth_method="private_key_jwt", redirect_uris=["https://a.example/cb"],
            now=NOW, jwks={"keys": [key.private_dict()]},
        )
    pk = service.create_client(
        "acme-app", auth_method="private_key_jwt", redirect_uris=["https://a.example/cb"],
        now=NOW, jwks={"keys": [key.public_dict()]}, name="backend",
    )
    assert pk.secret is None and pk.client.jwks[0].same_public_key(key)
    pub = service.create_client(
        "acme-app", auth_method="none", redirect_uris=["http://127.0.0.1:8080/cb"], now=NOW,
    )
    assert pub.client.client_type == "public" and pub.client.requires_pkce
    assert not service.verify_client_secret(pub.client, "anything")
    assert pub.client.scopes == tuple(SCOPES)

    updated = service.update_redirect_uris(
        "acme-app", created.client.client_id, ["https://app.example/cb2"], now=NOW + 5
    )
    assert updated.redirect_uris == ("https://app.example/cb2",)
    with pytest.raises(InvalidInput):
        service.update_redirect_uris("acme-app", "web", ["https://app.example/cb#x"], now=NOW)
    # narrowing the application below a client's scopes is refused
    with pytest.raises(Conflict, match="narrow the client"):
        service.update_application("acme-app", now=NOW, scopes=["openid"])
    reset = service.reset_client_secret("acme-app", "web", now=NOW + 6)
    new_view = service.get_client("acme-app", created.client.client_id)
    assert new_view is not None and reset.secret is not None
    assert service.verify_client_secret(new_view, reset.secret)
    assert not service.verify_client_secret(new_view, created.secret)

    assert service.deactivate_client("acme-app", "web", now=NOW).active is False
    app = service.get_application("acme-app")
    assert app is not None and len(app.clients) == 3
    service.delete_client("acme-app", "web")
    assert service.get_client("acme-app", created.client.client_id) is None
    with pytest.raises(NotFound):
        service.delete_client("acme-app", "web")


def test_application_keys_are_usable(service: TenancyService) -> None:
    _app(service)
    keys = service.application_keys("acme-app", NOW)
    assert len(keys.federation_keys) == 1
    fed = keys.federation_signing_key
    assert fed.private_key is not None and fed.use == "sig" and fed.alg == "ES256"
    token = sign_jws({"iss": "x"}, fed, typ="entity-statement+jwt")
    verify_jws(parse_jws(token), [JWK.from_dict(k) for k in keys.federation_jwks()["keys"]])
    # mTLS identity: self-signed cert <= 398 days (A_23185-01), exactly one x5c (A_23183)
    cert = x509.load_pem_x509_certificate(keys.mtls.cert_pem.encode())
    assert cert.issuer == cert.subject
    life = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert life.days <= 398
    assert len(keys.mtls.x5c) == 1 and keys.mtls.jwk.x5c == keys.mtls.x5c
    assert "PRIVATE KEY" in keys.mtls.key_pem
    rp = keys.relying_party_jwks()["keys"]
    assert {k["use"] for k in rp} == {"sig", "enc"}
    assert all("d" not in k for k in rp + keys.provider_jwks()["keys"])
    # the enc key decrypts what is encrypted to its public part
    enc_pub = JWK.from_dict(next(k for k in rp if k["use"] == "enc"))
    header, plain = decrypt_jwe(encrypt_jwe(b"hi", enc_pub), keys.id_token_encryption_keys)
    assert plain == b"hi" and header["kid"] == enc_pub.kid
    assert keys.id_token_signing_key.kid != fed.kid
    # kids are UUIDv7 (A_28208)
    for k in (fed, keys.id_token_signing_key, *keys.id_token_encryption_keys):
        assert k.kid is not None and k.kid[14] == "7"
    assert "PRIVATE" not in repr(keys)


def test_wrong_kek_cannot_open_keys(db_url: str, provider: StaticKeyProvider) -> None:
    engine, factory = open_database(db_url)
    try:
        svc = TenancyService(factory, provider)
        _app(svc)
        other = TenancyService(factory, StaticKeyProvider.generate())
        from healthid_broker.crypto.envelope import WrongKeyError

        with pytest.raises(WrongKeyError):
            other.application_keys("acme-app", NOW)
    finally:
        engine.dispose()


def test_registration_data(service: TenancyService) -> None:
    _app(service)
    data = service.registration_data(
        "acme-app", base="https://broker.example", environment="sandbox", now=NOW
    )
    assert set(data) == {"entity_id", "organization_name", "environment", "scopes", "keys"}
    assert data["entity_id"] == "https://broker.example/acme-app"
    keys = service.application_keys("acme-app", NOW)
    assert [k["kid"] for k in data["keys"]] == [keys.federation_signing_key.kid]
    assert data["keys"][0]["pem"].startswith("-----BEGIN PUBLIC KEY-----")
    with pytest.raises(InvalidInput):
        service.registration_data("acme-app", base="https://b", environment="xx", now=NOW)


def test_apply_switches_tenants_inside_one_transaction(service: TenancyService) -> None:
    from healthid_broker.tenancy.apply import apply_config

    def doc(*tenants: tuple[str, str]) -> dict[str, Any]:
        return {"tenants": [
            {"name": t, "applications": [{
                "short_key": k, "display_name": k, "organization_name": t,
                "scopes": ["openid"], "required_acr": "gematik-ehealth-loa-high",
                "clients": [{"name": "web", "auth_method": "client_secret_basic",
                             "redirect_uris": ["https://app.example/cb"]}],
            }]} for t, k in tenants]}

    dry = apply_config(service, doc(("one", "one-app"), ("two", "two-app")), now=NOW,
                       dry_run=True)
    assert dry.changes and service.list_tenants() == ()
    result = apply_config(service, doc(("one", "one-app"), ("two", "two-app")), now=NOW)
    assert sorted(result.secrets) == ["one-app/web", "two-app/web"]
    assert [(a.short_key, a.tenant_name) for a in service.list_applications()] == [
        ("one-app", "one"), ("two-app", "two")]
    assert apply_config(service, doc(("one", "one-app"), ("two", "two-app")),
                        now=NOW).changes == []
    # An application of another tenant is not taken over, and nothing of the file is kept.
    with pytest.raises(Conflict, match="belongs to another tenant"):
        apply_config(service, doc(("three", "x-app"), ("two", "one-app")), now=NOW)
    assert service.get_tenant("three") is None
    one = service.get_application("one-app")
    assert one is not None and one.tenant_name == "one"
