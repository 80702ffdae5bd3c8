"""Fixtures of the production-shape tests."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A key prefix of its own on the local Redis; every key under it is removed afterwards."""
    prefix = f"hidb-test-{uuid.uuid4().hex[:8]}:"
    yield prefix
    rds = redis.Redis(host="127.0.0.1", port=6379)
    for k in rds.scan_iter(match=f"{prefix}*"):
        rds.delete(k)
    rds.close()
