"""A logout or a ban ends what the revoked tokens opened, at once (issue 16, item 7): the edge
closes the session's (or the banned user's) open WebSockets with ERROR TOKEN_REVOKED then 4401,
leaves every other socket open, and the banned user's access tokens are refused at the edge and
at score_service within a second; an unban does not bring the old tokens back."""

from __future__ import annotations

import asyncio
import time

import grpc
import httpx

from common.errors import from_rpc_error
from scoreboard.admin.v1 import admin_service_pb2 as admin_pb
from scoreboard.score.v1 import score_service_pb2 as score_pb
from scoreboard.score.v1 import score_service_pb2_grpc
from tests.support.clients import Api, Player, Viewer, admin_stub, metadata
from tests.support.servers import wait_for
from tests.support.stack import Stack
from tests.support.tokens import admin_metadata

# The documented bound: a revocation takes effect in every process within this time.
BOUND_SECONDS = 1.0


async def _open(stack: Stack, query: str) -> Viewer:
    viewer = await Viewer.open(f"{stack.ws_url}?{query}")
    ack = await viewer.wait(lambda m: True)
    assert ack["type"] == "CONNECTION_ACK", ack
    return viewer


async def _ticket(api: Api, token: str) -> str:
    reply = await api.http.post("/api/ws-ticket", headers={"authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text
    ticket: str = reply.json()["data"]["ticket"]
    return ticket


async def _login(api: Api, player: Player) -> Player:
    """A second session of the player."""
    reply = await api.http.post(
        "/api/auth/login", json={"username": player.username, "password": "correct horse battery"}
    )
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    return Player(
        player.user_id,
        player.username,
        player.display_name,
        data["accessToken"],
        data["refreshToken"],
    )


async def _closed_revoked(viewer: Viewer, within: float) -> None:
    """The viewer gets ERROR TOKEN_REVOKED, then the 4401 close, within `within` seconds."""
    await asyncio.wait_for(asyncio.shield(viewer._task), within)
    assert viewer.connection.close_code == 4401, viewer.connection.close_code
    last = viewer.messages[-1]
    assert last["type"] == "ERROR" and last["data"]["code"] == "TOKEN_REVOKED", last


async def _still_open(viewer: Viewer) -> None:
    seen = len(viewer.messages)
    await viewer.connection.send('{"type": "PING"}')
    await viewer.wait(lambda m: m["type"] == "PONG" and viewer.messages.index(m) >= seen)
    assert viewer.connection.close_code is None


async def _me(api: Api, token: str) -> tuple[int, str]:
    reply: httpx.Response = await api.http.get(
        "/api/auth/me", headers={"authorization": f"Bearer {token}"}
    )
    return reply.status_code, reply.json().get("code", "")


async def _score_read(stack: Stack, token: str) -> tuple[grpc.StatusCode, str]:
    async with grpc.aio.insecure_channel(stack.address("score")) as channel:
        stub = score_service_pb2_grpc.ScoreServiceStub(channel)
        try:
            await stub.ListActions(
                score_pb.ListActionsRequest(), metadata=metadata(token), timeout=10
            )
        except grpc.aio.AioRpcError as exc:
            error = from_rpc_error(exc)
            return error.code, error.reason
    return grpc.StatusCode.OK, ""


async def test_logout_closes_that_sessions_sockets_at_once_and_no_other(
    shared_stack: Stack, api: Api
) -> None:
    player, bystander = await api.register(), await api.register()
    other_session = await _login(api, player)
    by_token = await _open(shared_stack, f"token={player.access_token}")
    by_ticket = await _open(shared_stack, f"ticket={await _ticket(api, player.access_token)}")
    kept = await _open(shared_stack, f"token={other_session.access_token}")
    unrelated = await _open(shared_stack, f"token={bystander.access_token}")
    try:
        reply = await api.http.post("/api/auth/logout", headers=player.auth)
        assert reply.status_code == 200, reply.text
        started = time.monotonic()
        for viewer in (by_token, by_ticket):
            await _closed_revoked(viewer, BOUND_SECONDS - (time.monotonic() - started))
        # The player's other session and other users keep their sockets.
        await _still_open(kept)
        await _still_open(unrelated)
    finally:
        for viewer in (by_token, by_ticket, kept, unrelated):
            await viewer.close()


async def test_a_ban_closes_every_socket_of_the_user_and_refuses_its_tokens_within_a_second(
    shared_stack: Stack, api: Api
) -> None:
    player, bystander = await api.register(), await api.register()
    second = await _login(api, player)
    sockets = [
        await _open(shared_stack, f"token={player.access_token}"),
        await _open(shared_stack, f"token={second.access_token}"),
        await _open(shared_stack, f"ticket={await _ticket(api, second.access_token)}"),
    ]
    unrelated = await _open(shared_stack, f"token={bystander.access_token}")
    assert await _me(api, player.access_token) == (200, "")
    assert await _score_read(shared_stack, second.access_token) == (grpc.StatusCode.OK, "")
    try:
        async with admin_stub(shared_stack) as admin:
            await admin.BanUser(
                admin_pb.BanUserRequest(user_id=player.user_id, reason="account sold"),
                metadata=await admin_metadata(shared_stack),
            )
        banned_at = time.monotonic()
        for viewer in sockets:
            await _closed_revoked(viewer, BOUND_SECONDS - (time.monotonic() - banned_at))

        async def refused_everywhere() -> bool:
            for token in (player.access_token, second.access_token):
                if await _me(api, token) != (401, "TOKEN_REVOKED"):
                    return False
                if await _score_read(shared_stack, token) != (
                    grpc.StatusCode.UNAUTHENTICATED,
                    "TOKEN_REVOKED",
                ):
                    return False
            return True

        assert await refused_everywhere()
        assert time.monotonic() - banned_at < BOUND_SECONDS
        await _still_open(unrelated)
        assert await _me(api, bystander.access_token) == (200, "")

        # The sessions are over: no refresh, no new socket, no new login while banned.
        refreshed = await api.http.post(
            "/api/auth/refresh", json={"refreshToken": player.refresh_token}
        )
        assert refreshed.status_code == 401, refreshed.text
        reconnect = await Viewer.open(f"{shared_stack.ws_url}?token={second.access_token}")
        await _closed_revoked(reconnect, 10)

        # An unban lets the user sign in again, but the tokens from before the ban stay dead.
        async with admin_stub(shared_stack) as admin:
            await admin.UnbanUser(
                admin_pb.UnbanUserRequest(user_id=player.user_id, reason="appeal accepted"),
                metadata=await admin_metadata(shared_stack),
            )
        # A token issued in the ban's own second counts as issued before it (iat is in seconds).
        await asyncio.sleep(1.05)
        fresh = await _login(api, player)
        assert await _me(api, player.access_token) == (401, "TOKEN_REVOKED")
        await wait_for(lambda: _accepted(api, fresh.access_token))
        again = await _open(shared_stack, f"token={fresh.access_token}")
        await _still_open(again)
        await again.close()
    finally:
        for viewer in (*sockets, unrelated):
            await viewer.close()


async def _accepted(api: Api, token: str) -> bool:
    return await _me(api, token) == (200, "")
