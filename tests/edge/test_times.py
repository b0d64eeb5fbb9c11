"""Times in responses are UTC with a Z whatever the host's zone: the protobuf Timestamps the
routes read become naive datetimes, which must not be taken for local time. The edge runs in
this process, so a non-UTC TZ here is the host's zone for it."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.clients import Api


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Five and a half hours east of UTC, without daylight saving: a wrong zone cannot hide.
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    time.tzset()
    assert time.timezone == -(5 * 3600 + 1800)
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


def _parse(stamp: str) -> datetime:
    assert stamp.endswith("Z"), stamp
    return datetime.fromisoformat(stamp.removesuffix("Z")).replace(tzinfo=UTC)


@pytest.mark.usefixtures("far_from_utc")
async def test_a_ticket_s_times_are_utc_on_a_non_utc_host(api: Api) -> None:
    player = await api.register()
    before = datetime.now(UTC)
    reply = await api.http.post(
        "/api/actions/start", json={"actionId": "defeat-boss"}, headers=player.auth
    )
    assert reply.status_code == 200, reply.text
    data = reply.json()["data"]
    not_before, expires = _parse(data["notBefore"]), _parse(data["expiresAt"])
    # The ticket's window starts about now and lasts minutes, not hours off by the zone.
    assert before - timedelta(minutes=1) <= not_before <= before + timedelta(hours=1)
    assert before < expires <= before + timedelta(hours=2)
