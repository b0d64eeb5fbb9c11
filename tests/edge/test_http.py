"""The edge's HTTP contract: one error envelope with the right statuses (400, 404, 405, 413,
415, 422), the leaderboard's 5-second cache with ETag and 304, security headers, the CORS
allow-list, and the OpenAPI document and docs page."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.conftest import StackFactory
from tests.support.clients import Api, Player
from tests.support.servers import wait_for
from tests.support.stack import Stack

LIMIT = 16 * 1024


def _envelope(reply: httpx.Response, status: int, code: str) -> None:
    assert reply.status_code == status, reply.text
    body = reply.json()
    assert set(body) == {"success", "error", "code"}
    assert body["success"] is False and body["code"] == code and body["error"]
    assert reply.headers["content-type"].startswith("application/json")


@pytest.fixture
async def player(api: Api) -> Player:
    return await api.register()


async def test_body_over_the_limit_by_length(api: Api, player: Player) -> None:
    reply = await api.http.post(
        "/api/actions/complete",
        content=b'{"actionId": "' + b"a" * LIMIT + b'"}',
        headers={**player.auth, "content-type": "application/json"},
    )
    _envelope(reply, 413, "PAYLOAD_TOO_LARGE")


async def test_body_over_the_limit_streamed(api: Api, player: Player) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b" " * 1024

    reply = await api.http.post(
        "/api/auth/login", content=chunks(), headers={"content-type": "application/json"}
    )
    assert "content-length" not in reply.request.headers
    _envelope(reply, 413, "PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b'{"actionId": "daily-login"}', "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (
            b"actionId=daily-login",
            "application/x-www-form-urlencoded",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (b'{"actionId": ', "application/json", 400, "INVALID_JSON"),
        (b'["daily-login"]', "application/json", 422, "VALIDATION_FAILED"),
        (b"{}", "application/json", 422, "VALIDATION_FAILED"),
        (b'{"actionId": 7}', "application/json", 422, "VALIDATION_FAILED"),
        (b'{"actionId": "Daily Login!"}', "application/json", 422, "VALIDATION_FAILED"),
        (b'{"actionId": "daily-login", "extra": 1}', "application/json", 422, "VALIDATION_FAILED"),
        (
            b'{"actionId": "daily-login", "points": 999}',
            "application/json",
            400,
            "CLIENT_POINTS_REFUSED",
        ),
        (b'{"actionId": "no-such-action"}', "application/json", 400, "ACTION_NOT_FOUND"),
    ],
)
async def test_bad_bodies_get_the_envelope_and_change_nothing(
    shared_stack: Stack,
    api: Api,
    player: Player,
    content: bytes,
    content_type: str,
    status: int,
    code: str,
) -> None:
    reply = await api.http.post(
        "/api/actions/complete",
        content=content,
        headers={**player.auth, "content-type": content_type},
    )
    _envelope(reply, status, code)
    async with shared_stack.pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM user_actions WHERE user_id = %s", (player.user_id,)
        )
        assert await cur.fetchone() == (0,)


async def test_unknown_path_and_method(api: Api) -> None:
    _envelope(await api.http.get("/api/nothing-here"), 404, "NOT_FOUND")
    _envelope(await api.http.get("/api/actions/complete"), 405, "METHOD_NOT_ALLOWED")


async def test_bad_path_parameter(api: Api, player: Player) -> None:
    reply = await api.http.get("/api/leaderboard/user/not-a-uuid", headers=player.auth)
    _envelope(reply, 400, "INVALID_ARGUMENT")


async def test_leaderboard_cache_etag_and_304(shared_stack: Stack, api: Api) -> None:
    first = await api.http.get("/api/leaderboard")
    assert first.status_code == 200
    assert first.headers["cache-control"] == "public, max-age=5"
    etag = first.headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    for validator in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = await api.http.get("/api/leaderboard", headers={"if-none-match": validator})
        assert again.status_code == 304, validator
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == "public, max-age=5"
    stale = await api.http.get("/api/leaderboard", headers={"if-none-match": '"other"'})
    assert stale.status_code == 200 and stale.json() == first.json()

    # A change of the top 10 gives a new representation and a new ETag.
    player = await api.register()
    assert (await api.complete(player, "complete-quest")).status_code == 200
    assert (await api.complete(player, "win-match")).status_code == 200

    async def changed() -> httpx.Response | None:
        reply = await api.http.get("/api/leaderboard", headers={"if-none-match": etag})
        return reply if reply.status_code == 200 else None

    fresh = await wait_for(changed, timeout=15)
    assert fresh is not None
    assert fresh.headers["etag"] != etag
    assert any(e["userId"] == player.user_id for e in fresh.json()["data"]["top10"])


@pytest.mark.parametrize(
    "path", ["/api/leaderboard", "/api/nothing-here", "/docs", "/openapi.json"]
)
async def test_security_headers(api: Api, path: str) -> None:
    reply = await api.http.get(path)
    headers = reply.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "default-src 'self'" in headers["content-security-policy"]
    assert headers["x-request-id"]
    assert "strict-transport-security" not in headers  # plain HTTP
    assert "server" not in headers


async def test_hsts_behind_a_tls_ingress(stack_factory: StackFactory) -> None:
    async with (
        stack_factory(edge={"trust_forwarded": True}) as stack,
        httpx.AsyncClient(base_url=stack.edge_url, timeout=15) as http,
    ):
        reply = await http.get("/api/leaderboard", headers={"x-forwarded-proto": "https"})
        assert reply.headers["strict-transport-security"].startswith("max-age=")
        plain = await http.get("/api/leaderboard")
        assert "strict-transport-security" not in plain.headers


async def test_cors_allow_list(stack_factory: StackFactory) -> None:
    allowed, other = "https://game.example", "https://evil.example"
    async with (
        stack_factory(edge={"cors_origins": (allowed,)}) as stack,
        httpx.AsyncClient(base_url=stack.edge_url, timeout=15) as http,
    ):
        preflight = {
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        }
        ok = await http.options("/api/actions/complete", headers={"origin": allowed, **preflight})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == allowed
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()

        refused = await http.options(
            "/api/actions/complete", headers={"origin": other, **preflight}
        )
        _envelope(refused, 403, "CORS_REFUSED")
        assert "access-control-allow-origin" not in refused.headers
        bad_header = await http.options(
            "/api/actions/complete",
            headers={
                "origin": allowed,
                "access-control-request-method": "POST",
                "access-control-request-headers": "x-evil",
            },
        )
        _envelope(bad_header, 403, "CORS_REFUSED")

        simple = await http.get("/api/leaderboard", headers={"origin": allowed})
        assert simple.headers["access-control-allow-origin"] == allowed
        assert "etag" in simple.headers["access-control-expose-headers"].lower()
        foreign = await http.get("/api/leaderboard", headers={"origin": other})
        assert foreign.status_code == 200
        assert "access-control-allow-origin" not in foreign.headers
        too_large = await http.post(
            "/api/auth/login",
            content=b"x" * (LIMIT + 1),
            headers={"origin": allowed, "content-type": "application/json"},
        )
        _envelope(too_large, 413, "PAYLOAD_TOO_LARGE")
        assert too_large.headers["access-control-allow-origin"] == allowed


async def test_no_cors_without_an_allow_list(api: Api) -> None:
    reply = await api.http.get("/api/leaderboard", headers={"origin": "https://game.example"})
    assert "access-control-allow-origin" not in reply.headers


async def test_openapi_document_and_docs(api: Api) -> None:
    document = (await api.http.get("/openapi.json")).json()
    assert document["openapi"] == "3.1.0"
    for path, method in [
        ("/api/actions/complete", "post"),
        ("/api/leaderboard", "get"),
        ("/api/leaderboard/user/{userId}", "get"),
        ("/api/auth/register", "post"),
        ("/api/auth/login", "post"),
        ("/api/auth/refresh", "post"),
        ("/api/auth/logout", "post"),
        ("/api/actions", "get"),
        ("/api/ws-ticket", "post"),
    ]:
        assert method in document["paths"][path], path
    complete = document["paths"]["/api/actions/complete"]["post"]
    assert {"200", "400", "401", "413", "415", "422", "429"} <= set(complete["responses"])
    assert complete["security"] == [{"bearer": []}]
    docs = await api.http.get("/docs")
    assert docs.status_code == 200 and "/openapi.json" in docs.text
