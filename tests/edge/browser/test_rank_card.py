"""The player's card follows its own rank live (issue 18), in Chromium through the real stack:
two players, A in the page and B through the API. B passes A: A's page shows a toast naming B
and A's new rank, without a reload and without asking for the rank (no polling); A completes an
action in the page: the card follows ("self"); the players around A come from the around-me
query. The friends view lists chosen players, by name or id, with their ranks in the list."""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import AsyncIterator

import pytest
from playwright.async_api import BrowserContext, Page, expect

from stream_service.config import RankSettings
from tests.edge.browser.conftest import StackFactory, Watched, screenshot, watch
from tests.edge.browser.test_play import ordinal, register
from tests.support.clients import Api
from tests.support.stack import Stack

pytestmark = pytest.mark.browser

# No throttle, a fast ticker, a percentile from the first player (the defaults hide it below
# 100 players).
RANKS = RankSettings(tick_seconds=0.5, min_interval_seconds=0.0, percentile_min_players=1)
QUIET_MS = 4_000


@pytest.fixture(scope="module")
async def rank_stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    async with stack_factory(websocket={"allow_anonymous": True}, stream={"rank": RANKS}) as stack:
        yield stack


@pytest.fixture
async def api(rank_stack: Stack) -> AsyncIterator[Api]:
    async with Api(rank_stack.edge_url) as client:
        yield client


async def _join(page: Page, stack: Stack, name: str) -> str:
    """Register in the page; returns the player's id."""
    await page.goto(stack.edge_url)
    await expect(page.locator("#status")).to_have_attribute("data-status", "live")
    await page.evaluate("window.__sameDocument = true")
    await register(page, f"{name.lower()}{secrets.token_hex(4)}", f"{name} {secrets.token_hex(2)}")
    user_id = await page.locator("#friends-my-id").inner_text()
    assert re.fullmatch(r"[0-9a-f-]{36}", user_id)
    return user_id


async def _play(page: Page, action: str) -> None:
    item = page.locator(f'li[data-action-id="{action}"]')
    await item.locator("button").click()
    await expect(item).not_to_have_attribute("data-state", "ready")


def _rank_reads(watched: Watched, since: int = 0) -> list[str]:
    return [u for u in watched.urls[since:] if "/api/leaderboard/user/" in u]


async def _number(page: Page, selector: str) -> int:
    return int(re.sub(r"[^0-9]", "", await page.locator(selector).inner_text()))


async def test_passed_by_b_then_own_action_update_the_card_live_without_polling(
    rank_stack: Stack, api: Api, context: BrowserContext
) -> None:
    watched = await watch(context)
    page = watched.page
    a_id = await _join(page, rank_stack, "Ann")
    await _play(page, "daily-login")  # 10
    await expect(page.locator("#card-score")).to_have_text("10")
    rank = await _number(page, "#card-rank")
    total = await _number(page, "#card-total")
    # The pushed rank carries the percentile (top x %, rounded up to a tenth).
    share = math.ceil(1000 * rank / total) / 10
    await expect(page.locator("#card-percentile")).to_have_text(f"top {share:g}\u00a0%")
    await expect(page.locator("#card-tier-stat")).to_be_hidden()  # no tiers on this board

    bob = await api.register()
    reply = await api.complete(bob, "complete-quest")  # 60: passes Ann
    assert reply.status_code == 200, reply.text
    toast = page.locator("#toast")
    await expect(toast).to_have_text(f"{bob.display_name} passed you — you are now #{rank + 1}")
    await expect(toast).to_have_attribute("role", "status")
    await expect(toast).to_have_attribute("aria-live", "polite")
    await expect(page.locator("#card-rank")).to_have_text(ordinal(rank + 1))
    await expect(page.locator("#card-next")).to_have_text("50")  # 60 - 10
    # The players around Ann, from the around-me query: Bob just above her.
    around = page.locator("#around li")
    await expect(around.filter(has_text=bob.display_name)).to_have_attribute(
        "data-user-id", bob.user_id
    )
    mine = page.locator("#around li.me")
    await expect(mine).to_have_attribute("data-user-id", a_id)
    await expect(mine).to_contain_text(f"#{rank + 1}")
    assert await page.evaluate("window.__sameDocument === true")  # no reload
    await screenshot(page, "rank-card-passed")

    # Nothing changes now: nothing asks for the rank (the card is pushed, not polled).
    since = len(watched.urls)
    await page.wait_for_timeout(QUIET_MS)
    assert _rank_reads(watched, since) == []

    # Ann plays in the page: the card follows her own change (70, back above Bob).
    await _play(page, "complete-quest")
    await expect(page.locator("#card-score")).to_have_text("70")
    await expect(page.locator("#card-rank")).to_have_text(ordinal(rank))
    if rank == 1:
        await expect(page.locator("#card-next")).to_have_text("Leader")
    await expect(mine).to_contain_text(f"#{rank}")
    # The toast went away by itself.
    await expect(toast).to_have_text("", timeout=10_000)
    # The rank itself was never asked for: only the around-me query, after a change.
    assert [u for u in _rank_reads(watched) if not re.search(r"/around\?", u)] == []
    assert watched.problems() == []


async def test_friends_by_name_and_id_with_ranks_in_the_list(
    rank_stack: Stack, api: Api, context: BrowserContext
) -> None:
    watched = await watch(context)
    page = watched.page
    a_id = await _join(page, rank_stack, "Cleo")
    await _play(page, "share-replay")  # 5
    dana = await api.register()
    reply = await api.complete(dana, "win-match")  # 25
    assert reply.status_code == 200, reply.text
    eve = await api.register()  # no score yet
    # Dana is on the live board, so her name is known; Eve is given by id; a stranger is not.
    await expect(page.locator(".sb-row", has_text=dana.display_name)).to_be_visible()
    await page.locator("#friends-input").fill(f"{dana.display_name.upper()}, {eve.user_id}, Nobody")
    await page.get_by_role("button", name="Compare").click()

    rows = page.locator("#friends-rows tr")
    await expect(rows).to_have_count(3)
    await expect(rows.nth(0)).to_have_attribute("data-user-id", dana.user_id)
    await expect(rows.nth(0).locator("td").nth(0)).to_have_text("#1")
    await expect(rows.nth(1)).to_have_attribute("data-user-id", a_id)
    await expect(rows.nth(1).locator("td").nth(0)).to_have_text("#2")
    await expect(rows.nth(1)).to_contain_text("(you)")
    await expect(rows.nth(2)).to_have_attribute("data-user-id", eve.user_id)
    await expect(rows.nth(2)).to_contain_text("not ranked yet")
    global_rank = await _number(page, "#card-rank")
    await expect(rows.nth(1).locator("td").nth(3)).to_have_text(f"#{global_rank}")
    await expect(page.locator("#friends-note")).to_contain_text("Not found: Nobody")
    await screenshot(page, "friends")

    # Remembered: a reload shows the same list, asked for again.
    await page.reload()
    await expect(page.locator("#friends-rows tr")).to_have_count(3)
    value = await page.locator("#friends-input").input_value()
    assert dana.display_name in value and eve.user_id in value
    assert watched.problems() == []
