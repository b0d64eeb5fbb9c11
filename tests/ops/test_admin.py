"""AdminService through the real path: gRPC with real tokens -> score_service -> PostgreSQL
ledger + outbox -> relay -> Redis Stream -> leaderboard_service -> pub/sub -> stream_service ->
edge -> WebSocket. Every act is checked against the ledger invariants, the ranking and the
audit log."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson
import pytest

from common.errors import from_rpc_error
from leaderboard_service.scripts import text
from scoreboard.admin.v1 import admin_service_pb2 as pb
from tests.conftest import StackFactory
from tests.ops.admin_support import (
    admin_metadata,
    admin_stub,
    assert_ledger_invariant,
    audit_count,
    game_server_metadata,
    score_row,
)
from tests.support.clients import Api, Player, Viewer, metadata, service_token
from tests.support.servers import wait_for
from tests.support.stack import Stack


@pytest.fixture(scope="module")
async def stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    """A board of this module's own: the tests reason about its top 10."""
    async with stack_factory() as stack:
        yield stack


@pytest.fixture
async def api(stack: Stack) -> AsyncIterator[Api]:
    async with Api(stack.edge_url) as client:
        yield client


async def _complete(api: Api, player: Player, action_id: str) -> dict[str, Any]:
    reply = await api.complete(player, action_id)
    assert reply.status_code == 200, reply.text
    data: dict[str, Any] = reply.json()["data"]
    return data


async def _ranked(stack: Stack) -> list[str]:
    """User ids of the Redis ranking, best first."""
    members: list[Any] = await stack.redis.zrange(stack.keys.board("default").ranking, 0, -1)
    return [text(m).split(":", 1)[1] for m in members]


async def _applied_version(stack: Stack, user_id: str) -> int:
    state: Any = await stack.redis.hget(stack.keys.board("default").users, user_id)
    return int(text(state).split("|", 1)[0]) if state else 0


async def _settled(stack: Stack, user_id: str) -> None:
    """Wait until the ranking has applied every ledger change of the user."""
    _, version, _, _ = await score_row(stack.pool, user_id)

    async def applied() -> bool:
        applied_version: int = await _applied_version(stack, user_id)
        return applied_version == version

    await wait_for(applied)


def _after(message: dict[str, Any], earlier: dict[str, Any]) -> bool:
    """A LEADERBOARD_UPDATE newer than `earlier` (sequences only grow)."""
    return bool(
        message["type"] == "LEADERBOARD_UPDATE"
        and message["data"]["sequence"] > earlier["data"]["sequence"]
    )


def _top_ids(message: dict[str, Any]) -> list[str]:
    return [entry["userId"] for entry in message["data"]["top10"]]


