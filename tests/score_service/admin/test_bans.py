"""Banning through AdminService: a banned user leaves the ranking and the live board and is
kept out (even by completions racing the ban or queued behind it); unbanning restores them."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import orjson

from scoreboard.admin.v1 import admin_service_pb2 as pb
from tests.score_service.admin.support import (
    admin_metadata,
    admin_stub,
    assert_ledger_invariant,
    audit_count,
    completed,
    game_server_metadata,
    newer_than,
    ranked_ids,
    refusal,
    score_row,
    tap_action,
    top_ids,
    wait_applied,
)
from tests.support.clients import Api, Player, Viewer
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.tokens import issuer


async def _signed_in_again(api: Api, player: Player) -> Player:
    reply = await api.http.post(
        "/api/auth/login", json={"username": player.username, "password": "correct horse battery"}
    )
    assert reply.status_code == 200, reply.text
    return dataclasses.replace(player, access_token=reply.json()["data"]["accessToken"])


async def test_banned_user_leaves_the_top10_and_the_live_board_and_unban_restores(
    stack: Stack, api: Api
) -> None:
    cheat, second, third = await api.register(), await api.register(), await api.register()
    await completed(api, cheat, "complete-quest")  # 60
    await completed(api, second, "win-match")  # 25
    await completed(api, third, "daily-login")  # 10
    viewer = await Viewer.open(f"{stack.ws_url}?token={third.access_token}")
    try:
        listed = await viewer.wait(
            lambda m: m["type"] == "LEADERBOARD_UPDATE" and cheat.user_id in top_ids(m)
        )
        before = await score_row(stack.pool, cheat.user_id)
        async with admin_stub(stack) as admin:
            reply = await admin.BanUser(
                pb.BanUserRequest(user_id=cheat.user_id, reason="bot farming quests"),
                metadata=await admin_metadata(stack),
            )
            assert [(s.board_id, s.total, s.excluded) for s in reply.scores] == [
                ("default", 60, True)
            ]
            assert reply.audit_id > 0
            # The live board drops the user: the very next snapshot that no longer lists them.
            gone = await viewer.wait(
                lambda m: (
                    newer_than(m, listed)
                    and cheat.user_id not in top_ids(m)
                    and second.user_id in top_ids(m)
                )
            )
            assert [(e["rank"], e["userId"]) for e in gone["data"]["top10"]][:2] == [
                (1, second.user_id),
                (2, third.user_id),
            ]
            assert cheat.user_id not in await ranked_ids(stack)
            board = await api.http.get("/api/leaderboard")
            assert cheat.user_id not in [e["userId"] for e in board.json()["data"]["top10"]]
            rank = await api.http.get(f"/api/leaderboard/user/{cheat.user_id}", headers=second.auth)
            assert rank.status_code == 404, rank.text

            # Kept out: their completions are refused (their tokens died with the ban; see
            # test_a_banned_user_cannot_complete_or_start_actions for the ban itself) and
            # change nothing.
            refused = await api.complete(cheat, "daily-login")
            assert refused.status_code == 401, refused.text
            assert refused.json()["code"] == "TOKEN_REVOKED"
            total, version, points, count = await score_row(stack.pool, cheat.user_id)
            assert (total, points) == (60, 60)
            assert version == count == before[1] + 1  # the ban's own 0-point entry

            # A second ban is refused and writes nothing.
            audits = await audit_count(stack.pool)
            code, reason = await refusal(
                admin.BanUser(
                    pb.BanUserRequest(user_id=cheat.user_id, reason="again"),
                    metadata=await admin_metadata(stack),
                )
            )
            assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "USER_BANNED")
            assert await audit_count(stack.pool) == audits

            back = await admin.UnbanUser(
                pb.UnbanUserRequest(user_id=cheat.user_id, reason="appeal accepted"),
                metadata=await admin_metadata(stack),
            )
            assert [(s.total, s.excluded) for s in back.scores] == [(60, False)]
            restored = await viewer.wait(
                lambda m: newer_than(m, gone) and cheat.user_id in top_ids(m)
            )
            assert restored["data"]["top10"][0] == {
                "rank": 1,
                "userId": cheat.user_id,
                "username": cheat.display_name,
                "score": 60,
            }
            # The ban revoked the cheat's tokens for good: an unbanned user signs in again.
            stale = await api.complete(cheat, "daily-login")
            assert (stale.status_code, stale.json()["code"]) == (401, "TOKEN_REVOKED")
            await asyncio.sleep(1.05)  # a token of the ban's own second counts as before it
            cheat = await _signed_in_again(api, cheat)
            again = await api.complete(cheat, "daily-login")
            assert again.status_code == 200, again.text
            assert again.json()["data"]["newScore"] == 70

            entries = await admin.ListLedgerEntries(
                pb.ListLedgerEntriesRequest(user_id=cheat.user_id),
                metadata=await admin_metadata(stack),
            )
            kinds = [(e.kind, e.points, e.reason) for e in entries.entries]
            assert kinds == [
                (pb.LEDGER_ENTRY_KIND_ACTION, 10, ""),
                (pb.LEDGER_ENTRY_KIND_UNBAN, 0, "appeal accepted"),
                (pb.LEDGER_ENTRY_KIND_BAN, 0, "bot farming quests"),
                (pb.LEDGER_ENTRY_KIND_ACTION, 60, ""),
            ]
            assert {e.actor for e in entries.entries[1:3]} == {"service:admin-tool"}
            assert {e.path for e in entries.entries[1:3]} == {"admin"}
            audit = await admin.ListAuditLog(
                pb.ListAuditLogRequest(target=cheat.user_id),
                metadata=await admin_metadata(stack),
            )
            assert [(a.action, a.actor) for a in audit.entries] == [
                ("user.unban", "service:admin-tool"),
                ("user.ban", "service:admin-tool"),
            ]
            assert orjson.loads(audit.entries[1].detail_json)["reason"] == "bot farming quests"
            assert all(a.request_id for a in audit.entries)
    finally:
        await viewer.close()
    await wait_applied(stack, cheat.user_id)
    await assert_ledger_invariant(stack.pool)


async def test_a_banned_user_cannot_complete_or_start_actions(stack: Stack, api: Api) -> None:
    from scoreboard.score.v1 import score_service_pb2, score_service_pb2_grpc

    player = await api.register()
    await completed(api, player, "daily-login")
    async with admin_stub(stack) as admin:
        await admin.BanUser(
            pb.BanUserRequest(user_id=player.user_id, reason="abuse"),
            metadata=await admin_metadata(stack),
        )
    before = await score_row(stack.pool, player.user_id)
    # The ban revoked the player's tokens: refused before anything else is looked at.
    revoked = await api.complete(player, "win-match")
    assert (revoked.status_code, revoked.json()["code"]) == (401, "TOKEN_REVOKED")
    # A token issued after the ban (an external issuer that knows nothing of it) still meets
    # the ban itself.
    await asyncio.sleep(1.05)  # iat is in seconds: a token of the ban's own second is refused
    minted = issuer(stack).access_token(
        subject=player.user_id, role="user", scopes=(), lifetime=300, name=player.display_name
    )
    player = dataclasses.replace(player, access_token=minted.token)
    for action in ("win-match", "complete-quest"):
        reply = await api.complete(player, action)
        assert (reply.status_code, reply.json()["code"]) == (403, "USER_BANNED")
    start = await api.http.post(
        "/api/actions/start", json={"actionId": "defeat-boss"}, headers=player.auth
    )
    assert (start.status_code, start.json()["code"]) == (403, "USER_BANNED")
    channel = grpc.aio.insecure_channel(stack.address("score"))
    try:
        score = score_service_pb2_grpc.ScoreServiceStub(channel)
        code, reason = await refusal(
            score.CompleteAction(
                score_service_pb2.CompleteActionRequest(
                    action_id="win-match", user_id=player.user_id
                ),
                metadata=await game_server_metadata(stack),
            )
        )
    finally:
        await channel.close()
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "USER_BANNED")
    assert await score_row(stack.pool, player.user_id) == before


async def test_a_completion_waiting_behind_a_ban_sees_the_ban(stack: Stack, api: Api) -> None:
    """The ban's locks in the ban's order: the user's score row, then the users row. A
    completion queued on the score row must re-read users.banned when it gets the lock."""
    action = await tap_action(stack)
    player = await api.register()
    await completed(api, player, action)
    before = await score_row(stack.pool, player.user_id)
    async with stack.pool.connection() as conn, conn.transaction():
        await conn.execute(
            "SELECT 1 FROM user_scores WHERE user_id = %s FOR UPDATE", (player.user_id,)
        )
        pending = asyncio.create_task(api.complete(player, action))

        async def waiting() -> bool:
            await conn.execute("SELECT pg_stat_clear_snapshot()")
            cur = await conn.execute(
                "SELECT count(*) > 0 FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%%FROM user_scores s%%' AND datname = current_database()"
            )
            row = await cur.fetchone()
            return row is not None and row[0] is True

        await wait_for(waiting)
        await conn.execute("UPDATE users SET banned = true WHERE id = %s", (player.user_id,))
    reply = await pending
    assert (reply.status_code, reply.json()["code"]) == (403, "USER_BANNED"), reply.text
    assert await score_row(stack.pool, player.user_id) == before


async def test_a_ban_racing_completions_keeps_the_user_out(stack: Stack, api: Api) -> None:
    action = await tap_action(stack)
    player = await api.register()
    await completed(api, player, action)

    async def tap() -> int:
        return (await api.complete(player, action)).status_code

    taps = [asyncio.create_task(tap()) for _ in range(30)]
    await asyncio.sleep(0)
    async with admin_stub(stack) as admin:
        ban = await admin.BanUser(
            pb.BanUserRequest(user_id=player.user_id, reason="macro"),
            metadata=await admin_metadata(stack),
        )
    statuses = await asyncio.gather(*taps)
    # A tap after the ban is refused: 403 USER_BANNED by the score transaction, or 401
    # TOKEN_REVOKED once the ban's revocation of the user's tokens has reached the edge.
    assert set(statuses) <= {200, 401, 403}, statuses
    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM user_actions WHERE user_id = %s AND kind = 'action' AND id >"
            " (SELECT id FROM user_actions WHERE user_id = %s AND kind = 'ban')",
            (player.user_id, player.user_id),
        )
        row = await cur.fetchone()
    assert row is not None and row[0] == 0, "a completion was recorded after the ban"
    total, version, points, count = await score_row(stack.pool, player.user_id)
    assert total == points == 1 + statuses.count(200)
    assert version == count
    assert ban.scores[0].total == total
    await wait_applied(stack, player.user_id)
    assert player.user_id not in await ranked_ids(stack)
    await assert_ledger_invariant(stack.pool)
