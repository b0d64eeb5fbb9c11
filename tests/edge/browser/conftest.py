"""Browser fixtures: one headless Chromium (Debian's, driven by Playwright) per run, a fresh
context per test, pages that record console errors and every request they make, and screenshot
helpers that save under .artifacts/browser/."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    ViewportSize,
    async_playwright,
)

from tests.support.stack import Stack

StackFactory = Callable[..., AbstractAsyncContextManager[Stack]]

CHROMIUM = os.environ.get("SCOREBOARD_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[3] / ".artifacts" / "browser"
DESKTOP: ViewportSize = {"width": 1280, "height": 900}
PHONE: ViewportSize = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (CI does this)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Watched:
    """A page plus what it did: console errors, uncaught exceptions, requested URLs."""

    page: Page
    errors: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        # Chromium logs every failed fetch or socket ("Failed to load resource: ... 400",
        # "WebSocket connection to ... failed") as a console error: the network's doing, which
        # the page handles (a refused action, an edge restarting). Script errors remain.
        network = ("Failed to load resource", "WebSocket connection to")
        return [e for e in self.errors if not e.startswith(network)]


async def watch(context: BrowserContext) -> Watched:
    page = await context.new_page()
    watched = Watched(page)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            watched.errors.append(message.text)

    page.on("console", on_console)
    page.on("pageerror", lambda exc: watched.errors.append(f"uncaught: {exc}"))
    page.on("request", lambda request: watched.urls.append(request.url))
    page.on("websocket", lambda ws: watched.urls.append(ws.url))
    return watched


@pytest.fixture
async def context(browser: Browser) -> AsyncIterator[BrowserContext]:
    ctx = await browser.new_context(viewport=DESKTOP)
    try:
        yield ctx
    finally:
        await ctx.close()


@pytest.fixture(scope="module")
async def live_stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    """A stack whose edge lets anonymous viewers watch (as `make run` does)."""
    async with stack_factory(websocket={"allow_anonymous": True}) as stack:
        yield stack


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True, animations="disabled")
    return path
