"""Fixtures of the end-to-end tests: one demo per module (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from healthid_broker.demo.run import DemoConfig

from .harness import DemoThread


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoThread]:
    d: Path = tmp_path_factory.mktemp("demo")
    t = DemoThread(DemoConfig(host="127.0.0.1", port=0, data_dir=d))
    t.start()
    try:
        yield t
    finally:
        t.stop()
