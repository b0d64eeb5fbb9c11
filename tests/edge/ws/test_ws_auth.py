"""/ws authentication at the handshake: each way in works; bad, expired and reused credentials
and foreign origins are refused with an ERROR and a 44xx close; tokens never reach a log."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest
import websockets

from common.logs import JsonFormatter
from tests.conftest import StackFactory
from tests.support.clients import Api, Viewer
from tests.support.stack import Stack, edge_state
from tests.support.tokens import game_token, issuer, register


async def _closed(viewer: Viewer) -> tuple[int | None, list[dict[str, object]]]:
    await asyncio.wait_for(viewer._task, 15)
    return viewer.connection.close_code, viewer.messages


async def _refused(url: str, **kwargs: object) -> tuple[int | None, dict[str, object]]:
    viewer = await Viewer.open(url, **kwargs)
    code, messages = await _closed(viewer)
    assert len(messages) == 1, messages
    assert messages[0]["type"] == "ERROR"
    data = messages[0]["data"]
    assert isinstance(data, dict)
    return code, data


async def _ack(viewer: Viewer) -> dict[str, object]:
    ack = await viewer.wait(lambda m: True)
    assert ack["type"] == "CONNECTION_ACK"
    data = ack["data"]
    assert isinstance(data, dict)
    return data


async def test_token_in_query_subprotocol_and_ticket_each_work(
    shared_stack: Stack, api: Api
) -> None:
    player = await api.register()
    by_query = await Viewer.open(f"{shared_stack.ws_url}?token={player.access_token}")
    by_protocol = await Viewer.open(
        shared_stack.ws_url, subprotocols=["scoreboard.v1", f"bearer.{player.access_token}"]
    )
    reply = await api.http.post("/api/ws-ticket", headers=player.auth)
    assert reply.status_code == 200, reply.text
    ticket = reply.json()["data"]["ticket"]
    assert reply.json()["data"]["expiresIn"] > 0
    by_ticket = await Viewer.open(f"{shared_stack.ws_url}?ticket={ticket}")
    try:
        for viewer in (by_query, by_protocol, by_ticket):
            ack = await _ack(viewer)
            assert ack["userId"] == player.user_id
            # The current board follows the acknowledgement at once.
            update = await viewer.wait(lambda m: m["type"] == "LEADERBOARD_UPDATE")
            assert {"top10", "timestamp", "sequence"} <= set(update["data"])
        assert by_protocol.connection.subprotocol == "scoreboard.v1"
    finally:
        for viewer in (by_query, by_protocol, by_ticket):
            await viewer.close()

    # A ticket is single-use.
    code, error = await _refused(f"{shared_stack.ws_url}?ticket={ticket}")
    assert code == 4401
    assert error["code"] == "TOKEN_INVALID"


async def test_a_ticket_dies_with_the_session_it_was_issued_for(
    shared_stack: Stack, api: Api
) -> None:
    player = await api.register()
    reply = await api.http.post("/api/ws-ticket", headers=player.auth)
    assert reply.status_code == 200, reply.text
    ticket = reply.json()["data"]["ticket"]
    logout = await api.http.post(
        "/api/auth/logout", json={"refreshToken": player.refresh_token}, headers=player.auth
    )
    assert logout.status_code in (200, 204), logout.text
    code, error = await _refused(f"{shared_stack.ws_url}?ticket={ticket}")
    assert (code, error["code"]) == (4401, "TOKEN_REVOKED")


async def test_a_service_account_may_watch(shared_stack: Stack) -> None:
    viewer = await Viewer.open(f"{shared_stack.ws_url}?token={await game_token(shared_stack)}")
    try:
        assert (await _ack(viewer))["userId"] is None
    finally:
        await viewer.close()


@pytest.mark.parametrize(
    ("suffix", "reason"),
    [
        ("", "UNAUTHENTICATED"),
        ("?token=not-a-jwt", "TOKEN_INVALID"),
        ("?token=eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.", "TOKEN_INVALID"),
        ("?ticket=made-up", "TOKEN_INVALID"),
        ("?ticket=" + "x" * 500, "TOKEN_INVALID"),
    ],
)
async def test_bad_or_missing_credentials_are_refused(
    shared_stack: Stack, suffix: str, reason: str
) -> None:
    code, error = await _refused(shared_stack.ws_url + suffix)
    assert code == 4401
    assert error["code"] == reason


async def test_bad_token_in_subprotocol_is_refused_with_our_subprotocol(
    shared_stack: Stack,
) -> None:
    # Browsers fail a handshake that selects none of the offered subprotocols, and would never
    # see the ERROR: the refusal selects ours.
    viewer = await Viewer.open(shared_stack.ws_url, subprotocols=["scoreboard.v1", "bearer.nope"])
    assert viewer.connection.subprotocol == "scoreboard.v1"
    code, messages = await _closed(viewer)
    assert code == 4401
    assert messages[0]["data"]["code"] == "TOKEN_INVALID"  # type: ignore[index]


async def test_expired_token_is_refused(shared_stack: Stack) -> None:
    minter = issuer(shared_stack)
    user = str(uuid.uuid4())
    # Expired long ago (beyond the verifier's leeway)...
    stale = minter.access_token(subject=user, role="user", scopes=(), lifetime=-3600).token
    code, error = await _refused(f"{shared_stack.ws_url}?token={stale}")
    assert (code, error["code"]) == (4401, "TOKEN_EXPIRED")
    # ...and just expired (within the leeway the verifier allows): a connection that would be
    # closed at once is refused instead.
    just = minter.access_token(subject=user, role="user", scopes=(), lifetime=-1).token
    code, error = await _refused(f"{shared_stack.ws_url}?token={just}")
    assert (code, error["code"]) == (4401, "TOKEN_EXPIRED")


async def test_revoked_token_is_refused(shared_stack: Stack, api: Api) -> None:
    player = await api.register()
    reply = await api.http.post(
        "/api/auth/logout", headers=player.auth, json={"refreshToken": player.refresh_token}
    )
    assert reply.status_code == 200, reply.text
    code, error = await _refused(f"{shared_stack.ws_url}?token={player.access_token}")
    assert (code, error["code"]) == (4401, "TOKEN_REVOKED")


async def test_origins_outside_the_allow_list_are_refused(stack_factory: StackFactory) -> None:
    async with stack_factory(websocket={"origins": ("https://game.example",)}) as stack:
        _, token = await register(stack)
        url = f"{stack.ws_url}?token={token}"
        code, error = await _refused(url, origin="https://evil.example")
        assert (code, error["code"]) == (4403, "ORIGIN_NOT_ALLOWED")
        code, error = await _refused(url, origin="null")
        assert code == 4403
        allowed = await Viewer.open(url, origin="https://game.example")
        same_origin = await Viewer.open(url, origin=stack.edge_url)
        no_origin = await Viewer.open(url)  # not a browser: not subject to origin checks
        try:
            for viewer in (allowed, same_origin, no_origin):
                await _ack(viewer)
        finally:
            for viewer in (allowed, same_origin, no_origin):
                await viewer.close()


async def test_anonymous_viewers_only_when_configured(
    shared_stack: Stack, stack_factory: StackFactory
) -> None:
    code, _ = await _refused(shared_stack.ws_url)
    assert code == 4401
    async with stack_factory(websocket={"allow_anonymous": True}) as stack:
        viewer = await Viewer.open(stack.ws_url)
        try:
            assert (await _ack(viewer))["userId"] is None
            await viewer.wait(lambda m: m["type"] == "LEADERBOARD_UPDATE")
        finally:
            await viewer.close()


async def test_token_expiry_closes_the_connection_with_its_own_code(
    stack_factory: StackFactory,
) -> None:
    async with stack_factory(auth={"access_token_seconds": 2}) as stack:
        _, token = await register(stack)
        viewer = await Viewer.open(f"{stack.ws_url}?token={token}")
        await _ack(viewer)
        code, messages = await _closed(viewer)  # waits for the server to close it
        assert code == 4440
        assert messages[-1]["type"] == "ERROR"
        assert messages[-1]["data"]["code"] == "TOKEN_EXPIRED"  # type: ignore[index]
        assert len(edge_state(stack).fanout) == 0


async def test_tokens_never_reach_a_log(
    shared_stack: Stack, api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    player = await api.register()
    reply = await api.http.post("/api/ws-ticket", headers=player.auth)
    ticket = reply.json()["data"]["ticket"]
    formatter = JsonFormatter("edge")
    with caplog.at_level(logging.DEBUG):
        for url in (
            f"{shared_stack.ws_url}?token={player.access_token}",
            f"{shared_stack.ws_url}?ticket={ticket}",
            f"{shared_stack.ws_url}?token={player.access_token}x",  # refused: logged?
        ):
            viewer = await Viewer.open(url)
            await viewer.wait(lambda m: True)
            await viewer.close()
        with pytest.raises(websockets.InvalidStatus):
            await websockets.connect(f"{shared_stack.ws_url.replace('/ws', '/nope')}?token=abc")
    # The edge's loggers (uvicorn hands its websockets parser "uvicorn.error"); the test's own
    # client logs its request line on "websockets.client", which is not the edge.
    records = [r for r in caplog.records if r.name.startswith(("uvicorn", "scoreboard"))]
    assert records, "expected the edge to log something while connecting"
    secret_parts = (player.access_token, player.access_token.split(".")[2], ticket, "token=abc")
    for record in records:
        for text in (record.getMessage(), formatter.format(record)):
            for secret in secret_parts:
                assert secret not in text, (record.name, text)
