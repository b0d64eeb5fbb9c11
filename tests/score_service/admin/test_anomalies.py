"""Flagged anomalies as an admin meets them: a real completion through the edge raises a flag,
AdminService.ListAnomalies shows it, ReviewAnomaly marks it reviewed (audited, once), over gRPC
and through `scoreboard anomalies list|review` run as a separate process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import orjson
import pytest

from common.errors import from_rpc_error
from score_service.config import AnomalySettings
from scoreboard.admin.v1 import admin_service_pb2 as pb
from tests.conftest import StackFactory
from tests.score_service.admin.support import (
    admin_metadata,
    admin_stub,
    audit_count,
    game_server_metadata,
)
from tests.support.clients import Api, Player, metadata
from tests.support.processes import admin_cli
from tests.support.stack import Stack

# Any two completions within an hour are flagged fast_completion; the cap stays out of the way.
ANOMALIES = AnomalySettings(daily_point_cap=1_000_000, min_seconds_between_completions=3600)


@pytest.fixture(scope="module")
async def stack(stack_factory: StackFactory) -> AsyncIterator[Stack]:
    async with stack_factory(score={"anomalies": ANOMALIES}) as stack:
        yield stack


async def _flagged_player(stack: Stack) -> tuple[Player, int]:
    """A new player whose second completion is flagged; returns them and that ledger entry."""
    async with Api(stack.edge_url) as api:
        player = await api.register()
        for action_id in ("daily-login", "complete-quest"):
            reply = await api.complete(player, action_id)
            assert reply.status_code == 200, reply.text
    async with admin_stub(stack) as admin:
        ledger = await admin.ListLedgerEntries(
            pb.ListLedgerEntriesRequest(user_id=player.user_id),
            metadata=await admin_metadata(stack),
        )
    [quest] = [e.entry_id for e in ledger.entries if e.action_id == "complete-quest"]
    return player, quest


async def _refused(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    error = from_rpc_error(caught.value)
    return error.code, error.reason


async def test_an_admin_lists_and_reviews_a_flagged_completion(stack: Stack) -> None:
    player, quest_entry = await _flagged_player(stack)
    meta = await admin_metadata(stack)
    async with admin_stub(stack) as admin:
        listed = await admin.ListAnomalies(
            pb.ListAnomaliesRequest(user_id=player.user_id), metadata=meta
        )
        [flag] = listed.anomalies
        assert (flag.kind, flag.ledger_entry_id, flag.board_id) == (
            "fast_completion",
            quest_entry,
            "default",
        )
        assert orjson.loads(flag.detail_json)["previous_action_id"] == "daily-login"
        assert not flag.HasField("review_time")

        reviewed = await admin.ReviewAnomaly(
            pb.ReviewAnomalyRequest(anomaly_id=flag.anomaly_id, note="  a fast thumb, not a bot "),
            metadata=meta,
        )
        assert reviewed.anomaly.anomaly_id == flag.anomaly_id
        assert reviewed.anomaly.HasField("review_time")
        assert reviewed.audit_id > 0

        still_open = await admin.ListAnomalies(
            pb.ListAnomaliesRequest(user_id=player.user_id), metadata=meta
        )
        assert list(still_open.anomalies) == []
        every = await admin.ListAnomalies(
            pb.ListAnomaliesRequest(user_id=player.user_id, include_reviewed=True), metadata=meta
        )
        assert [a.anomaly_id for a in every.anomalies] == [flag.anomaly_id]
        assert every.anomalies[0].review_time == reviewed.anomaly.review_time

        audit = await admin.ListAuditLog(
            pb.ListAuditLogRequest(action="anomaly.review", page_size=1), metadata=meta
        )
        [row] = audit.entries
        assert (row.audit_id, row.actor, row.target) == (
            reviewed.audit_id,
            "service:admin-tool",
            "default",
        )
        assert orjson.loads(row.detail_json) == {
            "ids": [flag.anomaly_id],
            "note": "a fast thumb, not a bot",
        }

        # Reviewing again changes nothing: the first review stands, no second audit row.
        audits = await audit_count(stack.pool)
        again = await admin.ReviewAnomaly(
            pb.ReviewAnomalyRequest(anomaly_id=flag.anomaly_id), metadata=meta
        )
        assert again.audit_id == 0
        assert again.anomaly.review_time == reviewed.anomaly.review_time
        assert await audit_count(stack.pool) == audits


async def test_review_refuses_unknown_ids_bad_input_and_non_admins(stack: Stack) -> None:
    player, _ = await _flagged_player(stack)
    meta = await admin_metadata(stack)
    audits = await audit_count(stack.pool)
    async with admin_stub(stack) as admin:
        [flag] = (
            await admin.ListAnomalies(
                pb.ListAnomaliesRequest(user_id=player.user_id), metadata=meta
            )
        ).anomalies
        review = admin.ReviewAnomaly
        assert await _refused(
            review(pb.ReviewAnomalyRequest(anomaly_id=flag.anomaly_id + 10_000), metadata=meta)
        ) == (grpc.StatusCode.NOT_FOUND, "NOT_FOUND")
        for bad in (
            pb.ReviewAnomalyRequest(anomaly_id=0),
            pb.ReviewAnomalyRequest(anomaly_id=-3),
            pb.ReviewAnomalyRequest(anomaly_id=flag.anomaly_id, note="x" * 501),
        ):
            assert await _refused(review(bad, metadata=meta)) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_ARGUMENT",
            ), bad
        mine = pb.ReviewAnomalyRequest(anomaly_id=flag.anomaly_id)
        for caller in (metadata(player.access_token), await game_server_metadata(stack)):
            assert await _refused(review(mine, metadata=caller)) == (
                grpc.StatusCode.PERMISSION_DENIED,
                "PERMISSION_DENIED",
            )
        code, _ = await _refused(review(mine))
        assert code == grpc.StatusCode.UNAUTHENTICATED
        # Nothing was reviewed or written.
        after = await admin.ListAnomalies(
            pb.ListAnomaliesRequest(user_id=player.user_id), metadata=meta
        )
        assert [a.anomaly_id for a in after.anomalies] == [flag.anomaly_id]
    assert await audit_count(stack.pool) == audits


async def _cli(
    stack: Stack, *args: str, client: str = "admin-tool", secret: str | None = None
) -> tuple[int, Any, str]:
    return await admin_cli(stack, "anomalies", *args, client=client, secret=secret)


async def test_scoreboard_anomalies_list_and_review(stack: Stack) -> None:
    player, quest_entry = await _flagged_player(stack)

    code, listed, err = await _cli(stack, "list", "--user", player.user_id)
    assert code == 0, err
    # int64 fields print as JSON strings (the protobuf JSON mapping).
    [flag] = listed["anomalies"]
    assert (flag["kind"], flag["ledger_entry_id"]) == ("fast_completion", str(quest_entry))
    assert "review_time" not in flag
    code, everyone, err = await _cli(stack, "list", "--page-size", "500")
    assert code == 0, err
    assert flag["anomaly_id"] in [a["anomaly_id"] for a in everyone["anomalies"]]

    code, reviewed, err = await _cli(stack, "review", flag["anomaly_id"], "--note", "checked")
    assert code == 0, err
    assert reviewed["anomaly"]["review_time"] and int(reviewed["audit_id"]) > 0
    code, again, err = await _cli(stack, "review", flag["anomaly_id"])
    assert code == 0, err
    assert "audit_id" not in again  # 0: reviewed before, nothing written
    assert again["anomaly"]["review_time"] == reviewed["anomaly"]["review_time"]

    code, open_, err = await _cli(stack, "list", "--user", player.user_id)
    assert (code, open_) == (0, {}), err
    code, every, err = await _cli(stack, "list", "--user", player.user_id, "--all")
    assert code == 0, err
    assert [a["anomaly_id"] for a in every["anomalies"]] == [flag["anomaly_id"]]
    assert every["anomalies"][0]["review_time"] == reviewed["anomaly"]["review_time"]


async def test_scoreboard_anomalies_refusals_exit_1_with_the_reason(stack: Stack) -> None:
    player, _ = await _flagged_player(stack)
    audits = await audit_count(stack.pool)

    code, body, err = await _cli(stack, "review", "987654321")
    assert (code, body) == (1, None)
    assert "refused: NOT_FOUND" in err, err
    code, body, err = await _cli(stack, "list", "--user", "not-a-uuid")
    assert (code, body) == (1, None)
    assert "refused: INVALID_ARGUMENT" in err, err
    code, body, err = await _cli(
        stack, "list", "--user", player.user_id, client="game-server", secret=stack.game_secret
    )
    assert (code, body) == (1, None)
    assert "refused: PERMISSION_DENIED" in err, err
    code, body, err = await _cli(stack, "list", secret="wrong")
    assert (code, body) == (1, None)
    assert "refused: INVALID_CREDENTIALS" in err and "wrong" not in err, err
    code, _, err = await _cli(stack, "review", "abc")
    assert code == 2 and "anomaly_id" in err, err
    code, _, err = await _cli(stack, "review")
    assert code == 2 and "anomaly_id" in err, err
    assert await audit_count(stack.pool) == audits
