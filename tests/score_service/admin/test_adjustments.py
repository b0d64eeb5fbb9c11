"""Changing a score through AdminService: voiding a ledger entry and adjusting with a reason
move the total, the ledger sum and the ranking together; refusals change nothing."""

from __future__ import annotations

import grpc

from scoreboard.admin.v1 import admin_service_pb2 as pb
from tests.score_service.admin.support import (
    admin_metadata,
    admin_stub,
    assert_ledger_invariant,
    assert_reconciled,
    audit_count,
    completed,
    newer_than,
    ranked_ids,
    refusal,
    score_row,
    wait_applied,
)
from tests.support.clients import Api, Viewer
from tests.support.stack import Stack


async def test_void_changes_total_ledger_sum_and_ranking_together(stack: Stack, api: Api) -> None:
    player = await api.register()
    quest = await completed(api, player, "complete-quest")  # 60
    await completed(api, player, "win-match")  # 25
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
                    newer_than(m, first)
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
                assert await refusal(admin.VoidLedgerEntry(request, metadata=meta)) == expected
            assert await score_row(stack.pool, player.user_id) == (25, 3, 25, 3)
            assert await audit_count(stack.pool) == audits
    finally:
        await viewer.close()
    await wait_applied(stack, player.user_id)
    await assert_reconciled(stack)
    await assert_ledger_invariant(stack.pool)


async def test_adjust_score_with_a_reason(stack: Stack, api: Api) -> None:
    player = await api.register()
    await completed(api, player, "daily-login")  # 10
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
            assert await refusal(admin.AdjustScore(request, metadata=meta)) == expected
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
    await wait_applied(stack, player.user_id)
    assert player.user_id not in await ranked_ids(stack)
    await assert_ledger_invariant(stack.pool)
