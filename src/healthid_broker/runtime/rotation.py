"""Scheduled key rotation (A_24607, A_28209, T-26)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio

from ..tenancy.service import TenancyService
from .directory import TenancyDirectory

log = logging.getLogger("healthid_broker.runtime")


def rotate_due_keys(tenancy: TenancyService, directory: TenancyDirectory,
                    now: float) -> dict[str, Any]:
    """One scheduled rotation run (A_24607, A_28209, T-26): rotate what is due, then drop
    the cached application views so the next request publishes the new keys."""
    changes = tenancy.rotate_due(now)
    for short_key in changes:
        directory.invalidate(short_key)
        log.info("rotated keys of %s: %s", short_key,
                 ", ".join(f"{c.purpose} {c.change}" for c in changes[short_key]))
    return changes


async def rotation_loop(tenancy: TenancyService, directory: TenancyDirectory, *,
                        interval: float, clock: Callable[[], float] = time.time) -> None:
    """Run :func:`rotate_due_keys` every ``interval`` seconds until cancelled."""
    while True:
        try:
            await anyio.to_thread.run_sync(rotate_due_keys, tenancy, directory, clock())
        except Exception as exc:  # noqa: BLE001 — a failed run must not stop the schedule
            log.error("scheduled key rotation failed: %s", type(exc).__name__)
        await anyio.sleep(interval)
