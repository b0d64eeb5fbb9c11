"""`scoreboard admin ...` as an operator runs it: a separate process with the admin service
account's credentials in its environment, talking to the stack over gRPC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support.clients import Api
from tests.support.ledger import assert_ledger_invariant, score_row
from tests.support.processes import admin_cli
from tests.support.stack import Stack
from tests.support.stack_fixtures import stack_and_api

stack, api = stack_and_api(scope="module")


async def _cli(
    stack: Stack, *args: str, client: str = "admin-tool", secret: str | None = None
) -> tuple[int, Any, str]:
    return await admin_cli(stack, "admin", *args, client=client, secret=secret)


async def test_admin_cli_adjusts_voids_bans_and_reads_the_audit(stack: Stack, api: Api) -> None:
    player = await api.register()
    reply = await api.complete(player, "complete-quest")
    assert reply.status_code == 200, reply.text

    code, body, err = await _cli(stack, "adjust", player.user_id, "-15", "--reason", "typo fix")
    assert code == 0, err
    # int64 fields print as JSON strings (the protobuf JSON mapping).
    assert body["score"] == {"board_id": "default", "total": "45", "version": "2"}
    code, body, err = await _cli(stack, "adjust", player.user_id, "20", "--reason", "bonus")
    assert code == 0, err
    assert body["score"]["total"] == "65"

    code, ledger, err = await _cli(stack, "ledger", player.user_id)
    assert code == 0, err
    quest = next(e for e in ledger["entries"] if e.get("action_id") == "complete-quest")
    code, body, err = await _cli(stack, "void", quest["entry_id"], "--reason", "exploit")
    assert code == 0, err
    assert body["entry"]["kind"] == "LEDGER_ENTRY_KIND_VOID"
    assert (body["entry"]["points"], body["score"]["total"]) == ("-60", "5")
    code, body, err = await _cli(stack, "ban", player.user_id, "--reason", "abuse")
    assert code == 0, err
    assert body["scores"][0]["excluded"] is True

    code, audit, err = await _cli(stack, "audit", "--target", player.user_id)
    assert code == 0, err
    assert [a["action"] for a in audit["entries"]] == ["user.ban", "score.adjust", "score.adjust"]
    code, audit, err = await _cli(stack, "audit", "--action", "ledger.void", "--page-size", "1")
    assert code == 0, err
    assert audit["entries"][0]["target"] == quest["entry_id"]
    assert all(a["actor"] == "service:admin-tool" for a in audit["entries"])
    await assert_ledger_invariant(stack.pool)


async def test_admin_cli_refusals_exit_1_with_the_reason(
    stack: Stack, api: Api, tmp_path: Path
) -> None:
    player = await api.register()
    assert (await api.complete(player, "daily-login")).status_code == 200
    before = await score_row(stack.pool, player.user_id)

    code, body, err = await _cli(stack, "ban", player.user_id, "--reason", "x", secret="wrong")
    assert (code, body) == (1, None)
    assert "refused: INVALID_CREDENTIALS" in err, err
    assert "wrong" not in err

    code, body, err = await _cli(
        stack,
        "ban",
        player.user_id,
        "--reason",
        "x",
        client="game-server",
        secret=stack.game_secret,
    )
    assert (code, body) == (1, None)
    assert "refused: PERMISSION_DENIED" in err, err

    code, body, err = await _cli(stack, "adjust", player.user_id, "-100", "--reason", "x")
    assert (code, body) == (1, None)
    assert "refused: NEGATIVE_TOTAL" in err, err

    code, _, err = await _cli(stack, "ban", player.user_id)
    assert code == 2 and "--reason" in err
    assert await score_row(stack.pool, player.user_id) == before

    secret_file = tmp_path / "secret"
    secret_file.write_text(stack.admin_secret + "\n")
    code, body, err = await _cli(
        stack, "--client-secret-file", str(secret_file), "ledger", player.user_id, secret=""
    )
    assert code == 0, err
    assert [e["action_id"] for e in body["entries"]] == ["daily-login"]
