"""Playing through the page: register, complete actions, watch the board from another browser."""

from __future__ import annotations

import secrets

import pytest
from playwright.async_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import DESKTOP, screenshot, watch
from tests.support.stack import Stack

pytestmark = pytest.mark.browser


async def register(page: Page, username: str, display: str, password: str = "correct horse") -> None:
    await page.get_by_role("tab", name="Register").click()
    await page.get_by_label("Username").and_(page.locator("#register-username")).fill(username)
    await page.locator("#register-display").fill(display)
    await page.locator("#register-password").fill(password)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.locator("#me-title")).to_have_text(display)


async def test_register_complete_and_another_browser_sees_it(
    live_stack: Stack, browser: Browser, context: BrowserContext
) -> None:
    other = await browser.new_context(viewport=DESKTOP)
    try:
        watcher = await watch(other)
        await watcher.page.goto(live_stack.edge_url)
        await expect(watcher.page.locator("#status")).to_have_attribute("data-status", "live")
        await watcher.page.evaluate("window.__sameDocument = true")

        player = await watch(context)
        page = player.page
        await page.goto(live_stack.edge_url)
        await expect(page.locator("#status")).to_have_attribute("data-status", "live")
        display = f"Ada {secrets.token_hex(2)}"
        await register(page, f"ada{secrets.token_hex(4)}", display)
        await expect(page.locator("#card-note")).to_contain_text("Complete an action")

        await page.locator('li[data-action-id="daily-login"] button').click()
        await expect(page.locator("#notice")).to_contain_text("+10 points")
        mine = page.locator(".sb-row.sb-me")
        await expect(mine).to_contain_text(display)
        await expect(mine.locator(".sb-score")).to_have_text("10 points")
        rank = await mine.get_attribute("data-rank")
        await expect(page.locator("#card-score")).to_have_text("10")
        await expect(page.locator("#card-rank")).to_have_text(f"{rank}{'st' if rank == '1' else ''}")
        await expect(page.locator('li[data-action-id="daily-login"]')).to_have_attribute(
            "data-state", "done"
        )

        seen = watcher.page.locator(".sb-row", has_text=display)
        await expect(seen.locator(".sb-score")).to_have_text("10 points")
        assert await watcher.page.evaluate("window.__sameDocument === true")
        await screenshot(page, "play-desktop")
        assert player.problems() == []
        assert watcher.problems() == []
    finally:
        await other.close()
