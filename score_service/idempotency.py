"""Idempotency keys of CompleteAction, claimed in the score transaction itself.

A key is scoped per caller (the token's subject). The first request inserts (caller, key, hash of
the request); the ledger stores its response in the same transaction, so a key is only ever
committed together with the score change it made. A concurrent twin blocks on the key's row
until the first transaction ends: after a commit it replays the stored response, after a
rollback (a refusal) it claims the key itself. Refusals are not stored, so a refused request may
be retried with its key.
Keys are kept at least 24 hours (see purge.py).
"""

from __future__ import annotations

import grpc

from common.db import Conn
from common.errors import Reason, ServiceError, conflict
from scoreboard.score.v1 import score_service_pb2 as pb


async def claim_key(
    conn: Conn, caller: str, key: str, request_hash: bytes
) -> pb.CompleteActionResponse | None:
    """Claim the key for this request (None), or return the response to replay."""
    cur = await conn.execute(
        "INSERT INTO idempotency_keys (caller, key, request_hash) VALUES (%s, %s, %s)"
        " ON CONFLICT (caller, key) DO NOTHING RETURNING 1",
        (caller, key, request_hash),
    )
    if await cur.fetchone() is not None:
        return None
    cur = await conn.execute(
        "SELECT request_hash, response FROM idempotency_keys WHERE caller = %s AND key = %s",
        (caller, key),
    )
    row = await cur.fetchone()
    if row is None or row[1] is None:
        # Purged between the two statements, or written without a response by another writer:
        # nothing safe to replay, and the caller may simply retry.
        raise ServiceError(
            grpc.StatusCode.ABORTED,
            Reason.IDEMPOTENCY_CONFLICT,
            "a request with this idempotency key is still in progress; retry",
        )
    if bytes(row[0]) != request_hash:  # type: ignore[call-overload]
        raise conflict(
            Reason.IDEMPOTENCY_CONFLICT, "this idempotency key was used with a different request"
        )
    replay = pb.CompleteActionResponse.FromString(bytes(row[1]))  # type: ignore[call-overload]
    replay.replayed = True
    return replay
