"""`scoreboard demo`: seeds players and simulates activity through the REST API, so the page
is alive; every completion it reports is a ledger row, and the ledger still adds up."""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

import pytest
from playwright.async_api import BrowserContext, WebSocket, expect

from ops.demo import simulate
from tests.edge.browser.conftest import StackFactory, screenshot, watch
from tests.support.stack import Stack


async def _ledger_adds_up(stack: Stack, user_ids: list[str]) -> int:
    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT s.user_id, s.total, COALESCE(sum(a.points), 0), count(a.id)"
            " FROM user_scores s LEFT JOIN user_actions a"
            " ON a.user_id = s.user_id AND a.board_id = s.board_id"
            " WHERE s.user_id = ANY(%s::uuid[]) GROUP BY s.user_id, s.total",
            (user_ids,),
        )
        rows: list[tuple[Any, ...]] = await cur.fetchall()
    assert len(rows) == len(user_ids)
    entries = 0
    for _, total, points, count in rows:
        assert total == points
        assert total >= 10  # everyone logged in at least
        entries += count
    return entries


async def test_demo_seeds_and_simulates_through_the_api(stack_factory: StackFactory) -> None:
    async with stack_factory() as stack:
        lines: list[str] = []
        result = await simulate(stack.edge_url, players=4, seconds=12, seed=7, out=lines.append)
        assert len(result.players) == 4
        assert lines[0].startswith("Seeding 4 demo players")
        # Every completion the demo counted is exactly one ledger row; refusals left none.
        assert await _ledger_adds_up(stack, result.players) == result.completed
        assert result.completed > 4  # more than the seed's logins: the simulation played
        board = await stack.redis.zcard(stack.keys.board("default").ranking)
        assert board == 4


@pytest.mark.browser
async def test_the_page_is_alive_while_the_demo_runs(
    stack_factory: StackFactory, context: BrowserContext
) -> None:
    async with stack_factory(websocket={"allow_anonymous": True}) as stack:
        watched = await watch(context)
        page = watched.page
        updates: list[int] = []

        def on_socket(ws: WebSocket) -> None:
            def on_frame(payload: str | bytes) -> None:
                message = json.loads(payload)
                if message["type"] == "LEADERBOARD_UPDATE":
                    updates.append(message["data"]["sequence"])

            ws.on("framereceived", on_frame)

        page.on("websocket", on_socket)
        await page.goto(stack.edge_url)
        await expect(page.locator("#status")).to_have_attribute("data-status", "live")
        result = await simulate(stack.edge_url, players=6, seconds=8, seed=3, out=lambda _: None)
        await expect(page.locator(".sb-row")).to_have_count(6)
        # Pushed, not reloaded: the board changed many times under the viewer's eyes.
        assert len(updates) >= 6
        assert updates == sorted(updates)
        for entry in await page.locator(".sb-row").all():
            assert await entry.get_attribute("data-user-id") in result.players
        await screenshot(page, "demo-desktop")
        assert watched.problems() == []


async def test_scoreboard_demo_command(shared_stack: Stack) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops", "demo", "--url", shared_stack.edge_url,
        "--players", "2", "--seconds", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    assert f"Seeding 2 demo players at {shared_stack.edge_url}" in output.decode()

    refused = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ops", "demo", "--players", "1000",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await refused.communicate()
    assert refused.returncode == 2
    assert b"--players must be 1-100" in output
