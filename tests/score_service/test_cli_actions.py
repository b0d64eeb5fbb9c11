"""`scoreboard actions list|create|update`, run as the installed command against a running stack
with an admin service account's client credentials."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import orjson

from common.errors import Reason
from tests.score_service.helpers import new_action_id
from tests.support.clients import Api
from tests.support.processes import run_process
from tests.support.stack import Stack

SCOREBOARD = str(Path(sys.executable).parent / "scoreboard")


async def _cli(
    stack: Stack, *args: str, client: str = "admin-tool", secret: str | None = None
) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    env.update(
        SCOREBOARD_CLIENT_ID=client,
        SCOREBOARD_CLIENT_SECRET=secret if secret is not None else stack.admin_secret,
        SCOREBOARD_AUTH_ADDR=stack.address("auth"),
        SCOREBOARD_SCORE_ADDR=stack.address("score"),
    )
    code, out, err = await run_process(SCOREBOARD, "actions", *args, env=env, timeout=60)
    return code, out.decode(), err


async def test_create_list_and_update_through_the_cli(score_stack: Stack, api: Api) -> None:
    action_id = new_action_id("cli")
    code, out, err = await _cli(
        score_stack,
        "create",
        action_id,
        "--name",
        "Climb the tower",
        "--base-points",
        "20",
        "--multiplier",
        "1.25",
        "--daily-limit",
        "2",
        "--cooldown",
        "30",
        "--description",
        "Reach the top.",
    )
    assert code == 0, err
    assert out.startswith(f"created {action_id}: 25 points")

    code, out, err = await _cli(score_stack, "list", "--json")
    assert code == 0, err
    listed = {row["actionId"]: row for row in map(orjson.loads, out.splitlines())}
    assert listed[action_id] == {
        "actionId": action_id,
        "name": "Climb the tower",
        "description": "Reach the top.",
        "basePoints": 20,
        "difficultyMultiplier": 1.25,
        "points": 25,
        "dailyLimit": 2,
        "cooldownSeconds": 30,
        "requiresTicket": False,
        "minDurationSeconds": 0,
        "active": True,
    }
    code, table, _ = await _cli(score_stack, "list")
    assert code == 0
    assert table.splitlines()[0].split()[:2] == ["ID", "POINTS"]
    assert any(line.startswith(action_id) for line in table.splitlines())

    # Players see it and it counts what the catalog says.
    player = await api.register()
    reply = await api.complete(player, action_id)
    assert reply.status_code == 200, reply.text
    assert reply.json()["data"]["increment"] == 25

    # Only the options given change.
    code, out, err = await _cli(score_stack, "update", action_id, "--base-points", "40")
    assert code == 0, err
    assert out.startswith(f"updated {action_id}: 50 points")
    code, out, err = await _cli(score_stack, "update", action_id, "--deactivate")
    assert code == 0, err
    code, out, _ = await _cli(score_stack, "list", "--json")
    after = {row["actionId"]: row for row in map(orjson.loads, out.splitlines())}[action_id]
    assert (after["points"], after["active"], after["dailyLimit"], after["cooldownSeconds"]) == (
        50,
        False,
        2,
        30,
    )
    refused = await api.complete(player, action_id)
    assert refused.json()["code"] == Reason.ACTION_INACTIVE

    async with score_stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT actor, action FROM audit_log WHERE target = %s ORDER BY id", (action_id,)
        )
        assert await cur.fetchall() == [
            ("service:admin-tool", "action.create"),
            ("service:admin-tool", "action.update"),
            ("service:admin-tool", "action.update"),
        ]


async def test_cli_refusals_exit_1_with_their_reason(score_stack: Stack) -> None:
    # A game server's account has no admin scope.
    code, _, err = await _cli(
        score_stack, "list", client="game-server", secret=score_stack.game_secret
    )
    assert code == 1
    assert err.startswith("error: PERMISSION_DENIED:")
    code, _, err = await _cli(score_stack, "list", secret="wrong-secret")
    assert (code, err.split(":")[0:2]) == (1, ["error", " INVALID_CREDENTIALS"])
    code, _, err = await _cli(score_stack, "update", "no-such-action", "--activate")
    assert (code, err.strip()) == (1, "error: ACTION_NOT_FOUND: no action no-such-action")
    code, _, err = await _cli(
        score_stack, "create", "daily-login", "--name", "Again", "--base-points", "1"
    )
    assert code == 1 and err.startswith("error: ACTION_EXISTS:")
    code, _, err = await _cli(
        score_stack, "create", new_action_id(), "--name", "Too much", "--base-points", "-5"
    )
    assert code == 1 and err.startswith("error: INVALID_ARGUMENT: base_points")


async def test_cli_needs_credentials(score_stack: Stack) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCOREBOARD_")}
    process = await asyncio.create_subprocess_exec(
        SCOREBOARD, "actions", "list", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "SCOREBOARD_CLIENT_ID must be set" in err.decode()