async def _refused(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = from_rpc_error(caught.value)
    return error.code, error.reason


async def test_banned_user_leaves_the_top10_and_the_live_board_and_unban_restores(
    stack: Stack, api: Api
) -> None:
    cheat, second, third = await api.register(), await api.register(), await api.register()
    await _complete(api, cheat, "complete-quest")  # 60
    await _complete(api, second, "win-match")  # 25
    await _complete(api, third, "daily-login")  # 10
    viewer = await Viewer.open(f"{stack.ws_url}?token={third.access_token}")
    try:
        listed = await viewer.wait(
            lambda m: m["type"] == "LEADERBOARD_UPDATE" and cheat.user_id in _top_ids(m)
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
                    _after(m, listed)
                    and cheat.user_id not in _top_ids(m)
                    and second.user_id in _top_ids(m)
                )
            )
            assert [(e["rank"], e["userId"]) for e in gone["data"]["top10"]][:2] == [
                (1, second.user_id),
                (2, third.user_id),
            ]
            assert cheat.user_id not in await _ranked(stack)
            board = await api.http.get("/api/leaderboard")
            assert cheat.user_id not in [e["userId"] for e in board.json()["data"]["top10"]]
            rank = await api.http.get(f"/api/leaderboard/user/{cheat.user_id}", headers=second.auth)
            assert rank.status_code == 404, rank.text

            # Kept out: their completions are refused and change nothing.
            refused = await api.complete(cheat, "daily-login")
            assert refused.status_code == 403, refused.text
            assert refused.json()["code"] == "USER_BANNED"
            total, version, points, count = await score_row(stack.pool, cheat.user_id)
            assert (total, points) == (60, 60)
            assert version == count == before[1] + 1  # the ban's own 0-point entry

            # A second ban is refused and writes nothing.
            audits = await audit_count(stack.pool)
            code, reason = await _refused(
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
            restored = await viewer.wait(lambda m: _after(m, gone) and cheat.user_id in _top_ids(m))
            assert restored["data"]["top10"][0] == {
                "rank": 1,
                "userId": cheat.user_id,
                "username": cheat.display_name,
                "score": 60,
            }
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
    await _settled(stack, cheat.user_id)
    await assert_ledger_invariant(stack.pool)


async def test_void_changes_total_ledger_sum_and_ranking_together(stack: Stack, api: Api) -> None:
    player = await api.register()
    quest = await _complete(api, player, "complete-quest")  # 60
    await _complete(api, player, "win-match")  # 25
    viewer = await Viewer.open(f"{stack.ws_url}?token={player.access_token}")
    try:
        first = await viewer.wait(lambda m: m["type"] == "LEADERBOARD_UPDATE")
        async with admin_stub(stack) as admin:
            meta = await admin_metadata(stack)
            ledger = await admin.ListLedgerEntries(
                pb.ListLedgerEntriesRequest(user_id=player.user_id), metadata=meta
            )
            target = next(e for e in ledger.entries if e.action_id == "complete-quest")
            assert (target.points, target.kind) == (quest["increment"], pb.LEDGER_ENTRY_KIND_ACTION)
            reply = await admin.VoidLedgerEntry(
                pb.VoidLedgerEntryRequest(entry_id=target.entry_id, reason="exploit"),
                metadata=meta,
            )
            assert reply.entry.kind == pb.LEDGER_ENTRY_KIND_VOID
            assert reply.entry.points == -60
            assert reply.entry.voids_entry_id == target.entry_id
            assert (reply.score.total, reply.score.version) == (25, 3)
            assert await score_row(stack.pool, player.user_id) == (25, 3, 25, 3)
            # The ranking follows: the live board and the rank query show 25.
            await viewer.wait(
                lambda m: (
                    _after(m, first)
                    and {"userId": player.user_id, "score": 25}.items()
                    <= next(
                        (e for e in m["data"]["top10"] if e["userId"] == player.user_id), {}
                    ).items()
                )
            )
            rank = await api.http.get(
                f"/api/leaderboard/user/{player.user_id}", headers=player.auth
            )
            assert rank.json()["data"]["score"] == 25

            listed = await admin.ListLedgerEntries(
                pb.ListLedgerEntriesRequest(user_id=player.user_id), metadata=meta
            )
            voided = next(e for e in listed.entries if e.entry_id == target.entry_id)
            assert voided.voided_by_entry_id == reply.entry.entry_id

            # Refusals change nothing: twice, a void of a void, a missing entry, no reason.
            audits = await audit_count(stack.pool)
            for request, expected in (
                (
                    pb.VoidLedgerEntryRequest(entry_id=target.entry_id, reason="again"),
                    (grpc.StatusCode.FAILED_PRECONDITION, "LEDGER_ENTRY_ALREADY_VOIDED"),
                ),
                (
                    pb.VoidLedgerEntryRequest(entry_id=reply.entry.entry_id, reason="undo"),
                    (grpc.StatusCode.FAILED_PRECONDITION, "LEDGER_ENTRY_NOT_VOIDABLE"),
                ),
                (
                    pb.VoidLedgerEntryRequest(entry_id=10**12, reason="missing"),
                    (grpc.StatusCode.NOT_FOUND, "LEDGER_ENTRY_NOT_FOUND"),
                ),
                (
                    pb.VoidLedgerEntryRequest(entry_id=target.entry_id + 1, reason="  "),
                    (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
                ),
            ):
                assert await _refused(admin.VoidLedgerEntry(request, metadata=meta)) == expected
            assert await score_row(stack.pool, player.user_id) == (25, 3, 25, 3)
            assert await audit_count(stack.pool) == audits
    finally:
        await viewer.close()
    await _settled(stack, player.user_id)
    await _reconciled(stack)
    await assert_ledger_invariant(stack.pool)


async def _reconciled(stack: Stack) -> None:
    """Redis and PostgreSQL agree on every user's version, total and exclusion."""
    from scoreboard.leaderboard.v1 import leaderboard_service_pb2, leaderboard_service_pb2_grpc

    channel = grpc.aio.insecure_channel(stack.address("leaderboard"))
    try:
        stub = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
        reply = await stub.ReconcileRanking(
            leaderboard_service_pb2.ReconcileRankingRequest(),
            metadata=await admin_metadata(stack),
        )
    finally:
        await channel.close()
    assert reply.mismatched == 0, reply
    assert reply.users_in_database == reply.users_in_ranking


async def test_adjust_score_with_a_reason(stack: Stack, api: Api) -> None:
    player = await api.register()
    await _complete(api, player, "daily-login")  # 10
    async with admin_stub(stack) as admin:
        meta = await admin_metadata(stack)
        reply = await admin.AdjustScore(
            pb.AdjustScoreRequest(user_id=player.user_id, points=150, reason="tournament prize"),
            metadata=meta,
        )
        assert (reply.score.total, reply.score.version, reply.score.excluded) == (160, 2, False)
        assert reply.entry.kind == pb.LEDGER_ENTRY_KIND_ADJUST
        assert (reply.entry.points, reply.entry.reason) == (150, "tournament prize")
        assert reply.entry.actor == "service:admin-tool"
        down = await admin.AdjustScore(
            pb.AdjustScoreRequest(user_id=player.user_id, points=-40, reason="refund"),
            metadata=meta,
        )
        assert down.score.total == 120
        audits = await audit_count(stack.pool)
        for request, expected in (
            (
                pb.AdjustScoreRequest(user_id=player.user_id, points=-121, reason="too much"),
                (grpc.StatusCode.FAILED_PRECONDITION, "NEGATIVE_TOTAL"),
            ),
            (
                pb.AdjustScoreRequest(user_id=player.user_id, points=0, reason="nothing"),
                (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
            ),
            (
                pb.AdjustScoreRequest(user_id=player.user_id, points=10**7, reason="huge"),
                (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
            ),
            (
                pb.AdjustScoreRequest(user_id=player.user_id, points=5),
                (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
            ),
            (
                pb.AdjustScoreRequest(user_id="not-a-uuid", points=5, reason="x"),
                (grpc.StatusCode.INVALID_ARGUMENT, "INVALID_ARGUMENT"),
            ),
            (
                pb.AdjustScoreRequest(
                    user_id="00000000-0000-4000-8000-000000000000", points=5, reason="x"
                ),
                (grpc.StatusCode.NOT_FOUND, "USER_NOT_FOUND"),
            ),
            (
                pb.AdjustScoreRequest(
                    user_id=player.user_id, points=5, reason="x", board_id="other"
                ),
                (grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
            ),
        ):
            assert await _refused(admin.AdjustScore(request, metadata=meta)) == expected
        assert await score_row(stack.pool, player.user_id) == (120, 3, 120, 3)
        assert await audit_count(stack.pool) == audits

        # An adjustment of a banned user keeps them out of the ranking.
        await admin.BanUser(
            pb.BanUserRequest(user_id=player.user_id, reason="chargeback"), metadata=meta
        )
        banned = await admin.AdjustScore(
            pb.AdjustScoreRequest(user_id=player.user_id, points=1000, reason="late prize"),
            metadata=meta,
        )
        assert (banned.score.total, banned.score.excluded) == (1120, True)
    await _settled(stack, player.user_id)
    assert player.user_id not in await _ranked(stack)
    await assert_ledger_invariant(stack.pool)


async def test_admin_rpcs_are_refused_to_non_admins(stack: Stack, api: Api) -> None:
    """Every method of the service, whatever the request: user tokens and service tokens
    without the admin scope get PERMISSION_DENIED, no token gets UNAUTHENTICATED, and nothing
    is written."""
    player = await api.register()
    await _complete(api, player, "daily-login")
    before = await score_row(stack.pool, player.user_id)
    audits = await audit_count(stack.pool)
    requests: dict[str, Any] = {
        "BanUser": pb.BanUserRequest(user_id=player.user_id, reason="x"),
        "UnbanUser": pb.UnbanUserRequest(user_id=player.user_id, reason="x"),
        "VoidLedgerEntry": pb.VoidLedgerEntryRequest(entry_id=1, reason="x"),
        "AdjustScore": pb.AdjustScoreRequest(user_id=player.user_id, points=5, reason="x"),
        "ListLedgerEntries": pb.ListLedgerEntriesRequest(user_id=player.user_id),
        "ListAuditLog": pb.ListAuditLogRequest(),
        "ListAnomalies": pb.ListAnomaliesRequest(),
        "ReviewAnomaly": pb.ReviewAnomalyRequest(anomaly_id=1),
    }
    assert set(requests) == set(pb.DESCRIPTOR.services_by_name["AdminService"].methods_by_name)
    edge_token = metadata(await service_token(stack.address("auth"), "edge", stack.edge_secret))
    callers = {
        "user": metadata(player.access_token),
        "game-server": await game_server_metadata(stack),
        "edge": edge_token,
    }
    async with admin_stub(stack) as admin:
        for name, request in requests.items():
            method = getattr(admin, name)
            for caller, meta in callers.items():
                code, reason = await _refused(method(request, metadata=meta))
                assert (code, reason) == (
                    grpc.StatusCode.PERMISSION_DENIED,
                    "PERMISSION_DENIED",
                ), (name, caller)
            code, _ = await _refused(method(request))
            assert code == grpc.StatusCode.UNAUTHENTICATED, name
    assert await score_row(stack.pool, player.user_id) == before
    assert await audit_count(stack.pool) == audits


async def test_an_admin_user_may_act_and_is_named_in_the_audit(stack: Stack, api: Api) -> None:
    from auth_service.store import AuthStore

    boss = await api.register(password="correct horse battery")
    assert await AuthStore(stack.pool).set_role(boss.username, "admin")
    login = await api.http.post(
        "/api/auth/login", json={"username": boss.username, "password": "correct horse battery"}
    )
    token = login.json()["data"]["accessToken"]
    player = await api.register()
    await _complete(api, player, "daily-login")
    async with admin_stub(stack) as admin:
        reply = await admin.AdjustScore(
            pb.AdjustScoreRequest(user_id=player.user_id, points=7, reason="bug bounty"),
            metadata=metadata(token),
        )
        assert reply.entry.actor == f"admin:{boss.user_id}"
        audit = await admin.ListAuditLog(
            pb.ListAuditLogRequest(actor=f"admin:{boss.user_id}"), metadata=metadata(token)
        )
        assert [(a.action, a.target) for a in audit.entries] == [("score.adjust", player.user_id)]


async def test_a_banned_user_cannot_complete_or_start_actions(stack: Stack, api: Api) -> None:
    from scoreboard.score.v1 import score_service_pb2, score_service_pb2_grpc

    player = await api.register()
    await _complete(api, player, "daily-login")
    async with admin_stub(stack) as admin:
        await admin.BanUser(
            pb.BanUserRequest(user_id=player.user_id, reason="abuse"),
            metadata=await admin_metadata(stack),
        )
    before = await score_row(stack.pool, player.user_id)
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
        code, reason = await _refused(
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


async def _tap_action(stack: Stack) -> str:
    """An action that may be completed many times at once (no cooldown)."""
    from google.protobuf.duration_pb2 import Duration

    from scoreboard.score.v1 import score_service_pb2, score_service_pb2_grpc

    channel = grpc.aio.insecure_channel(stack.address("score"))
    try:
        score = score_service_pb2_grpc.ScoreServiceStub(channel)
        await score.CreateAction(
            score_service_pb2.CreateActionRequest(
                action=score_service_pb2.Action(
                    action_id="tap",
                    name="Tap",
                    base_points=1,
                    difficulty_multiplier=1.0,
                    daily_limit=10_000,
                    cooldown=Duration(seconds=0),
                    active=True,
                )
            ),
            metadata=await admin_metadata(stack),
        )
    except grpc.aio.AioRpcError as exc:
        if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    finally:
        await channel.close()
    return "tap"


async def test_a_completion_waiting_behind_a_ban_sees_the_ban(stack: Stack, api: Api) -> None:
    """The ban's locks in the ban's order: the user's score row, then the users row. A
    completion queued on the score row must re-read users.banned when it gets the lock."""
    action = await _tap_action(stack)
    player = await api.register()
    await _complete(api, player, action)
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
    action = await _tap_action(stack)
    player = await api.register()
    await _complete(api, player, action)

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
    assert set(statuses) <= {200, 403}, statuses
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
    await _settled(stack, player.user_id)
    assert player.user_id not in await _ranked(stack)
    await assert_ledger_invariant(stack.pool)


async def test_audit_log_and_anomalies_page_newest_first(stack: Stack, api: Api) -> None:
    player = await api.register()
    await _complete(api, player, "daily-login")
    async with admin_stub(stack) as admin:
        meta = await admin_metadata(stack)
        for points in (1, 2, 3):
            await admin.AdjustScore(
                pb.AdjustScoreRequest(user_id=player.user_id, points=points, reason=f"r{points}"),
                metadata=meta,
            )
        first = await admin.ListAuditLog(
            pb.ListAuditLogRequest(target=player.user_id, page_size=2), metadata=meta
        )
        assert [orjson.loads(a.detail_json)["points"] for a in first.entries] == [3, 2]
        assert first.next_page_token
        rest = await admin.ListAuditLog(
            pb.ListAuditLogRequest(
                target=player.user_id, page_size=2, page_token=first.next_page_token
            ),
            metadata=meta,
        )
        assert [orjson.loads(a.detail_json)["points"] for a in rest.entries] == [1]
        assert rest.next_page_token == ""
        code, _ = await _refused(
            admin.ListAuditLog(pb.ListAuditLogRequest(page_token="bogus"), metadata=meta)
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        # A token of another listing is refused too.
        code, _ = await _refused(
            admin.ListAnomalies(
                pb.ListAnomaliesRequest(page_token=first.next_page_token), metadata=meta
            )
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT

        async with stack.pool.connection() as conn:
            for kind, reviewed in (("daily_point_cap", False), ("burst", True), ("burst", False)):
                await conn.execute(
                    "INSERT INTO score_anomalies (board_id, user_id, kind, detail, reviewed_at)"
                    " VALUES ('default', %s, %s, '{\"points\": 9000}',"
                    " CASE WHEN %s THEN now() END)",
                    (player.user_id, kind, reviewed),
                )
            await conn.commit()
        open_ = await admin.ListAnomalies(
            pb.ListAnomaliesRequest(user_id=player.user_id), metadata=meta
        )
        assert [a.kind for a in open_.anomalies] == ["burst", "daily_point_cap"]
        assert orjson.loads(open_.anomalies[0].detail_json) == {"points": 9000}
        every = await admin.ListAnomalies(
            pb.ListAnomaliesRequest(user_id=player.user_id, include_reviewed=True, page_size=2),
            metadata=meta,
        )
        assert [a.kind for a in every.anomalies] == ["burst", "burst"]
        assert every.anomalies[1].HasField("review_time")
        tail = await admin.ListAnomalies(
            pb.ListAnomaliesRequest(
                user_id=player.user_id,
                include_reviewed=True,
                page_size=2,
                page_token=every.next_page_token,
            ),
            metadata=meta,
        )
        assert [a.kind for a in tail.anomalies] == ["daily_point_cap"]


async def test_catalog_and_ranking_acts_are_audited_too(stack: Stack) -> None:
    from scoreboard.leaderboard.v1 import leaderboard_service_pb2, leaderboard_service_pb2_grpc

    await _tap_action(stack)  # CreateAction (or already created by an earlier test)
    channel = grpc.aio.insecure_channel(stack.address("leaderboard"))
    try:
        board = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
        meta = await admin_metadata(stack)
        rebuilt = await board.RebuildRanking(
            leaderboard_service_pb2.RebuildRankingRequest(), metadata=meta
        )
        await board.ReconcileRanking(
            leaderboard_service_pb2.ReconcileRankingRequest(repair=True), metadata=meta
        )
    finally:
        await channel.close()
    async with admin_stub(stack) as admin:
        audit = await admin.ListAuditLog(
            pb.ListAuditLogRequest(page_size=500), metadata=await admin_metadata(stack)
        )
    actions = [(a.action, a.target, a.actor) for a in audit.entries]
    assert actions[:2] == [
        ("ranking.reconcile", "default", "service:admin-tool"),
        ("ranking.rebuild", "default", "service:admin-tool"),
    ]
    assert orjson.loads(audit.entries[1].detail_json) == {"users": rebuilt.users}
    assert orjson.loads(audit.entries[0].detail_json)["repair"] is True
    assert ("action.create", "tap", "service:admin-tool") in actions
