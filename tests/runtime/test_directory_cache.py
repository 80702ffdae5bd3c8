"""The application directory: one database load for concurrent misses, stale views served
while one background refresh runs, and a failed refresh keeps the last good view."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from healthid_broker.runtime.directory import TenancyDirectory
from healthid_broker.runtime.settings import BrokerSettings


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class _FakeDirectory(TenancyDirectory):
    def __init__(self, clock: list[float]) -> None:
        settings = BrokerSettings(public_base="https://b.example", data_dir=Path("/x"),
                                  environment="tu", master_entity_id="https://m.example",
                                  master_jwks={"keys": []}, directory_ttl=30)
        super().__init__(None, settings, pairwise_root=b"r" * 32,  # type: ignore[arg-type]
                         clock=lambda: clock[0])
        self.loads = 0
        self.fail = False
        self.release = threading.Event()

    def _load(self, short_key: str, now: float) -> Any:
        self.loads += 1
        self.release.wait(5)
        if self.fail:
            raise RuntimeError("database down")
        return f"view-{self.loads}"


@pytest.mark.anyio
async def test_concurrent_misses_share_one_load() -> None:
    d = _FakeDirectory([0.0])
    tasks = [asyncio.create_task(d.get("app")) for _ in range(20)]
    await asyncio.sleep(0.05)
    d.release.set()
    assert set(await asyncio.gather(*tasks)) == {"view-1"}
    assert d.loads == 1


@pytest.mark.anyio
async def test_stale_view_is_served_while_one_refresh_runs() -> None:
    clock = [0.0]
    d = _FakeDirectory(clock)
    d.release.set()
    assert await d.get("app") == "view-1"
    clock[0] = 31.0  # past the TTL
    d.release.clear()
    stale = await asyncio.gather(*(d.get("app") for _ in range(10)))
    assert set(stale) == {"view-1"}  # nobody waits for the database
    d.release.set()
    for _ in range(100):
        if d.loads == 2 and not d._loading:
            break
        await asyncio.sleep(0.01)
    assert d.loads == 2  # exactly one refresh for the ten requests
    assert await d.get("app") == "view-2"


@pytest.mark.anyio
async def test_failed_refresh_keeps_the_last_good_view(caplog: pytest.LogCaptureFixture) -> None:
    clock = [0.0]
    d = _FakeDirectory(clock)
    d.release.set()
    assert await d.get("app") == "view-1"
    clock[0] = 31.0
    d.fail = True
    assert await d.get("app") == "view-1"
    for _ in range(100):
        if not d._loading:
            break
        await asyncio.sleep(0.01)
    assert await d.get("app") == "view-1"
    assert "RuntimeError" in caplog.text and "database down" not in caplog.text


@pytest.mark.anyio
async def test_a_failed_first_load_raises_to_the_caller() -> None:
    d = _FakeDirectory([0.0])
    d.fail = True
    d.release.set()
    with pytest.raises(RuntimeError):
        await d.get("app")
