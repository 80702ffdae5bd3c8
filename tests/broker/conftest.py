"""Fixtures of the broker's negative tests: one demo per module (tests/e2e/harness.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.harness import DemoThread
from healthid_broker.demo.run import DemoConfig


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoThread]:
    t = DemoThread(DemoConfig(host="127.0.0.1", port=0, data_dir=tmp_path_factory.mktemp("b")))
    t.start()
    try:
        yield t
    finally:
        t.stop()
