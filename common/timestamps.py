"""google.protobuf.Timestamp messages from the times the services hold: an aware datetime, or
epoch microseconds (the ranking's reached and commit times)."""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp


def timestamp_pb(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def timestamp_pb_us(micros: int) -> Timestamp:
    """From microseconds since the epoch."""
    stamp = Timestamp()
    stamp.FromMicroseconds(micros)
    return stamp
