"""LoginStore: entries it cannot read count as expired, never as an exception.

A login in flight across an upgrade (another release's format), an entry sealed under a
key this broker no longer holds, and keys no entry can have (empty, over-long request
values) all read as ``None`` — the provider then shows its "please start again" page
instead of failing with a 500.
"""

from __future__ import annotations

import logging
import os

import pytest

from healthid_broker.login import AppRequest, LoginStore, MemoryBackend, SealedStore, Sealer
from healthid_broker.login.login_store import PURPOSE_CODE, PURPOSE_STARTED, PURPOSE_UPSTREAM
from healthid_broker.login.sealing import MAX_KEY_LENGTH
from healthid_broker.login.transaction import encode, send_upstream, start

from .test_login_transaction import V1_UPSTREAM_PENDING

pytestmark = pytest.mark.anyio

SEALER = Sealer({1: os.urandom(32)}, 1, os.urandom(32))
APP = AppRequest(application="https://b/x", client_id="cid", redirect_uri="https://app/cb",
                 scopes=("openid",), state=None, nonce=None, code_challenge=None,
                 code_challenge_method=None)
IDP = "https://idp.example/kk"
SEALER_INDEX_KEY = os.urandom(32)


def _store() -> tuple[LoginStore, SealedStore]:
    sealed = SealedStore(MemoryBackend(clock=lambda: 0.0), SEALER)
    return LoginStore(sealed), sealed


async def test_pending_login_of_the_previous_format_reads_as_expired(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, sealed = _store()
    await sealed.put(PURPOSE_UPSTREAM, "old-state", V1_UPSTREAM_PENDING, 300)
    with caplog.at_level(logging.WARNING, logger="healthid_broker.login"):
        assert await store.take_pending("old-state", now=1) is None
    text = caplog.text
    assert "login.upstream" in text and "format version 1, this release reads 2" in text
    assert "old-state" not in text  # the store key (the upstream state) is never logged
    assert await sealed.get(PURPOSE_UPSTREAM, "old-state") is None  # and it is gone


async def test_current_format_still_reads() -> None:
    store, _ = _store()
    pending = send_upstream(start(APP, txn_id="t", now=0, idp=IDP), upstream=b"up", now=0)
    assert await store.put_pending("s", pending, now=0)
    assert await store.take_pending("s", now=1) == pending


async def test_entry_sealed_under_a_retired_key_reads_as_expired(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = MemoryBackend(clock=lambda: 0.0)
    old = SealedStore(backend, Sealer({7: os.urandom(32)}, 7, SEALER_INDEX_KEY))
    await old.put(PURPOSE_STARTED, "t", encode(start(APP, txn_id="t", now=0)), 300)
    store = LoginStore(SealedStore(backend, Sealer({1: os.urandom(32)}, 1, SEALER_INDEX_KEY)))
    with caplog.at_level(logging.WARNING, logger="healthid_broker.login"):
        assert await store.take_started("t", now=1) is None
    assert "key id 7" in caplog.text


@pytest.mark.parametrize("key", ["", "x" * (MAX_KEY_LENGTH + 1), "x" * 100_000])
async def test_keys_no_entry_can_have_read_as_absent(key: str) -> None:
    store, _ = _store()
    assert await store.take_started(key, now=0) is None
    assert await store.take_pending(key, now=0) is None
    assert await store.take_code(key, now=0) is None


async def test_an_entry_of_another_state_reads_as_absent() -> None:
    store, sealed = _store()
    # a STARTED transaction written under the code purpose (a programming error) is refused
    await sealed.put(PURPOSE_CODE, "k", encode(start(APP, txn_id="k", now=0)), 300)
    assert await store.take_code("k", now=1) is None
