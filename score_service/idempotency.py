"""Idempotency keys of CompleteAction, claimed in the score transaction itself.

A key is scoped per caller (the token's subject). The first request inserts (caller, key, hash of
the request); the ledger stores its response in the same transaction, so a key is only ever
committed together with the score change it made. A concurrent twin blocks on the key's row
until the first transaction ends, then replays the stored response; a refused request's key is
deleted in its transaction, so a refused request may be retried with its key.
Keys are kept at least 24 hours (see purge.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from common.db import Conn
from common.errors import Reason, ServiceError, conflict
from scoreboard.score.v1 import score_service_pb2 as pb


async def claim_keys(
    conn: Conn, requests: Sequence[tuple[str, str, bytes]]
) -> set[tuple[str, str]]:
    """Claim (caller, key, request hash) for each request; return the (caller, key) pairs claimed
    by this transaction. Claims are made in sorted order, so two transactions claiming the same
    keys wait for each other instead of deadlocking."""
    ordered = sorted(requests)
    cur = await conn.execute(
        "INSERT INTO idempotency_keys (caller, key, request_hash)"
        " SELECT * FROM unnest(%s::text[], %s::text[], %s::bytea[])"
        " ON CONFLICT (caller, key) DO NOTHING RETURNING caller, key",
        ([r[0] for r in ordered], [r[1] for r in ordered], [r[2] for r in ordered]),
    )
    return {(str(row[0]), str(row[1])) for row in await cur.fetchall()}


async def stored_response(
    conn: Conn, caller: str, key: str, request_hash: bytes
) -> pb.CompleteActionResponse | None:
    """The response to replay for a key claimed earlier; None while the request that claimed it
    has not committed a response yet (it is in flight, possibly in this very transaction)."""
    cur = await conn.execute(
        "SELECT request_hash, response FROM idempotency_keys WHERE caller = %s AND key = %s",
        (caller, key),
    )
    row = await cur.fetchone()
    if row is None:
        # Purged since the claim was refused: nothing to replay, the caller may simply retry.
        raise ServiceError(
            grpc.StatusCode.ABORTED,
            Reason.IDEMPOTENCY_CONFLICT,
            "a request with this idempotency key is still in progress; retry",
        )
    if bytes(row[0]) != request_hash:  # type: ignore[call-overload]
        raise conflict(
            Reason.IDEMPOTENCY_CONFLICT, "this idempotency key was used with a different request"
        )
    if row[1] is None:
        return None
    replay = pb.CompleteActionResponse.FromString(bytes(row[1]))  # type: ignore[call-overload]
    replay.replayed = True
    return replay
