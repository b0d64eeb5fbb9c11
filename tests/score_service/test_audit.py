"""Audit: every score change records who asked, through which path, the request id and the time;
catalog changes record the whole definition before and after. Anomalies are flagged for admins
in the same transaction (never refused), counted and logged."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from score_service.config import AnomalySettings
from scoreboard.admin.v1 import admin_service_pb2 as admin_pb
from scoreboard.score.v1 import score_service_pb2 as pb
from tests.conftest import StackFactory
from tests.score_service.helpers import (
    assert_ledger_invariants,
    call,
    create_action,
    insert_users,
    score_client,
    set_active,
)
from tests.support.clients import Api, admin_stub
from tests.support.stack import Stack
from tests.support.tokens import admin_metadata, admin_token, game_token


async def _audit_of(stack: Stack, user_id: str) -> list[tuple[object, ...]]:
    async with stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT actor, path, request_id, created_at FROM user_actions"
            " WHERE user_id = %s ORDER BY id",
            (user_id,),
        )
        return list(await cur.fetchall())


def _md(token: str, request_id: str, *extra: tuple[str, str]) -> tuple[tuple[str, str], ...]:
    return (("x-request-id", request_id), ("authorization", f"Bearer {token}"), *extra)


async def test_rest_completion_records_user_path_request_id_and_time(
    score_stack: Stack, api: Api
) -> None:
    action = await create_action(score_stack)
    player = await api.register()
    before = datetime.now().astimezone() - timedelta(seconds=5)
    reply = await api.http.post(
        "/api/actions/complete",
        json={"actionId": action.action_id},
        headers={**player.auth, "X-Request-ID": "audit-rest-1"},
    )
    assert reply.status_code == 200
    assert reply.headers["x-request-id"] == "audit-rest-1"
    [(actor, path, request_id, at)] = await _audit_of(score_stack, player.user_id)
    assert (actor, path, request_id) == (f"user:{player.user_id}", "rest", "audit-rest-1")
    assert isinstance(at, datetime) and before < at < datetime.now().astimezone() + timedelta(
        seconds=5
    )


async def test_grpc_completions_record_the_caller_and_path(score_stack: Stack, api: Api) -> None:
    action = await create_action(score_stack, daily_limit=10)
    player = await api.register()
    game = await game_token(score_stack)
    admin = await admin_token(score_stack)
    async with score_client(score_stack, player.access_token) as client:
        stub = client.stub
        request = pb.CompleteActionRequest(action_id=action.action_id)
        await call(stub.CompleteAction(request, metadata=_md(player.access_token, "grpc-user")))
        for_player = pb.CompleteActionRequest(action_id=action.action_id, user_id=player.user_id)
        # A game server claiming the admin path is recorded as what it is: a direct call.
        await call(
            stub.CompleteAction(
                for_player, metadata=_md(game, "grpc-game", ("x-scoreboard-path", "admin"))
            )
        )
        await call(
            stub.CompleteAction(
                for_player, metadata=_md(admin, "grpc-admin", ("x-scoreboard-path", "admin"))
            )
        )
    rows = [row[:3] for row in await _audit_of(score_stack, player.user_id)]
    assert rows == [
        (f"user:{player.user_id}", "grpc", "grpc-user"),
        ("service:game-server", "grpc", "grpc-game"),
        ("service:admin-tool", "admin", "grpc-admin"),
    ]


async def test_catalog_changes_are_audited_before_and_after(score_stack: Stack) -> None:
    action = await create_action(score_stack, base_points=12, daily_limit=2)
    await set_active(score_stack, action, False)
    async with score_stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT actor, action, detail FROM audit_log WHERE target = %s ORDER BY id",
            (action.action_id,),
        )
        rows = await cur.fetchall()
    assert [(r[0], r[1]) for r in rows] == [
        ("service:admin-tool", "action.create"),
        ("service:admin-tool", "action.update"),
    ]
    created, updated = rows[0][2], rows[1][2]
    assert isinstance(created, dict) and isinstance(updated, dict)
    assert "before" not in created
    assert created["after"]["points"] == 12 and created["after"]["active"] is True
    assert updated["before"]["active"] is True and updated["after"]["active"] is False
    assert updated["after"]["daily_limit"] == 2


async def test_anomalies_are_flagged_not_refused(
    stack_factory: StackFactory, caplog: pytest.LogCaptureFixture
) -> None:
    settings = AnomalySettings(daily_point_cap=50, min_seconds_between_completions=3600)
    async with stack_factory(score={"anomalies": settings}) as stack:
        quest = await create_action(stack, base_points=20, daily_limit=10)
        login = await create_action(stack, base_points=5, daily_limit=10)
        [user] = await insert_users(stack.pool, 1)
        cap_before = _counter("daily_point_cap")
        fast_before = _counter("fast_completion")
        caplog.set_level(logging.WARNING, logger="scoreboard.score")
        async with score_client(stack, await game_token(stack)) as game:
            replies = [
                await game.complete(quest.action_id, user_id=user),  # 20
                await game.complete(login.action_id, user_id=user),  # 25, fast
                await game.complete(quest.action_id, user_id=user),  # 45, fast
                await game.complete(quest.action_id, user_id=user),  # 65: crosses 50, fast
                await game.complete(quest.action_id, user_id=user),  # 85, fast (cap once)
            ]
        # Nothing was refused: every completion counted.
        assert [r.new_score for r in replies] == [20, 25, 45, 65, 85]
        await assert_ledger_invariants(stack.pool)

        async with admin_stub(stack) as admin:
            listed = await admin.ListAnomalies(
                admin_pb.ListAnomaliesRequest(), metadata=await admin_metadata(stack)
            )
        assert listed.next_page_token == ""
        by_entry = {(r.ledger_entry_id, r.kind): r for r in listed.anomalies}
        entries = [r.ledger_entry_id for r in replies]
        assert set(by_entry) == {
            (entries[1], "fast_completion"),
            (entries[2], "fast_completion"),
            (entries[3], "fast_completion"),
            (entries[4], "fast_completion"),
            (entries[3], "daily_point_cap"),
        }
        cap = by_entry[(entries[3], "daily_point_cap")]
        assert cap.user_id == user
        detail = orjson.loads(cap.detail_json)
        assert detail["points_today"] == 65 and detail["cap"] == 50
        across = orjson.loads(by_entry[(entries[1], "fast_completion")].detail_json)
        assert across["action_id"] == login.action_id
        assert across["previous_action_id"] == quest.action_id
        assert 0 <= float(across["gap_seconds"]) < 3600

        assert _counter("daily_point_cap") - cap_before == 1
        assert _counter("fast_completion") - fast_before == 4
        flagged = [r for r in caplog.records if r.getMessage() == "score anomaly flagged"]
        assert sorted(getattr(r, "anomaly", "") for r in flagged) == [
            "daily_point_cap",
            *["fast_completion"] * 4,
        ]


async def test_anomaly_listing_pages_and_review(stack_factory: StackFactory) -> None:
    settings = AnomalySettings(daily_point_cap=1_000_000, min_seconds_between_completions=3600)
    async with stack_factory(score={"anomalies": settings}) as stack:
        action = await create_action(stack, base_points=1, daily_limit=100)
        first, second = await insert_users(stack.pool, 2)
        async with score_client(stack, await game_token(stack)) as game:
            for user in (first, second):
                for _ in range(4):  # 3 fast completions each
                    await game.complete(action.action_id, user_id=user)
        meta = await admin_metadata(stack)
        async with admin_stub(stack) as admin:

            async def listed(**request: Any) -> admin_pb.ListAnomaliesResponse:
                reply: admin_pb.ListAnomaliesResponse = await admin.ListAnomalies(
                    admin_pb.ListAnomaliesRequest(**request), metadata=meta
                )
                return reply

            seen: list[int] = []
            token = ""
            while True:
                page = await listed(page_size=4, page_token=token)
                seen.extend(r.anomaly_id for r in page.anomalies)
                token = page.next_page_token
                if not token:
                    break
            assert len(seen) == 6 and seen == sorted(seen, reverse=True)
            mine = (await listed(user_id=first)).anomalies
            assert len(mine) == 3 and {r.user_id for r in mine} == {first}

            for record in mine:
                await admin.ReviewAnomaly(
                    admin_pb.ReviewAnomalyRequest(anomaly_id=record.anomaly_id), metadata=meta
                )
            # Reviewing again changes nothing and writes no audit row.
            again = await admin.ReviewAnomaly(
                admin_pb.ReviewAnomalyRequest(anomaly_id=mine[0].anomaly_id), metadata=meta
            )
            assert again.anomaly.HasField("review_time") and again.audit_id == 0
            still_open = (await listed()).anomalies
            assert {r.user_id for r in still_open} == {second}
            assert len((await listed(include_reviewed=True)).anomalies) == 6
        async with stack.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT count(*) FROM audit_log WHERE action = 'anomaly.review'"
            )
            assert await cur.fetchone() == (3,)


def _counter(kind: str) -> float:
    value = REGISTRY.get_sample_value("scoreboard_score_anomalies_total", {"kind": kind})
    return value or 0.0
