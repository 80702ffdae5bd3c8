"""Shared set-up of the key-set tests (rotation, RSA keys): one tenant with one application."""

from __future__ import annotations

from healthid_broker.tenancy import TenancyService

DAY = 86400.0
T0 = 1_800_000_000.0


def setup_app(service: TenancyService) -> None:
    service.create_tenant("acme", now=T0)
    service.create_application(
        "acme", "acme-app", display_name="Acme", organization_name="Acme GmbH",
        scopes=["openid"], required_acr="gematik-ehealth-loa-substantial", now=T0,
    )


def key_states(service: TenancyService, purpose: str) -> list[tuple[str, str]]:
    """``(kid, state)`` of the application's keys of ``purpose``."""
    return [(k.kid, k.state) for k in service.key_infos("acme-app") if k.purpose == purpose]
