"""Scheduled key rotation: what is due rotates, and the broker's cached view is dropped."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from healthid_broker.crypto.key_provider import LocalFileKeyProvider
from healthid_broker.runtime.directory import TenancyDirectory
from healthid_broker.runtime.rotation import rotate_due_keys
from healthid_broker.runtime.settings import BrokerSettings
from healthid_broker.storage.db import default_database_url, open_database
from healthid_broker.tenancy.service import TenancyService

DAY = 86400.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_due_mtls_certificate_is_renewed_and_published(tmp_path: Path) -> None:
    _e, factory = open_database(default_database_url(tmp_path))
    tenancy = TenancyService(factory, LocalFileKeyProvider.in_data_dir(tmp_path))
    t0 = time.time()
    tenancy.create_tenant("acme", now=t0)
    tenancy.create_application("acme", "acme-app", display_name="A", organization_name="ACME",
                               scopes=["openid"], required_acr="gematik-ehealth-loa-high", now=t0)
    clock = [t0]
    settings = BrokerSettings(public_base="https://broker.example", data_dir=tmp_path,
                              environment="tu", master_entity_id="https://m.example",
                              master_jwks={"keys": []})
    directory = TenancyDirectory(tenancy, settings, pairwise_root=b"r" * 32,
                                 clock=lambda: clock[0])
    before = await directory.get("acme-app")
    assert before is not None
    assert rotate_due_keys(tenancy, directory, t0) == {}  # nothing due on day one
    # Almost a year later the self-signed mTLS certificate (≤ 398 days) is due for renewal.
    later = t0 + 380 * DAY
    clock[0] = t0 + 1  # within the directory's cache TTL: only invalidation can refresh it
    changes = rotate_due_keys(tenancy, directory, later)
    assert "acme-app" in changes
    assert any(c.purpose.startswith("mtls") for c in changes["acme-app"])
    after = await directory.get("acme-app")
    assert after is not None and after is not before
    old_certs = {k.x5c for k in before.entity.mtls_sig_jwks}
    assert {k.x5c for k in after.entity.mtls_sig_jwks} - old_certs, "a new certificate is published"
