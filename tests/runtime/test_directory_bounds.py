"""The application directory's caches are bounded: a flood of random short keys (unknown
ones included) does not grow memory, does not reach the database for every repeat, and
does not push the real applications out."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from healthid_broker.runtime.directory import TenancyDirectory
from healthid_broker.runtime.settings import BrokerSettings

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _CountingDirectory(TenancyDirectory):
    """Known applications are the keys starting with ``app``; loads are counted."""

    def __init__(self, clock: list[float], **kw: Any) -> None:
        s = BrokerSettings(public_base="https://b.example", data_dir=Path("/x"),
                           environment="tu", master_entity_id="https://m.example",
                           master_jwks={"keys": []}, directory_ttl=30)
        super().__init__(None, s, pairwise_root=b"r" * 32,  # type: ignore[arg-type]
                         clock=lambda: clock[0], **kw)
        self.loads: dict[str, int] = {}

    def _load(self, short_key: str, now: float) -> Any:
        self.loads[short_key] = self.loads.get(short_key, 0) + 1
        return f"view-of-{short_key}" if short_key.startswith("app") else None


async def test_a_flood_of_unknown_keys_stays_bounded() -> None:
    clock = [0.0]
    d = _CountingDirectory(clock, max_entries=50, max_unknown=100, negative_ttl=5)
    assert await d.get("app-real") == "view-of-app-real"
    for _ in range(3000):
        assert await d.get(secrets.token_urlsafe(12)) is None
        assert len(d._unknown) <= 100 and len(d._cache) <= 50
    assert len(d._unknown) == 100
    # the real application was never pushed out and is not loaded again
    assert await d.get("app-real") == "view-of-app-real"
    assert d.loads["app-real"] == 1


async def test_unknown_keys_are_remembered_briefly() -> None:
    clock = [0.0]
    d = _CountingDirectory(clock, negative_ttl=5)
    for _ in range(20):
        assert await d.get("nope") is None
    assert d.loads["nope"] == 1
    clock[0] = 5.0  # the negative entry is too old: asked again
    assert await d.get("nope") is None
    assert d.loads["nope"] == 2
    d.invalidate("nope")  # e.g. the application was just created
    assert await d.get("nope") is None
    assert d.loads["nope"] == 3


async def test_known_applications_are_an_lru() -> None:
    clock = [0.0]
    d = _CountingDirectory(clock, max_entries=3)
    for k in ("app1", "app2", "app3"):
        await d.get(k)
    await d.get("app1")  # used: app2 is now the least recently used
    await d.get("app4")
    assert set(d._cache) == {"app1", "app3", "app4"}
    await d.get("app2")
    assert d.loads["app2"] == 2 and d.loads["app1"] == 1


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(max_size=70), max_size=300))
def test_any_sequence_of_keys_respects_both_bounds(keys: list[str]) -> None:
    import anyio

    async def run() -> None:
        clock = [0.0]
        d = _CountingDirectory(clock, max_entries=7, max_unknown=11)
        for i, k in enumerate(keys):
            clock[0] = i * 0.5
            await d.get(k)
            await d.get("app" + k)
            assert len(d._cache) <= 7 and len(d._unknown) <= 11
            assert not d._loading

    anyio.run(run)
