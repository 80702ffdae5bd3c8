"""Fixtures for the sandbox tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sandbox_env_helpers import Env, sandbox_env


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def env(tmp_path: Path, anyio_backend: str) -> AsyncIterator[Env]:
    async with sandbox_env(tmp_path) as e:
        yield e
