"""examples/game_server.py as a reader would run it: a separate process with the game server
account's credentials and the stack's addresses in its environment. Its completions must land
in the ledger under the account's name, and the top 10 it watches must show the player."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator

import pytest

from tests.conftest import StackFactory
from tests.support.clients import Api, Player
from tests.support.processes import run_process
from tests.support.stack import Stack


@pytest.fixture(scope="module")
async def stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    """A board of its own: the player the example plays for leads it."""
    async with stack_factory() as stack:
        yield stack


async def _run_example(stack: Stack, *args: str, secret: str) -> tuple[int, str, str]:
    env = {
        **os.environ,
        "SCOREBOARD_AUTH_ADDR": stack.address("auth"),
        "SCOREBOARD_SCORE_ADDR": stack.address("score"),
        "SCOREBOARD_STREAM_ADDR": stack.address("stream"),
        "SCOREBOARD_CLIENT_SECRET": secret,
    }
    env.pop("SCOREBOARD_CLIENT_ID", None)  # the example's default: game-server
    argv = (sys.executable, "-m", "examples.game_server", *args)
    code, out, err = await run_process(*argv, env=env, timeout=60)
    return code, out.decode(), err


async def _player(stack: Stack) -> Player:
    async with Api(stack.edge_url) as api:
        return await api.register()


async def test_the_game_server_example_scores_for_a_player_and_watches_the_top10(
    stack: Stack,
) -> None:
    player = await _player(stack)
    code, out, err = await _run_example(
        stack, "--user-id", player.user_id, secret=stack.game_secret
    )
    assert code == 0, err
    lines = out.splitlines()
    # daily-login is worth 10, win-match 25 (the seeded catalog); the player leads a new board.
    assert "daily-login: +10 -> 10 (rank 1)" in lines, out
    assert "win-match: +25 -> 35 (rank 1)" in lines, out
    # Snapshots conflate, so how many it sees may vary; the latest one shows the player's 35.
    watched = [line for line in lines if line.startswith("top 10 #")]
    assert any(line.endswith(f": #1 {player.display_name} 35") for line in watched), out

    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT action_id, points, actor, path FROM user_actions"
            " WHERE user_id = %s ORDER BY id",
            (player.user_id,),
        )
        rows = await cur.fetchall()
    assert rows == [
        ("daily-login", 10, "service:game-server", "grpc"),
        ("win-match", 25, "service:game-server", "grpc"),
    ]


async def test_the_example_reports_a_refusal_and_needs_a_secret(stack: Stack) -> None:
    player = await _player(stack)
    code, out, err = await _run_example(
        stack,
        "--user-id",
        player.user_id,
        "--actions",
        "no-such-action",
        secret=stack.game_secret,
    )
    assert code == 0, err
    assert "no-such-action: refused (ACTION_NOT_FOUND)" in out, out

    code, out, err = await _run_example(stack, "--user-id", player.user_id, secret="")
    assert code == 2 and "--client-secret" in err, err
