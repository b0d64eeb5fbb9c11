"""common.timestamps: the protobuf Timestamp of a datetime and of epoch microseconds agree."""

from __future__ import annotations

from datetime import UTC, datetime

from common.timestamps import timestamp_pb, timestamp_pb_us


def test_a_datetime_and_its_microseconds_give_the_same_timestamp() -> None:
    at = datetime(2024, 6, 2, 22, 0, 1, 250_000, tzinfo=UTC)
    micros = 1_717_365_601_250_000
    assert timestamp_pb(at) == timestamp_pb_us(micros)
    assert timestamp_pb(at).ToDatetime(tzinfo=UTC) == at
    assert timestamp_pb_us(micros).ToMicroseconds() == micros
