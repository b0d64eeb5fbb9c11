"""Boards in the browser (issue 17): the switcher shows another board live, the countdown to its
next reset, and a period closed by hand through the API while the page shows that board: the
board empties at once and last period's winners appear. Audited with axe."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from axe_playwright_python.async_playwright import Axe  # type: ignore[import-untyped]
from playwright.async_api import BrowserContext, expect

from tests.edge.browser.conftest import StackFactory, screenshot, watch
from tests.support.boards import Scored, close_period, create_board, score
from tests.support.stack import Stack

pytestmark = pytest.mark.browser
WEEKLY = "weekly"


@pytest.fixture
async def boards_stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    async with stack_factory(websocket={"allow_anonymous": True}) as stack:
        await create_board(stack, WEEKLY, "This week", schedule="0 0 * * 1", zone="Europe/Berlin")
        await score(stack, WEEKLY, 1, [Scored(30, "Ann"), Scored(20, "Bob")])
        yield stack


async def test_switch_boards_and_see_a_reset(boards_stack: Stack, context: BrowserContext) -> None:
    watched = await watch(context)
    page = watched.page
    await page.goto(boards_stack.edge_url)
    await expect(page.locator("#status")).to_have_attribute("data-status", "live")
    await expect(page.locator("#boards-bar")).to_be_visible()
    await expect(page.locator("#board-title")).to_have_text("Top 10")

    await page.get_by_label("Board", exact=True).select_option(WEEKLY)
    await expect(page.locator("#board-title")).to_have_text("Top 10 · This week")
    rows = page.locator(".sb-row")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("Ann")
    countdown = page.locator("#reset-countdown")
    await expect(countdown).to_contain_text("Period 1 · resets in")
    await expect(page.locator("#winners")).to_be_hidden()
    await screenshot(page, "boards-weekly")

    # Closed by hand while the page shows the board: it empties, the winners appear.
    closed = await close_period(boards_stack, WEEKLY)
    assert closed.period == 1
    await expect(rows).to_have_count(0, timeout=15000)
    await expect(page.locator(".sb-empty")).to_be_visible()
    await expect(countdown).to_contain_text("Period 2", timeout=15000)
    winners = page.locator("#winners-list li")
    await expect(winners).to_have_count(2, timeout=15000)
    await expect(winners.first).to_contain_text("Ann")
    await expect(page.locator("#winners-title")).to_have_text("Period 1 winners")
    await screenshot(page, "boards-after-reset")
    results = await Axe().run(page)
    assert results.violations_count == 0, results.generate_report()

    # Back to the default board: its own board, no winners.
    await page.get_by_label("Board", exact=True).select_option("default")
    await expect(page.locator("#board-title")).to_have_text("Top 10")
    await expect(page.locator("#winners")).to_be_hidden()
    await expect(countdown).to_contain_text("never resets")
    assert watched.problems() == []
