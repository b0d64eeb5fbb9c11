"""The issuer check is an exact comparison: PyJWT 2.10.0 compared a string `iss` with `in`
(CVE-2024-53861), so an issuer that is a substring of ours passed. A token whose issuer is a part
of ours, or contains ours, is refused by the edge and by a gRPC service called directly; and the
dependency floor keeps the flawed release out."""

from __future__ import annotations

import re
import tomllib
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from common.errors import from_rpc_error
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as lb_pb
from scoreboard.leaderboard.v1 import leaderboard_service_pb2_grpc
from tests.support.clients import Api, metadata
from tests.support.forge import ISSUER, Signer, claims
from tests.support.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
FIXED = (2, 10, 1)

# Each passes a substring check against "scoreboard" one way or the other.
NEAR_ISSUERS = {
    "substring": ISSUER[:-1],
    "inner-substring": ISSUER[5:],
    "empty": "",
    "contains-ours-after": f"https://evil.invalid/{ISSUER}",
    "contains-ours-before": f"{ISSUER}.evil.invalid",
}


@pytest.fixture(scope="module")
async def channel(shared_stack: Stack) -> AsyncIterator[grpc.aio.Channel]:
    opened = grpc.aio.insecure_channel(shared_stack.address("leaderboard"))
    try:
        yield opened
    finally:
        await opened.close()


async def test_our_issuer_passes(shared_stack: Stack, api: Api, ours: Signer) -> None:
    token = ours.sign(claims(iss=ISSUER))
    reply = await api.http.post("/api/ws-ticket", headers={"authorization": f"Bearer {token}"})
    assert reply.status_code == 200, reply.text


@pytest.mark.parametrize("name", sorted(NEAR_ISSUERS))
async def test_a_near_issuer_is_refused(
    name: str, api: Api, ours: Signer, channel: grpc.aio.Channel
) -> None:
    issuer = NEAR_ISSUERS[name]
    assert issuer != ISSUER and (issuer in ISSUER or ISSUER in issuer)
    token = ours.sign(claims(iss=issuer))
    reply = await api.http.post("/api/ws-ticket", headers={"authorization": f"Bearer {token}"})
    assert reply.status_code == 401, reply.text
    assert reply.json()["code"] == "TOKEN_INVALID"
    stub = leaderboard_service_pb2_grpc.LeaderboardServiceStub(channel)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListEntries(
            lb_pb.ListEntriesRequest(page_size=1), metadata=metadata(token), timeout=10
        )
    error = from_rpc_error(caught.value)
    assert (error.code, error.reason) == (grpc.StatusCode.UNAUTHENTICATED, "TOKEN_INVALID")


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def test_the_dependency_floor_excludes_the_flawed_release() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    floors = [
        match.group(1)
        for spec in project["dependencies"]
        if (match := re.fullmatch(r"pyjwt(?:\[[^]]*\])?>=([\d.]+)(?:,.*)?", spec.lower()))
    ]
    assert len(floors) == 1 and _version(floors[0]) >= FIXED, project["dependencies"]
    locked = re.search(r"^pyjwt==([\d.]+)$", (ROOT / "requirements.lock").read_text(), re.I | re.M)
    assert locked is not None and _version(locked.group(1)) >= FIXED
