"""Pure conversion of the published top-10 JSON to the Top10Snapshot protobuf."""

from __future__ import annotations

import pytest

from common.redis_values import Entry, Top10
from stream_service.snapshots import build, from_json

USER = "00000000-0000-4000-8000-000000000001"
OTHER = "00000000-0000-4000-8000-000000000002"


def test_a_published_snapshot_becomes_the_protobuf() -> None:
    payload = (
        b'{"seq":42,"ts":1767225600123456,"entries":'
        b'[[1,"' + USER.encode() + b'","Ann","120"],[1,"' + OTHER.encode() + b'","Bob","120"]]}'
    )
    snapshot = from_json("default", payload)
    assert snapshot is not None
    assert snapshot.board_id == "default"
    assert snapshot.sequence == 42
    assert snapshot.commit_time.ToMicroseconds() == 1_767_225_600_123_456
    assert [(e.rank, e.user_id, e.username, e.score) for e in snapshot.entries] == [
        (1, USER, "Ann", 120),
        (1, OTHER, "Bob", 120),
    ]


@pytest.mark.parametrize("entries", [b"{}", b"[]"])
def test_an_empty_top10_has_no_entries(entries: bytes) -> None:
    snapshot = from_json("b2", b'{"seq":7,"ts":0,"entries":' + entries + b"}")
    assert snapshot is not None
    assert (snapshot.board_id, snapshot.sequence, list(snapshot.entries)) == ("b2", 7, [])


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"{",
        b"null",
        b'{"seq":1,"entries":[]}',
        b'{"seq":1,"ts":2,"entries":[[1,"u"]]}',
        b'{"seq":1,"ts":2,"entries":[["one","u","n","3"]]}',
        '{"seq":1,"ts":2,"entries":\'x\'}',
    ],
)
def test_a_malformed_payload_gives_none(payload: bytes | str) -> None:
    assert from_json("default", payload) is None


def test_build_keeps_every_entry_in_order() -> None:
    top = Top10(
        3,
        1_000_001,
        [Entry(1, USER, "Ann", 2**53 - 1), Entry(2, OTHER, "Bob", -5, reached_us=99)],
    )
    snapshot = build("default", top)
    assert snapshot.sequence == 3
    assert snapshot.commit_time.seconds == 1
    assert snapshot.commit_time.nanos == 1_000
    assert [(e.rank, e.user_id, e.username, e.score) for e in snapshot.entries] == [
        (1, USER, "Ann", 2**53 - 1),
        (2, OTHER, "Bob", -5),
    ]
