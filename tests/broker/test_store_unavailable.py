"""A full or unreachable transient store answers 503 with ``Retry-After`` — the friendly
page for people, OAuth ``temporarily_unavailable`` JSON at the token endpoint — never a 500
(T-27). The running demo's login store is swapped for one over a backend that refuses."""

from __future__ import annotations

import os
from collections.abc import Iterator

import httpx
import pytest

from e2e.harness import DemoThread
from healthid_broker.login.errors import StoreError, StoreFull
from healthid_broker.login.login_store import LoginStore
from healthid_broker.login.sealing import Sealer
from healthid_broker.login.store import SealedStore

from .broker_checks import assert_clean, authorize, base_params, token

pytestmark = pytest.mark.slow


class _RefusingBackend:
    """Refuses every write with ``StoreFull``; reads raise ``StoreError`` when
    ``unreachable``, else find nothing."""

    def __init__(self, *, unreachable: bool) -> None:
        self.unreachable = unreachable
        self.writes = 0

    def _read(self) -> None:
        if self.unreachable:
            raise StoreError("cannot reach the store")

    async def put(self, key: str, value: bytes, ttl_ms: int) -> None:
        self.writes += 1
        if self.unreachable:
            raise StoreError("cannot reach the store")
        raise StoreFull("the store holds its maximum of entries")

    async def get(self, key: str) -> bytes | None:
        self._read()
        return None

    async def take(self, key: str) -> bytes | None:
        self._read()
        return None

    async def delete(self, key: str) -> None:
        self._read()

    async def add_if_absent(self, key: str, ttl_ms: int) -> bool:
        self.writes += 1
        raise StoreFull("the store holds its maximum of entries")


@pytest.fixture(params=[False, True], ids=["full", "unreachable"])
def refusing(demo: DemoThread, request: pytest.FixtureRequest) -> Iterator[_RefusingBackend]:
    runtime = demo.demo.runtime
    assert runtime is not None
    service = runtime.service
    kept = service.store
    backend = _RefusingBackend(unreachable=request.param)
    sealer = Sealer({1: os.urandom(32)}, 1, os.urandom(32))
    service.store = LoginStore(SealedStore(backend, sealer))
    try:
        yield backend
    finally:
        service.store = kept


def _assert_503_page(r: httpx.Response, text: str) -> None:
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"].isdigit()
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["cache-control"] == "no-store"
    assert "location" not in r.headers
    assert text in r.text
    assert_clean(r.text)


def test_authorize_shows_a_503_page(demo: DemoThread, refusing: _RefusingBackend) -> None:
    r = authorize(demo, base_params(demo))  # the chooser would be next: a STARTED write
    _assert_503_page(r, "Bitte versuchen Sie es in einer Minute erneut")
    assert refusing.writes == 1


def test_the_page_speaks_english_when_asked(demo: DemoThread,
                                            refusing: _RefusingBackend) -> None:
    r = authorize(demo, {**base_params(demo), "lang": "en"})
    _assert_503_page(r, "Please try again in a minute")


def test_authorize_with_idp_hint_shows_a_503_page(demo: DemoThread,
                                                  refusing: _RefusingBackend) -> None:
    r = authorize(demo, base_params(demo, idp_hint=demo.idp("nordkasse")))
    _assert_503_page(r, "Bitte versuchen Sie es in einer Minute erneut")


def test_callback(demo: DemoThread, refusing: _RefusingBackend) -> None:
    r = httpx.get(f"{demo.info['broker_browser_base']}/demo/callback",
                  params={"state": "s" * 43, "code": "c"})
    if refusing.unreachable:
        _assert_503_page(r, "Bitte versuchen Sie es in einer Minute erneut")
    else:  # nothing to take: the login is over
        assert r.status_code == 400 and "text/html" in r.headers["content-type"]


def test_token(demo: DemoThread, refusing: _RefusingBackend) -> None:
    r = token(demo, {"grant_type": "authorization_code", "code": "c" * 43,
                     "redirect_uri": demo.info["redirect_uri"]})
    if not refusing.unreachable:  # nothing to take: the code is unknown
        assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
        return
    assert r.status_code == 503, r.text
    assert r.headers["retry-after"].isdigit()
    assert r.headers["cache-control"] == "no-store"
    assert r.json()["error"] == "temporarily_unavailable"
    assert_clean(r.text)
