"""Every message /ws sends, in one place: CONNECTION_ACK, LEADERBOARD_UPDATE, SUBSCRIBED,
RANK_UPDATE, PONG and ERROR, encoded as JSON, and the RFC 6455 text frame that carries them (the
fixed ones are framed once, here). The heartbeat is a WebSocket ping at the protocol level
(uvicorn's ws_ping_interval), not a message."""

from __future__ import annotations

from typing import Any

import orjson


def message(kind: str, data: dict[str, Any]) -> bytes:
    return orjson.dumps({"type": kind, "data": data})


def error(code: str, text: str) -> bytes:
    return message("ERROR", {"code": code, "message": text})


def ack(user_id: str | None, connected_at: str) -> bytes:
    return message("CONNECTION_ACK", {"userId": user_id, "connectedAt": connected_at})


def leaderboard_update(
    top10: list[dict[str, Any]],
    timestamp: str | None,
    sequence: int,
    board: str = "default",
    period: int = 1,
) -> bytes:
    """LEADERBOARD_UPDATE: the board's top 10 of its period (a new period starts empty)."""
    return message(
        "LEADERBOARD_UPDATE",
        {
            "top10": top10,
            "timestamp": timestamp,
            "sequence": sequence,
            "board": board,
            "period": period,
        },
    )


def subscribed(board: str) -> bytes:
    """SUBSCRIBED: the socket now watches this board (its newest LEADERBOARD_UPDATE follows)."""
    return message("SUBSCRIBED", {"board": board})


def rank_update(data: dict[str, Any]) -> bytes:
    """RANK_UPDATE: {board, period, userId, rank (null when not ranked), score, totalPlayers,
    percentile, tier {id, name} or null, distanceToNext, reason (initial, self, overtaken,
    threshold, moved),
    overtakenBy {userId, username} or null, crossed [...], timestamp (of the change) or null}."""
    return message("RANK_UPDATE", data)


def text_frame(payload: bytes) -> bytes:
    """An unmasked, final text frame (RFC 6455 section 5.2). Server-to-client frames are not
    masked, so one encoded frame is byte-for-byte valid on every connection."""
    length = len(payload)
    if length < 126:
        header = bytes((0x81, length))
    elif length < 1 << 16:
        header = bytes((0x81, 126)) + length.to_bytes(2, "big")
    else:
        header = bytes((0x81, 127)) + length.to_bytes(8, "big")
    return header + payload


PONG_FRAME = text_frame(message("PONG", {}))
UNKNOWN_MESSAGE_FRAME = text_frame(
    error(
        "UNKNOWN_MESSAGE",
        "only PING, SUBSCRIBE, SUBSCRIBE_RANK and UNSUBSCRIBE_RANK are accepted",
    )
)
BOARD_NOT_FOUND_FRAME = text_frame(error("NOT_FOUND", "there is no such board"))
RANK_NEEDS_USER_FRAME = text_frame(
    error("RANK_NEEDS_USER", "only a signed-in user can subscribe to its rank")
)
INVALID_BOARD_FRAME = text_frame(error("INVALID_ARGUMENT", "board must be a board id"))
RATE_LIMITED_FRAME = text_frame(error("RATE_LIMITED", "too many messages"))
TOKEN_EXPIRED_FRAME = text_frame(
    error("TOKEN_EXPIRED", "the token has expired; reconnect with a fresh one")
)
TOKEN_REVOKED_FRAME = text_frame(
    error("TOKEN_REVOKED", "the token has been revoked (signed out or banned); sign in again")
)
