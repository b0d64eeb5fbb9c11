"""Structured logs: one request id follows a request from the edge across the gRPC hop into
score_service (and into the ledger row), and no token, password or client secret ever reaches a
log line, even at DEBUG."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from typing import Any

import orjson
import pytest

from common.logs import JsonFormatter
from tests.support.clients import Api, Viewer, service_token
from tests.support.stack import Stack

# Test-side HTTP and WebSocket clients log their own request lines; they are not the product.
CLIENT_LOGGERS = ("httpx", "httpcore", "websockets.client")


class _ProductOnly(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.name.startswith(CLIENT_LOGGERS)


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Every log record of the processes in this test, formatted as production formats it."""
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter("test"))
    handler.addFilter(_ProductOnly())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield buffer
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _records(buffer: io.StringIO) -> list[dict[str, Any]]:
    lines = [line for line in buffer.getvalue().splitlines() if line.strip()]
    records = [orjson.loads(line) for line in lines]
    for record in records:
        assert {"ts", "level", "service", "logger", "msg"} <= set(record), record
    return records


async def test_request_id_crosses_grpc_hops_and_no_secret_is_logged(
    shared_stack: Stack, json_logs: io.StringIO
) -> None:
    password = "correct horse battery staple"
    wrong_password = "Tr0ub4dor&3-not-mine"
    api = Api(shared_stack.edge_url)
    try:
        player = await api.register(password=password)
        login = await api.http.post(
            "/api/auth/login", json={"username": player.username, "password": password}
        )
        session = login.json()["data"]
        bad = await api.http.post(
            "/api/auth/login", json={"username": player.username, "password": wrong_password}
        )
        assert bad.status_code == 401
        request_id = "ops-log-test-4242"
        reply = await api.http.post(
            "/api/actions/complete",
            json={"actionId": "share-replay"},
            headers={**player.auth, "x-request-id": request_id},
        )
        assert reply.status_code == 200, reply.text
        assert reply.headers["x-request-id"] == request_id
        refreshed = await api.http.post(
            "/api/auth/refresh", json={"refreshToken": session["refreshToken"]}
        )
        assert refreshed.status_code == 200
        viewer = await Viewer.open(f"{shared_stack.ws_url}?token={player.access_token}")
        await viewer.wait(lambda m: m["type"] == "CONNECTION_ACK")
        await viewer.close()
        bad_ws = await Viewer.open(f"{shared_stack.ws_url}?token={player.access_token}x")
        await bad_ws.close()
        admin_token = await service_token(
            shared_stack.address("auth"), "admin-tool", shared_stack.admin_secret
        )
    finally:
        await api.close()

    records = _records(json_logs)
    edge = [
        r
        for r in records
        if r["logger"] == "scoreboard.edge.http" and r.get("path") == "/api/actions/complete"
    ]
    assert [r["request_id"] for r in edge] == [request_id], edge
    hops = [
        r
        for r in records
        if r["msg"] == "rpc"
        and r.get("method") == "/scoreboard.score.v1.ScoreService/CompleteAction"
    ]
    assert [r["request_id"] for r in hops] == [request_id], hops
    async with shared_stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT request_id FROM user_actions WHERE user_id = %s", (player.user_id,)
        )
        assert await cur.fetchall() == [(request_id,)]

    text = json_logs.getvalue()
    assert len(records) > 20, "the test saw too few log lines to mean anything"
    secrets = {
        "password": password,
        "wrong password": wrong_password,
        "access token": player.access_token,
        "login access token": session["accessToken"],
        "refresh token": session["refreshToken"],
        "rotated refresh token": refreshed.json()["data"]["refreshToken"],
        "service token": admin_token,
        "admin client secret": shared_stack.admin_secret,
        "edge client secret": shared_stack.edge_secret,
    }
    leaked = [name for name, secret in secrets.items() if secret in text]
    assert not leaked, f"logged: {leaked}"
    # Each JWT's signature alone must not appear either (a truncated token is still a leak).
    signatures = [token.rsplit(".", 1)[1] for token in (player.access_token, admin_token)]
    assert not [s for s in signatures if s in text]
