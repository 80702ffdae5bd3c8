"""Fixtures for the real-browser tests: one in-process demo (sandbox federation, broker, demo
app) on free loopback ports in a background event loop, and Debian's chromium via Playwright."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from healthid_broker.demo.run import Demo, DemoConfig

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# Runs before any page script; CDP-injected, so the page's CSP does not block it. Every CSP
# violation the browser reports becomes a console error the fixture collects.
CSP_WATCH = """
document.addEventListener("securitypolicyviolation", (e) => {
  console.error("CSP-VIOLATION " + e.effectiveDirective + " " + e.blockedURI);
});
"""


@dataclass
class RunningDemo:
    demo: Demo
    info: dict[str, Any]
    loop: asyncio.AbstractEventLoop

    def call(self, coro: Any, timeout: float = 60) -> Any:
        """Run a coroutine on the demo's event loop (from the test thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@pytest.fixture(scope="package")
def running_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningDemo]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="demo-loop", daemon=True)
    thread.start()
    data_dir: Path = tmp_path_factory.mktemp("browser-demo")
    demo = Demo(DemoConfig(host="127.0.0.1", port=0, data_dir=data_dir))
    running = RunningDemo(demo, {}, loop)
    try:
        running.info = running.call(demo.start())
        yield running
    finally:
        running.call(demo.stop())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Console:
    """Console errors, warnings, page errors and CSP violations seen by one browser context."""

    problems: list[str] = field(default_factory=list)

    def on_console(self, msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning"):
            self.problems.append(f"{msg.type}: {msg.text} @ {msg.location.get('url', '')}")

    def on_pageerror(self, exc: Exception) -> None:
        self.problems.append(f"pageerror: {exc}")

    def clean(self, *, ignore: Callable[[str], bool] = lambda _p: False) -> list[str]:
        return [p for p in self.problems if not ignore(p)]


@dataclass
class Session:
    context: BrowserContext
    page: Page
    console: Console


@pytest.fixture
def open_session(browser: Browser) -> Iterator[Callable[..., Session]]:
    contexts: list[BrowserContext] = []

    def _open(locale: str = "de-DE", **kwargs: Any) -> Session:
        ctx = browser.new_context(locale=locale, **kwargs)
        contexts.append(ctx)
        ctx.add_init_script(CSP_WATCH)
        console = Console()
        page = ctx.new_page()
        page.on("console", console.on_console)
        page.on("pageerror", console.on_pageerror)
        page.set_default_timeout(15_000)
        return Session(ctx, page, console)

    yield _open
    for c in contexts:
        c.close()

