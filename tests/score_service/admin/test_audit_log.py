"""The audit log and the anomaly list: paged newest first, tokens of one listing refused by
another, and catalog and ranking acts audited like score changes."""

from __future__ import annotations

import grpc
import orjson

from scoreboard.admin.v1 import admin_service_pb2 as pb
from tests.score_service.admin.support import (
    admin_metadata,
    admin_stub,
    completed,
    refusal,
    tap_action,
)
from tests.support.clients import Api
from tests.support.stack import Stack


async def test_audit_log_and_anomalies_page_newest_first(stack: Stack, api: Api) -> None:
    player = await api.register()
    await completed(api, player, "daily-login")
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
        code, _ = await refusal(
            admin.ListAuditLog(pb.ListAuditLogRequest(page_token="bogus"), metadata=meta)
        )
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        # A token of another listing is refused too.
        code, _ = await refusal(
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

    await tap_action(stack)  # CreateAction (or already created by an earlier test)
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
