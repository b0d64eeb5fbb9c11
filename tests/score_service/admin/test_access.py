"""Who may call AdminService: only the admin scope (a service account or an admin user, who is
then named in the audit)."""

from __future__ import annotations

from typing import Any

import grpc

from scoreboard.admin.v1 import admin_service_pb2 as pb
from tests.score_service.admin.support import (
    admin_stub,
    audit_count,
    completed,
    game_server_metadata,
    refusal,
    score_row,
)
from tests.support.clients import Api, metadata
from tests.support.stack import Stack
from tests.support.tokens import edge_token


async def test_admin_rpcs_are_refused_to_non_admins(stack: Stack, api: Api) -> None:
    """Every method of the service, whatever the request: user tokens and service tokens
    without the admin scope get PERMISSION_DENIED, no token gets UNAUTHENTICATED, and nothing
    is written."""
    player = await api.register()
    await completed(api, player, "daily-login")
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
    edge = metadata(await edge_token(stack))
    callers = {
        "user": metadata(player.access_token),
        "game-server": await game_server_metadata(stack),
        "edge": edge,
    }
    async with admin_stub(stack) as admin:
        for name, request in requests.items():
            method = getattr(admin, name)
            for caller, meta in callers.items():
                code, reason = await refusal(method(request, metadata=meta))
                assert (code, reason) == (
                    grpc.StatusCode.PERMISSION_DENIED,
                    "PERMISSION_DENIED",
                ), (name, caller)
            code, _ = await refusal(method(request))
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
    await completed(api, player, "daily-login")
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
