"""BrokerSettings.check: entity ids are https; loopback http pages only in the sandbox."""

from __future__ import annotations

from pathlib import Path

import pytest

from healthid_broker.runtime.settings import BrokerSettings

JWKS = {"keys": []}


def _s(env: str, public: str, browser: str | None = None) -> BrokerSettings:
    return BrokerSettings(public_base=public, browser_base=browser, data_dir=Path("/nonexistent"),
                          environment=env, master_entity_id="https://app-test.federationmaster.de",
                          master_jwks=JWKS)


def test_sandbox_may_serve_pages_on_loopback_http() -> None:
    _s("sandbox", "https://127.0.0.1:8401", "http://127.0.0.1:8400").check()


@pytest.mark.parametrize("browser", ["http://127.0.0.1:8400", "http://broker.example"])
def test_production_pages_must_be_https(browser: str) -> None:
    with pytest.raises(ValueError, match="browser base must be https"):
        _s("tu", "https://broker.example", browser).check()


@pytest.mark.parametrize("env", ["sandbox", "tu", "ru", "pu"])
def test_entity_ids_are_always_https(env: str) -> None:
    with pytest.raises(ValueError, match="public base must be https"):
        _s(env, "http://127.0.0.1:8401").check()


def test_sandbox_pages_on_non_loopback_http_refused() -> None:
    with pytest.raises(ValueError, match="browser base"):
        _s("sandbox", "https://127.0.0.1:8401", "http://demo.example").check()


def test_unknown_environment_refused() -> None:
    with pytest.raises(ValueError, match="unknown federation environment"):
        _s("prod", "https://broker.example").check()


def test_query_in_base_refused() -> None:
    with pytest.raises(ValueError, match="plain absolute URL"):
        _s("tu", "https://broker.example/?x=1").check()
