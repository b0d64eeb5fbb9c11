"""What must hold after a fault: every acknowledged completion in the ledger exactly once,
ledger == totals, Redis == PostgreSQL, every viewer on the final board, revoked tokens refused.

Completions are matched to ledger rows by the request id each one carried (X-Request-ID, kept
in user_actions.request_id), and counted per user as well: a user with fewer rows than
acknowledgements lost one; more rows than requests sent, or rows that match no request, is a
double."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import grpc
import psycopg

from bench.faults.traffic import TrafficResult
from bench.faults.viewers import Board, ViewerState
from common.grpc_client import call_metadata
from scoreboard.leaderboard.v1 import leaderboard_service_pb2 as lb_pb
from scoreboard.leaderboard.v1 import leaderboard_service_pb2_grpc as lb_grpc

# A load request's id: the scenario's tag, then its number.
REQUEST_ID_PATTERN = "^s[0-9]+-[0-9]+$"


@dataclass(frozen=True)
class LedgerCount:
    lost: int
    doubled: int
    # Answered with an error (or not at all), yet written: the client cannot know it landed.
    landed_unacked: int
    # Users with fewer ledger rows than acknowledgements / more rows than requests.
    users_short: int
    users_over: int


async def count_ledger(
    database_url: str, action_id: str, tag: str, traffic: TrafficResult, strays_before: int
) -> tuple[LedgerCount, int]:
    """This scenario's requests against the ledger; also returns the stray rows now."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT request_id, user_id::text, count(*) FROM user_actions"
            " WHERE action_id = %s AND request_id LIKE %s GROUP BY 1, 2",
            (action_id, f"{tag}-%"),
        )
        rows = await cur.fetchall()
        strays = await _strays(conn, action_id)
    landed: dict[str, int] = {}
    rows_per_user: Counter[str] = Counter()
    doubled = strays - strays_before
    for request_id, user_id, count in rows:
        sent = traffic.requests.get(request_id)
        if sent is None or sent.user_id != user_id:
            doubled += count  # a row no request of ours asked for
            continue
        landed[request_id] = landed.get(request_id, 0) + count
        rows_per_user[user_id] += count
    doubled += sum(count - 1 for count in landed.values() if count > 1)
    acked = traffic.acked()
    acks_per_user = Counter(traffic.requests[rid].user_id for rid in acked)
    sent_per_user = Counter(sent.user_id for sent in traffic.requests.values())
    users = set(acks_per_user) | set(rows_per_user)
    return (
        LedgerCount(
            lost=sum(1 for rid in acked if rid not in landed),
            doubled=doubled,
            landed_unacked=sum(1 for rid in landed if rid not in acked),
            users_short=sum(1 for u in users if rows_per_user[u] < acks_per_user[u]),
            users_over=sum(1 for u in users if rows_per_user[u] > sent_per_user[u]),
        ),
        strays,
    )


async def stray_rows(database_url: str, action_id: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        return await _strays(conn, action_id)


async def _strays(conn: psycopg.AsyncConnection[tuple[object, ...]], action_id: str) -> int:
    """Rows of the load action that carry no load request's id."""
    cur = await conn.execute(
        "SELECT count(*) FROM user_actions WHERE action_id = %s"
        " AND (request_id IS NULL OR request_id !~ %s)",
        (action_id, REQUEST_ID_PATTERN),
    )
    row = await cur.fetchone()
    return int(str(row[0])) if row else 0


class Ranking:
    """The leaderboard service's view, asked with an admin token: its top 10 from Redis and its
    comparison of the whole ranking with PostgreSQL."""

    def __init__(self, channel: grpc.aio.Channel, token: str) -> None:
        self._stub = lb_grpc.LeaderboardServiceStub(channel)
        self._token = token

    async def top10(self) -> Board | None:
        """The top 10 from the Redis ranking (None while it is unavailable or rebuilding)."""
        try:
            reply = await self._stub.ListEntries(
                lb_pb.ListEntriesRequest(page_size=10),
                metadata=call_metadata(self._token),
                timeout=3,
            )
        except grpc.aio.AioRpcError:
            return None
        if reply.from_fallback:
            return None
        return [(e.user_id, int(e.score)) for e in reply.entries]

    async def mismatched(self) -> int | None:
        """Users whose score or position differs between Redis and PostgreSQL (no repair)."""
        try:
            reply = await self._stub.ReconcileRanking(
                lb_pb.ReconcileRankingRequest(repair=False),
                metadata=call_metadata(self._token),
                timeout=60,
            )
        except grpc.aio.AioRpcError:
            return None
        missing = abs(reply.users_in_database - reply.users_in_ranking)
        return int(reply.mismatched) + int(missing)

    async def wait_equal(self, timeout: float) -> bool:
        """Until Redis == PostgreSQL (the consumer may still be catching up, or rebuilding)."""
        deadline = time.monotonic() + timeout
        while True:
            if await self.mismatched() == 0:
                return True
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(1)


def on_board(states: list[ViewerState], board: Board) -> int:
    """How many viewers are connected and were last sent `board`."""
    return sum(1 for s in states if s.connected and s.board == board)


def holds(board: Board | None, user_id: str, score: int) -> bool:
    return board is not None and any(u == user_id and s >= score for u, s in board)
