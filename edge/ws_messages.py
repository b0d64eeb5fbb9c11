"""The messages /ws sends, encoded as JSON (and, for the fixed ones, as ready frames once)."""

from __future__ import annotations

from typing import Any

import orjson

from edge.ws_protocol import text_frame


def message(kind: str, data: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": kind, "data": data})


def error(code: str, text: str) -> bytes:
    return message("ERROR", {"code": code, "message": text})


def ack(user_id: str | None, connected_at: str) -> bytes:
    return message("CONNECTION_ACK", {"userId": user_id, "connectedAt": connected_at})


PONG_FRAME = text_frame(message("PONG", {}))
UNKNOWN_MESSAGE_FRAME = text_frame(error("UNKNOWN_MESSAGE", "only PING messages are accepted"))
RATE_LIMITED_FRAME = text_frame(error("RATE_LIMITED", "too many messages"))
TOKEN_EXPIRED_FRAME = text_frame(
    error("TOKEN_EXPIRED", "the token has expired; reconnect with a fresh one")
)
